"""The level passes: forward, loss, backward, gradients, ranges and update as launches, level by
level and tier by tier. The level executors' step is these in order; every executor uses them for
forward(), backward() and update() called one by one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from ....errors import BackendError
from ..constants import THREADS, TILE
from ..records import Parameters, addr
from ..topology import backward_task_bytes
from . import kinds, output_parts, split

if TYPE_CHECKING:
    from ..context import PassContext


def tier_launches(e: "PassContext", batch: int) -> list:
    """(list prefix, kernel suffix, batch tiles, extra kernel arguments by name) of each tier of
    widths that has lists: the first's kernels (forward_level, backward_level) take the task size
    (chunk), the others' (forward_mid, ..., weight_wide) have it built in."""
    return [(t.prefix, t.suffix, (batch + (t.size if t.lowest else TILE) - 1) // (t.size if t.lowest else TILE),
             {} if t.lowest else {"chunk": np.int32(t.size)}) for t in e.executor.tiers() if t.prefix in e.layout.tiers]


# (kernel prefix, task list, index in a tier's lists): the level passes' launches
FORWARD = ("forward", "forward_tasks", 0)
BACKWARD = ("backward", "backward_tasks", 1)


def level_launches(e: "PassContext", batch: int, which: tuple):
    """(level, [(kernel, grid, first task, extra arguments by name) of each tier's launch]) level by
    level (forward from level 1; backward from the deepest hidden level). The wider tiers' kernels
    take the split-K scratch (split.py), the first tier's forward the output group's parts
    (output_parts.py)."""
    kernel, tasks, index = which
    levels = e.layout.forward_levels if index == 0 else e.layout.backward_levels
    depth = len(e.layout.forward_levels)
    scratch = split.arguments(e)
    first = output_parts.arguments(e) if index == 0 else {}
    for number in range(len(levels)):
        launches = []
        for pre, suffix, tiles, extra in tier_launches(e, batch):
            start, count = e.layout.tiers[pre][index][number]
            if count:
                task_bytes = 16 if index == 0 else backward_task_bytes(pre)
                launches.append((kernel + (suffix or "_level"), (count, tiles),
                                 addr(getattr(e.dev.tasks.tiers[pre], tasks), task_bytes * start),
                                 {**extra, **(scratch if pre else first)}))
        yield (number + 1 if index == 0 else depth - 1 - number), launches


def forward(e: "PassContext", batch: int) -> None:
    """h of every group, level by level: one launch per tier of dense groups, one per other kind
    present (an output group whose in-edges are cut over several tasks is summed from their
    parts last, output_parts.py); a sequence network's logits are its token rows' mean."""
    L, fields = e.layout, e.dev.by_name
    for level, launches in level_launches(e, batch, FORWARD):
        for name, grid, tasks, extra in launches:
            e.launch.named(name, grid, fields, dict(tasks=tasks, batch=np.int32(batch), ld=np.int32(e.ld),
                                                    output_slot=np.int32(L.output_slot), **extra))
        kinds.forward(e, level, batch)
    output_parts.enqueue_sum(e, batch)
    if L.kinds.tokens > 1:
        kinds.pool(e, batch)


def zero_step_sums(e: "PassContext") -> None:
    """The per-group statistics, weight-gradient norms and step scalars start at zero."""
    n, sums = len(e.layout.groups), e.dev.sums
    e.mem.fill(sums.stats, 0, 6 * n)
    e.mem.fill(sums.wstats, 0, 2 * n)
    e.mem.fill(sums.scalars, 0, 6)


def loss(e: "PassContext", batch: int) -> None:
    """Softmax cross-entropy of every row: the loss, the correct count, the output group's dz (of
    a sequence network: of the pooled logits, spread over the token rows)."""
    L, r, sums = e.layout, e.dev.rows, e.dev.sums
    out = L.output_slot
    T = L.kinds.tokens
    if T > 1:
        samples, n = batch // T, int(L.width[out])
        e.launch.flat("softmax_xent", samples, dict(
            logits=r.pooled, labels=r.labels, batch=np.int32(samples), classes=np.int32(n), ld=np.int32(0),
            dlogits=r.dpooled, loss_sum=sums.scalars, correct=sums.correct, stats=sums.stats,
            output_slot=np.int32(out)))
        kinds.spread(e, batch)
        return
    softmax_xent(e, batch, r.labels, e.launch)


def softmax_xent(e: "PassContext", rows: int, labels, launch) -> None:
    """The loss of `rows` rows of the output group's block against `labels`, their dz and the
    correct count (a thread a row)."""
    L, r, sums = e.layout, e.dev.rows, e.dev.sums
    out = L.output_slot
    launch.flat("softmax_xent", rows, dict(
        logits=addr(r.act, e.block(out)), labels=labels, batch=np.int32(rows), classes=np.int32(L.width[out]),
        ld=np.int32(e.ld), dlogits=addr(r.dz, e.block(out)), loss_sum=sums.scalars, correct=sums.correct,
        stats=sums.stats, output_slot=np.int32(out)))


class Seeded(Protocol):
    """A pushed backward that starts from more than zero and pushes in its own way (the synthetic
    gradients of engines/cuda/decoupled.py): seed() adds into the zeroed dz blocks before the loss,
    push() replaces the pushes and the gradients (push_levels and dense_gradients over lists of
    its own)."""

    def seed(self, batch: int) -> None: ...

    def push(self, batch: int) -> None: ...


def backward(e: "PassContext", batch: int, seeded: Seeded | None = None) -> None:
    """Loss, dz of every group (pulled by each group from its consumers, or pushed by the
    consumers into their sources), then the weight and bias gradients and the ranges. `seeded`
    (push only): dz starts from its seed, and it pushes."""
    zero_step_sums(e)
    kinds.zero_added(e)
    if e.executor.push:  # every dz block gathers atomically from its consumers
        e.mem.fill(e.dev.rows.dz, 0, e.layout.n_cols * e.batch_cap)
        if seeded is not None:
            seeded.seed(batch)
    elif seeded is not None:
        raise BackendError(f"a seeded backward pushes; the {e.executor.name} executor pulls")
    loss(e, batch)
    if seeded is not None:
        seeded.push(batch)  # its pushes and the gradients
    else:
        if e.executor.push:
            push_levels(e, batch, [(n, *level) for n, level in enumerate(e.layout.push_levels)],
                        e.dev.tasks.first.backward_tasks, e.dev.groups.hidden, e.launch)
        else:
            _pull(e, batch)
        gradients(e, batch)
    ranges(e, batch)


def _pull(e: "PassContext", batch: int) -> None:
    fields = e.dev.by_name
    for level, launches in level_launches(e, batch, BACKWARD):
        for name, grid, tasks, extra in launches:
            e.launch.named(name, grid, fields, dict(tasks=tasks, batch=np.int32(batch), ld=np.int32(e.ld),
                                                    **extra))
        kinds.backward(e, level, batch)


def push_levels(e: "PassContext", batch: int, levels: list, tasks, hidden, launch, act_off=None) -> None:
    """The pushed backward over `levels`: (number, first task, task count) each, number 0 the
    output group's level (its dz is the loss's: no finish), the tasks 8 bytes each from `tasks`;
    a task's group finishes its dz (mask, statistics), then pushes into the sources that
    `hidden` marks; `launch`: the launcher of the stream to run on; `act_off`: where the
    groups' blocks are (the engine's, unless a pipelined stage reads kept ones)."""
    fields = e.dev.by_name
    given = {"act_off": fields["act_off"] if act_off is None else act_off, "batch": np.int32(batch),
             "ld": np.int32(e.ld)}
    rows = (batch + TILE - 1) // TILE
    for number, start, count in levels:
        if not count:
            continue
        at = addr(tasks, 8 * start)
        if number:  # all consumers of this level have pushed: mask and statistics
            launch.named("backward_finish", (count, rows), fields, dict(tasks=at, **given))
        launch.named("backward_push", (count, rows), fields, dict(tasks=at, hidden=hidden, **given))


def gradients(e: "PassContext", batch: int) -> None:
    """Weight gradients (one launch per tier) and bias gradients, with their squared sums."""
    L, d = e.layout, e.dev
    for pre, suffix, _, _ in tier_launches(e, batch):
        count = L.tiers[pre][2]
        if count and pre:  # the wider tiers' (wide.cu)
            e.launch.named("weight" + suffix, (count, 1), d.by_name,
                           dict(tasks=d.tasks.tiers[pre].weight_tasks, batch=np.int32(batch), ld=np.int32(e.ld),
                                gradsq=d.sums.gradsq))
    first = L.tiers[""][2] if "" in L.tiers else 0
    dense_gradients(e, batch, d.tasks.first.weight_tasks, first, d.tasks.bias_tasks, L.n_bias_tasks, e.launch)
    kinds.gradients(e, batch, d.sums.gradsq)


def dense_gradients(e: "PassContext", batch: int, weight_tasks, n_weight: int, bias_tasks, n_bias: int,
                    launch, act_off=None) -> None:
    """The first tier's weight gradients (weight_grad: tasks of 12 bytes) and the bias gradients
    (bias_grad: 8 bytes) of the given task lists, with their squared sums, on `launch`'s stream
    (`act_off`: as push_levels')."""
    d = e.dev
    given = {"act_off": d.rows.act_off if act_off is None else act_off, "batch": np.int32(batch),
             "ld": np.int32(e.ld), "gradsq": d.sums.gradsq}
    if n_weight:
        launch.named("weight_grad", (n_weight, 1), d.by_name, dict(tasks=weight_tasks, **given))
    if n_bias:
        launch.named("bias_grad", (n_bias, 1), d.by_name, dict(tasks=bias_tasks, **given))


def ranges(e: "PassContext", batch: int) -> None:
    """Each neuron's activation range over the batch, for pruning (when it is on)."""
    L, d = e.layout, e.dev
    if e.pruning[0]:
        e.launch.named("activation_range", (L.n_bias_tasks, 1), d.by_name,
                       dict(tasks=d.tasks.bias_tasks, batch=np.int32(batch), ld=np.int32(e.ld)))


def optimizer_args(e: "PassContext") -> list:
    """The update's arguments (optim.cu) for the engine's parameters: update_arguments."""
    return update_arguments(e.optimizer, e.dev.parameters, e.layout.n_params)


def update_arguments(opt, p: Parameters, n: int) -> list:
    """The optimizer_update arguments that are not buffers of `p` or the guard, in the kernel's
    order: the optimizer's code, three state buffers (null where it keeps fewer), n, lr, three
    hyper-parameters (a list: the row executors compare a pending update's with the next step's)."""
    return [np.int32(opt.code), *p.state_args(), np.int32(n), np.float32(opt.lr), *[np.float32(h) for h in opt.hyper]]


def launch_update(launch, p: Parameters, args: list, guard) -> None:
    """One optimizer step over `p` (update_arguments: `args`), 4 parameters a thread, refused on
    the device when `guard` (a step's scalars) says the loss or gradients are not finite."""
    kind, s0, s1, s2, n, lr, h1, h2, eps = args
    launch.keyed("optimizer_update", ((int(n) + 4 * THREADS - 1) // (4 * THREADS), 1), dict(
        optimizer=kind, params=p.params, grads=p.grads, state0=s0, state1=s1, state2=s2, n=n, lr=lr, hyper1=h1,
        hyper2=h2, eps=eps, guard=guard))


def update(e: "PassContext", args: list | None = None, guard=None) -> None:
    """One optimizer step over every parameter; refused on the device (guard: the step's scalars)
    if the loss or gradients are not finite."""
    launch_update(e.launch, e.dev.parameters, args or optimizer_args(e),
                  guard if guard is not None else e.dev.sums.scalars)
