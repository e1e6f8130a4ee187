"""The partitioned engine's passes over a step's micro-batches (partitioned.py holds the engine):
each process's levels in order, the messages of the cut edges posted as the levels complete and
waited for where a level reads them (stages.py says which).

    forward          per micro-batch and level: wait for the messages the level reads, one gather,
                     one batched matmul and ReLU for the process's groups there, send the columns
                     other processes read
    backward         per micro-batch, levels in reverse: the dL/dh of each level's outputs from
                     the processes that read them, autograd through the level, the dL/dh of what
                     it read sent back
    backward_fused   the same when every message goes to a later process (a pipeline): the
                     incoming dL/dh first, one autograd pass through all of the process's levels
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .partitioned import PartitionedEngine


def forward(e: "PartitionedEngine", x: np.ndarray, keep: bool) -> list[dict]:
    """Every micro-batch's forward; per micro-batch a record of what backward needs."""
    torch, world, plan = e.torch, e.world, e.plan
    x = torch.as_tensor(np.ascontiguousarray(x)).to(world.device, e.tdtype)
    records = []
    for part in np.array_split(np.arange(len(x)), min(e.micro_batches, len(x))):
        rows = len(part)
        held, pending, levels, works = {("in",): x[part[0]:part[-1] + 1]}, {}, {}, []
        zero = torch.zeros(rows, 1, dtype=e.tdtype, device=world.device)
        for lv in range(1, plan.depth + 1):
            lp = plan.levels.get(lv)
            if lp is not None:
                for key in lp.sources:
                    if key not in held:  # a message: wait for it
                        wait, held[key] = pending.pop(key)
                        world.wait(wait)
                        held[key].requires_grad_(keep)  # a leaf: its gradient goes back to the sender
                # fused: the process's levels one graph; else each level's sources are leaves of its own
                srcs = [held[k] if e.fused or k[0] == "in" else held[k].detach().requires_grad_(keep)
                        for k in lp.sources]
                inp = torch.cat(srcs + [zero], 1).index_select(1, e.idx[lv])
                z = torch.baddbmm(e.b[lv], inp.view(rows, len(lp.groups), lp.k_max).transpose(0, 1), e.W[lv])
                z = z.transpose(0, 1).reshape(rows, -1)
                out = z if lp.output else torch.relu(z)
                if keep and e.fused:
                    out.retain_grad()  # dL/dh of the level's groups, for the statistics
                levels[lv] = (srcs, out)
                held[("own", lv)] = out if e.fused else out.detach()
            sends = [(held[("own", lv)].detach()[:, columns(e, lv, q)].contiguous(), q)
                     for q in (lp.sends if lp else ())]
            receives = [(torch.empty(rows, width, dtype=e.tdtype, device=world.device), p)
                        for p, width in plan.receives.get(lv, {}).items()]
            posted = world.exchange(sends, receives)
            works.append((posted, sends))
            for buf, p in receives:
                pending[("from", p, lv)] = (posted, buf)
        records.append({"levels": levels, "rows": rows, "part": part, "works": works, "held": held})
    return records

def columns(e: "PartitionedEngine", lv: int, q: int):
    """The columns of level lv's output that process q reads, as a device index (made once a plan)."""
    key = (lv, q)
    if key not in e.column_index:
        e.column_index[key] = e.torch.from_numpy(e.plan.levels[lv].sends[q]).to(e.world.device)
    return e.column_index[key]


def backward(e: "PartitionedEngine", records: list, y, n: int) -> dict:
    """Backward of every micro-batch; returns this process's sums: loss, correct and, per
    level, the moments of dL/dh per group and h's range per neuron."""
    torch, world, plan = e.torch, e.world, e.plan
    loss = torch.zeros((), dtype=torch.float64, device=world.device)
    correct = torch.zeros((), dtype=torch.int64, device=world.device)
    moments = {lv: torch.zeros(3, len(lp.groups), dtype=torch.float64, device=world.device)
               for lv, lp in plan.levels.items()}
    lo, hi = {}, {}
    for r in records:
        if e.fused:
            backward_fused(e, r, y, n, loss, correct, moments, lo, hi)
            continue
        rows, levels, part = r["rows"], r["levels"], r["part"]
        grad_own, grad_from, works = {}, {}, []
        for lv in range(plan.depth, 0, -1):
            lp = plan.levels.get(lv)
            sends = [(grad_from.pop(("from", p, lv)), p) for p in plan.receives.get(lv, {})]  # complete now
            receives = [(torch.empty(rows, len(lp.sends[q]), dtype=e.tdtype, device=world.device), q)
                        for q in (lp.sends if lp else ())]
            posted = world.exchange(sends, receives)
            works.append((posted, sends))
            if lp is None:
                continue
            srcs, out = levels[lv]
            if lp.output:
                grad = loss_of(e, out, y, part, n, loss, correct)
            else:
                grad = grad_own.pop(lv, None)
                if grad is None:
                    grad = torch.zeros_like(out)
                world.wait(posted)
                for buf, q in receives:
                    grad.index_add_(1, columns(e, lv, q), buf)
            torch.autograd.backward(out, grad)
            moments_of(e, lv, out, grad, moments, lo, hi)
            for key, src in zip(lp.sources, srcs):
                if src.grad is None:
                    continue
                into = grad_own if key[0] == "own" else grad_from
                slot = key[1] if key[0] == "own" else key
                into[slot] = into[slot] + src.grad if slot in into else src.grad
        r["works"].extend(works)
    return {"loss": loss, "correct": correct, "moments": moments, "lo": lo, "hi": hi}

def loss_of(e: "PartitionedEngine", logits, y, part, n: int, loss, correct):
    """Add a micro-batch's share of the mean cross-entropy and its correct count; its dlogits."""
    torch = e.torch
    rows = len(logits)
    target = y[part[0]:part[-1] + 1]
    logp = torch.log_softmax(logits.detach().double(), 1)
    loss += -logp.gather(1, target[:, None]).sum() / n
    correct += (logits.detach().argmax(1) == target).sum()
    grad = logp.exp()
    grad[torch.arange(rows, device=grad.device), target] -= 1
    return (grad / n).to(e.tdtype)

def moments_of(e: "PartitionedEngine", lv: int, out, grad, moments: dict, lo: dict, hi: dict) -> None:
    """Add a level's sums of dL/dh, its squares and h dL/dh per group (and h's range per neuron)."""
    torch, lp = e.torch, e.plan.levels[lv]
    rows = len(out)
    h = out.detach().view(rows, len(lp.groups), lp.w_max)
    d = grad.view(rows, len(lp.groups), lp.w_max)
    moments[lv] += torch.stack((d, d * d, h * d)).sum((1, 3))  # summed in float64 over micro-batches
    if e.pruning[0]:
        lo[lv] = torch.minimum(lo[lv], h.amin(0)) if lv in lo else h.amin(0)
        hi[lv] = torch.maximum(hi[lv], h.amax(0)) if lv in hi else h.amax(0)

def backward_fused(e: "PartitionedEngine", r: dict, y, n: int, loss, correct, moments, lo, hi) -> None:
    """One micro-batch's backward when every message goes to a later process (a pipeline):
    the gradients of its outputs read elsewhere arrive first, then one backward through all
    of its levels, then the gradients of what it received go back."""
    torch, world, plan = e.torch, e.world, e.plan
    rows, levels, part = r["rows"], r["levels"], r["part"]
    readers = [(lv, q) for lv in sorted(plan.levels, reverse=True) for q in plan.levels[lv].sends]
    receives = [(torch.empty(rows, len(plan.levels[lv].sends[q]), dtype=e.tdtype, device=world.device), q)
                for lv, q in readers]
    if e.synthetic is None:
        world.wait(world.exchange([], receives))
        incoming = [buf for buf, _ in receives]
    else:  # no wait: the modules' predictions now, the truth received after the backward (synthetic.py)
        labels = y[part[0]:part[-1] + 1]
        incoming = e.synthetic.predict([((lv, q), levels[lv][1][:, columns(e, lv, q)], labels, buf, q)
                                        for (buf, q), (lv, _) in zip(receives, readers)], n)
    tensors, grads = [], []
    for lv, lp in plan.levels.items():
        out = levels[lv][1]
        if lp.output:
            tensors.append(out)
            grads.append(loss_of(e, out, y, part, n, loss, correct))
        mine = [(buf, q) for buf, (level, q) in zip(incoming, readers) if level == lv]
        if mine:
            grad = torch.zeros_like(out)
            for buf, q in mine:
                grad.index_add_(1, columns(e, lv, q), buf)
            tensors.append(out)
            grads.append(grad)
    torch.autograd.backward(tensors, grads)
    for lv, (_, out) in levels.items():
        moments_of(e, lv, out, out.grad if out.grad is not None else torch.zeros_like(out), moments, lo, hi)
    sends = [(r["held"][("from", p, lv)].grad, p) for lv in sorted(plan.receives, reverse=True)
             for p in plan.receives[lv]]
    r["works"].append((world.exchange(sends, []), sends))
    if e.synthetic is not None:  # the truth of this micro-batch's predictions, sent while it ran
        e.synthetic.receive(world)
