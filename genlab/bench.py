"""Benchmarks: one full training step (forward, loss, backward, Adam update) of each workload.

Every implementation is built from the same genlab Network with the same weights, and their
losses on the same batch are checked to agree before anything is timed. Times are medians of
CUDA-event measurements after a warm-up (host clocks for the serial engine), in milliseconds.

Implementations: genlab_<executor> (the CUDA engine with each executor of
genlab.engines.cuda.EXECUTORS: level, level_push, level_batch, dataflow, dataflow_batch,
dataflow_rows),
serial (the NumPy engine), torch_eager_group (one nn.Linear per group on torch.cat of its inputs), torch_level
(one gather + bmm + ReLU per topological level), torch_level_graph (that, captured whole in one
CUDA graph) and torch_compile (that, through torch.compile, in a child process given 5 minutes).
W5 grows a network on digits for 2000 steps and times the whole run and each growth event,
PyTorch rebuilding its model (and re-capturing its graph) at each one.

Each workload also gets a floor: its FLOPs over the device's measured FP32 matmul rate and its
fewest bytes over the measured copy bandwidth, whichever is longer.

    genlab bench --workload W1 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .engines.cuda import EXECUTORS
from .network import INPUT, OUTPUT, Network

WORKLOADS = {  # name: (description, network builder, batch)
    "W1": ("wide: L=16 W=128 n=16 k=4", lambda: Network.random_dag(16, 128, 16, 4, seed=0), 256),
    "W2": ("deep and narrow: L=64 W=32 n=8 k=4", lambda: Network.random_dag(64, 32, 8, 4, seed=0), 256),
    "W3": ("middle: L=8 W=64 n=64 k=4", lambda: Network.random_dag(8, 64, 64, 4, seed=0), 256),
    "W4": ("traditional: a chain of 9 groups of 4096", lambda: Network.mlp([64] + [4096] * 9 + [10], seed=0), 1024),
}
GENLAB = tuple(f"genlab_{name}" for name in EXECUTORS)  # genlab_level, genlab_dataflow, ...
IMPLEMENTATIONS = (*GENLAB, "serial", "torch_eager_group", "torch_level", "torch_level_graph", "torch_compile")


# ------------------------------------------------------------------------------ PyTorch models
def torch_group_model(net: Network, device, dtype=None):
    """The seed's PyTorch baseline: one nn.Linear per group, applied to torch.cat of its inputs."""
    import torch

    order = net.topological_order()[1:]
    layers = torch.nn.ModuleDict()
    for g in order:
        w = np.concatenate([net.weights[(s, g)] for s in net.inputs(g)], axis=1)
        layer = torch.nn.Linear(w.shape[1], w.shape[0]).to(device, dtype or torch.float32)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(net.biases[g]))
        layers[str(g)] = layer

    def forward(x):
        h = {INPUT: x}
        for g in order:
            z = layers[str(g)](torch.cat([h[s] for s in net.inputs(g)], dim=1))
            h[g] = z if g == OUTPUT else torch.relu(z)
        return h[OUTPUT]

    return layers, forward


def torch_level_model(net: Network, device, dtype=None):
    """Level-batched PyTorch, as a skilled user would write it by hand: per level, one gather
    of every group's inputs from the outputs of the levels it reads (zero-padded to the level's
    largest fan-in and width), one batched matmul with the bias, one ReLU."""
    import torch

    level = net.levels()
    depth = level[OUTPUT]
    where = {INPUT: (0, 0)}  # group -> (level, first column in that level's output)
    widths_out = {0: net.n_inputs}  # columns of each level's output
    params = torch.nn.ParameterList()
    plan = []
    for lv in range(1, depth + 1):
        groups = [g for g in net.groups if level.get(g) == lv]
        sources = sorted({level[s] for g in groups for s in net.inputs(g)})
        start = dict(zip(sources, np.cumsum([0] + [widths_out[l] for l in sources[:-1]]).tolist()))
        zero = sum(widths_out[l] for l in sources)  # the zero column, after the sources
        k_max = max(sum(net.widths[s] for s in net.inputs(g)) for g in groups)
        w_max = max(net.widths[g] for g in groups)
        idx = np.full((len(groups), k_max), zero, np.int64)
        W = np.zeros((len(groups), k_max, w_max), np.float64)
        b = np.zeros((len(groups), 1, w_max), np.float64)
        for i, g in enumerate(groups):
            k = 0
            for s in net.inputs(g):
                src_level, c0 = where[s]
                ws = net.widths[s]
                idx[i, k:k + ws] = start[src_level] + c0 + np.arange(ws)
                W[i, k:k + ws, :net.widths[g]] = net.weights[(s, g)].T
                k += ws
            b[i, 0, :net.widths[g]] = net.biases[g]
            where[g] = (lv, i * w_max)
        widths_out[lv] = len(groups) * w_max
        params.append(torch.nn.Parameter(torch.from_numpy(W).to(device, dtype or torch.float32)))
        params.append(torch.nn.Parameter(torch.from_numpy(b).to(device, dtype or torch.float32)))
        plan.append((sources, torch.from_numpy(idx.ravel()).to(device), idx.shape))

    def forward(x):
        zero = torch.zeros(len(x), 1, device=x.device, dtype=x.dtype)
        outs = {0: x}
        for lv, ((sources, idx, shape), W, b) in enumerate(zip(plan, params[0::2], params[1::2]), start=1):
            h = torch.cat([outs[l] for l in sources] + [zero], dim=1)
            inp = torch.index_select(h, 1, idx).view(len(x), *shape)  # backward: index_add_, no sort
            z = torch.baddbmm(b, inp.transpose(0, 1), W)            # (groups, batch, w_max)
            z = z.transpose(0, 1).reshape(len(x), -1)
            if lv == depth:
                return z[:, :net.n_outputs]                          # the output group, alone
            outs[lv] = torch.relu(z)
        raise AssertionError("the output group closes the last level")

    return params, forward


# ------------------------------------------------------------------------------ timing
def time_cuda(fn, repeats: int, warmup: int = 10) -> float:
    """Median milliseconds of fn() over `repeats` runs, each bracketed by CUDA events."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_host(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def _torch_step(params, forward, x, y, lr, capturable=False):
    import torch

    optimizer = torch.optim.Adam(params.parameters(), lr=lr, capturable=capturable)
    ce = torch.nn.functional.cross_entropy

    def step():
        optimizer.zero_grad(set_to_none=not capturable)
        ce(forward(x), y).backward()
        optimizer.step()
    return step


def _graphed(step):
    """`step` captured in one CUDA graph (after a warm-up on a side stream); returns the replay."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def batch_of(net: Network, batch: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(batch, net.n_inputs)).astype(np.float32), rng.integers(0, net.n_outputs, batch))


def run_workload(name: str, repeats: int = 100, implementations=IMPLEMENTATIONS, serial_repeats: int = 3,
                 eager_repeats: int = 5, compile_timeout: int = 300) -> dict:
    """Losses checked equal, then the median ms per training step of each implementation."""
    import torch

    from .engines.cuda import CudaEngine
    from .engines.serial import SerialEngine
    from .optim import Adam

    description, build, batch = WORKLOADS[name]
    net = build()
    x, y = batch_of(net, batch)
    lr = 1e-3
    flops, nbytes = step_cost(net, batch)
    result = {"description": description, "batch": batch, "groups": len(net.groups), "edges": len(net.edges),
              "parameters": net.n_params, "levels": net.levels()[OUTPUT], "flops": flops, "min_bytes": nbytes}
    device = torch.device("cuda")
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    reference = SerialEngine(net, Adam(lr=lr), dtype="float64")
    reference.forward(x)
    losses = {"serial": reference.backward(y)}
    engines = {}
    for label in [i for i in GENLAB if i in implementations]:  # each checked on its own step
        engines[label] = CudaEngine(net, Adam(lr=lr), executor=label[len("genlab_"):])  # PyTorch's context
        losses[label] = engines[label].step(x, y)[0]
        engines[label].load(net)
    models = {"torch_eager_group": torch_group_model(net, device), "torch_level": torch_level_model(net, device)}
    ce = torch.nn.functional.cross_entropy
    for label, (_, forward) in models.items():
        with torch.no_grad():
            losses[label] = ce(forward(xt), yt).item()
    agreement = {k: abs(v - losses["serial"]) / abs(losses["serial"]) for k, v in losses.items()}
    if max(agreement.values()) > 1e-4:
        raise AssertionError(f"{name}: implementations disagree on the loss: {losses}")
    result["loss"], result["loss_relative_difference"] = losses, agreement
    times = {}
    for label, engine in engines.items():
        times[label] = time_cuda(lambda: engine.step(x, y), repeats)
    if "torch_eager_group" in implementations:
        step = _torch_step(*models["torch_eager_group"], xt, yt, lr)
        times["torch_eager_group"] = time_cuda(step, eager_repeats, warmup=2)
    if "torch_level" in implementations or "torch_level_graph" in implementations:
        step = _torch_step(*models["torch_level"], xt, yt, lr, capturable=True)
        times["torch_level"] = time_cuda(step, repeats)
        if "torch_level_graph" in implementations:
            times["torch_level_graph"] = time_cuda(_graphed(step), repeats)
    mine = {k: v for k, v in times.items() if k in GENLAB}
    if mine:  # where the best executor's step goes: what bounds it (targets())
        result["breakdown"] = step_breakdown(engines[min(mine, key=mine.get)], x, y)
    del models, engines
    torch.cuda.empty_cache()
    if "torch_compile" in implementations:
        compiled = _compile_in_child(name, repeats, compile_timeout)
        if "loss" in compiled:
            difference = abs(compiled["loss"] - losses["serial"]) / abs(losses["serial"])
            agreement["torch_compile"] = difference
            if difference > 1e-4:
                compiled = {"error": f"loss {compiled['loss']} disagrees with the reference {losses['serial']}"}
        result["torch_compile"] = compiled
        if "ms" in compiled:
            times["torch_compile"] = compiled["ms"]
            result["compile_s"] = compiled["compile_s"]
    if "serial" in implementations:
        serial = SerialEngine(net, Adam(lr=lr), dtype="float32")
        times["serial"] = time_host(lambda: serial.step(x, y), serial_repeats)
    result["ms_per_step"] = times
    mine = {k: v for k, v in times.items() if k in GENLAB}
    if mine:
        best = result["genlab_best"] = min(mine, key=mine.get)
        result["speedup_of_genlab_best"] = {k: v / times[best] for k, v in times.items() if k != best}
    return result


def step_breakdown(engine, x: np.ndarray, y: np.ndarray, repeats: int = 50) -> dict:
    """Where one training step of a CUDA engine goes, in microseconds, with the number of
    topological levels it runs through (depth: forward levels; the backward pass has one fewer).

    The row executor (one launch): its item timeline (CudaEngine.trace_step, the shortest of
    five): the forward pass from the first item taken to the last forward item done, the backward
    pass from the loss item to the last gradient item, and the median work of a forward and a
    backward item (inputs complete to done). The level executors: the forward, backward and
    update launches, each part captured alone in a CUDA graph and timed over `repeats` replays."""
    depth = len(engine.layout.forward_levels)
    out = {"executor": engine.executor, "levels": depth}
    if engine.schedule == "rows":
        traces = [engine.trace_step(x, y) for _ in range(5)]
        t = min(traces, key=lambda tr: tr["done"].max())
        fwd, bwd = t["kind"] == "forward", np.isin(t["kind"], ("loss", "backward", "weight", "input_weight"))
        loss_taken = t["taken"][t["kind"] == "loss"].min()
        out.update(step_us=float(t["done"].max() - t["taken"].min()),
                   forward_us=float(t["done"][fwd].max() - t["taken"].min()),
                   backward_us=float(t["done"][bwd].max() - loss_taken),
                   forward_item_work_us=float(np.median((t["done"] - t["ready"])[fwd])),
                   backward_item_work_us=float(np.median((t["done"] - t["ready"])[t["kind"] == "backward"])))
    elif engine.schedule == "level":
        engine.step(x, y)
        batch = len(x)
        parts = {"forward_us": lambda: engine._enqueue_forward(batch),
                 "backward_us": lambda: engine._enqueue_backward(batch), "update_us": engine._enqueue_update}
        for name, enqueue in parts.items():
            out[name] = time_graph(engine, enqueue, repeats)
        out["step_us"] = out["forward_us"] + out["backward_us"] + out["update_us"]
    else:
        return out
    out["forward_per_level_us"] = out["forward_us"] / depth
    out["backward_per_level_us"] = out["backward_us"] / max(depth - 1, 1)
    return out


def time_graph(engine, enqueue, repeats: int, warmup: int = 5) -> float:
    """Mean microseconds of one replay of what enqueue() puts on the engine's stream, captured in
    a CUDA graph (CUDA events around `repeats` replays after `warmup`)."""
    import pycuda.driver as drv

    from .engines.cuda_graph import Graph

    graph = Graph(engine.stream, enqueue)
    for _ in range(warmup):
        graph.launch()
    start, end = drv.Event(), drv.Event()
    start.record(engine.stream)
    for _ in range(repeats):
        graph.launch()
    end.record(engine.stream)
    end.synchronize()
    return start.time_till(end) / repeats * 1e3


def bound(result: dict) -> dict:
    """What bounds the best genlab executor on a workload, from its floors and its breakdown:
    arithmetic or memory traffic where that floor is at least half the measured step, else the
    latency along the levels (the step as depth + depth - 1 dependent levels, each against its
    share of the floor)."""
    best = result["ms_per_step"][result["genlab_best"]]
    floor, parts = result["floor_ms"], result.get("breakdown", {})
    out = {"floor_ms": floor["floor"], "over_floor": best / floor["floor"], "breakdown": parts}
    if floor["compute"] >= 0.5 * best:
        out["bound"] = "arithmetic"
        out["why"] = (f"the FLOPs alone take {floor['compute']:.3g} ms at the device's FP32 matmul rate, "
                      f"{100 * floor['compute'] / best:.0f}% of the step")
    elif floor["memory"] >= 0.5 * best:
        out["bound"] = "memory traffic"
        out["why"] = (f"the fewest bytes take {floor['memory']:.3g} ms at the device's copy rate, "
                      f"{100 * floor['memory'] / best:.0f}% of the step")
    elif "forward_per_level_us" in parts:
        hops = 2 * parts["levels"] - 1
        share = floor["floor"] * 1e3 / hops
        out["bound"] = "latency along the levels"
        out["why"] = (f"{parts['levels']} forward levels at {parts['forward_per_level_us']:.1f} us and "
                      f"{parts['levels'] - 1} backward levels at {parts['backward_per_level_us']:.1f} us, each one "
                      f"waiting for the last; a level's share of the floor is {share:.1f} us")
        if "forward_item_work_us" in parts:
            out["why"] += (f"; a forward item works {parts['forward_item_work_us']:.1f} us once its inputs are "
                           f"complete (a backward item {parts['backward_item_work_us']:.1f} us), the rest of a level "
                           "is the hand-off and the item's setup")
        if "update_us" in parts:
            out["why"] += f"; the update adds {parts['update_us']:.0f} us"
    else:
        out["bound"] = "not measured"
        out["why"] = "no breakdown of the step was recorded"
    return out


def _compile_in_child(name: str, repeats: int, timeout: int) -> dict:
    """torch.compile of the level-batched step, timed in a child process given `timeout` seconds."""
    code = f"from genlab.bench import compile_child; compile_child({name!r}, {repeats})"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not compile and run within {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(lines[-1])


def compile_child(name: str, repeats: int) -> None:
    """(In the child process) compile the level-batched model's step, check its loss, time it."""
    import torch

    _, build, batch = WORKLOADS[name]
    net = build()
    x, y = batch_of(net, batch)
    device = torch.device("cuda")
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    params, forward = torch_level_model(net, device)
    compiled = torch.compile(forward)
    step = _torch_step(params, compiled, xt, yt, 1e-3)
    start = time.perf_counter()
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(compiled(xt), yt).item()
    step()
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - start
    print(json.dumps({"ms": time_cuda(step, repeats), "compile_s": compile_s, "loss": loss}))


def step_cost(net: Network, batch: int) -> tuple[float, float]:
    """(FLOPs, fewest bytes) of one training step: 2 FLOPs per weight and row forward, 4 backward;
    each activation and its gradient written and read once, each parameter, its gradient and
    Adam's two moments read and written once."""
    weights = sum(w.size for w in net.weights.values())
    columns = sum(net.widths.values())
    return 6.0 * batch * weights, 4.0 * (4 * batch * columns + 7 * net.n_params)


def ceilings() -> dict:
    """The device's measured ceilings: copy bandwidth (bytes read + written) and FP32 matmul rate."""
    import torch

    a = torch.empty(2**29, dtype=torch.float32, device="cuda").uniform_()  # 2 GiB
    b = torch.empty_like(a)
    ms = time_cuda(lambda: b.copy_(a), 20, warmup=3)
    bandwidth = 2 * a.numel() * 4 / (ms / 1e3)
    del a, b
    torch.backends.cuda.matmul.allow_tf32 = False
    m = torch.randn(8192, 8192, device="cuda")
    ms = time_cuda(lambda: m @ m, 10, warmup=3)
    return {"copy_bytes_per_s": bandwidth, "fp32_matmul_flops_per_s": 2 * 8192**3 / (ms / 1e3)}


def add_floors(result: dict, ceiling: dict) -> None:
    compute = result["flops"] / ceiling["fp32_matmul_flops_per_s"] * 1e3
    memory = result["min_bytes"] / ceiling["copy_bytes_per_s"] * 1e3
    result["floor_ms"] = {"compute": compute, "memory": memory, "floor": max(compute, memory)}
    for label in GENLAB:
        if label in result["ms_per_step"]:
            result.setdefault("over_floor", {})[label] = result["ms_per_step"][label] / max(compute, memory)


def import_times() -> dict:
    """Seconds to import genlab and load its kernels, with an empty kernel cache and a warm one
    (median of 3), each in a fresh process; and the floor under the warm time: the same process
    importing only numpy and PyCUDA and creating the CUDA context, which genlab cannot avoid."""
    code = ("import time; t = time.perf_counter(); import genlab; from genlab.engines.cuda import kernels; "
            "kernels(); print(time.perf_counter() - t)")
    floor = ("import time; t = time.perf_counter(); import numpy; import pycuda.driver as drv; drv.init(); "
             "c = drv.Device(0).retain_primary_context(); c.push(); print(time.perf_counter() - t); c.pop()")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "GENLAB_CACHE_DIR": cache}
        run = lambda src: float(subprocess.run([sys.executable, "-c", src], env=env, capture_output=True, text=True,
                                               check=True).stdout.split()[-1])
        cold = run(code)
        warm = statistics.median(run(code) for _ in range(3))
        base = statistics.median(run(floor) for _ in range(3))
    return {"cold_s": cold, "warm_s": warm, "numpy_pycuda_context_s": base}


_MISSING = object()  # growth_phases: an attribute the wrapped object did not have itself


@contextlib.contextmanager
def growth_phases(trainer):
    """Time the parts of a trainer's growth events (wall clock; the device synchronised after
    each part that queues GPU work, so that the work counts where it is queued). Yields a list
    that gets, per growth event, {"total": ms, "new_groups": n, part: ms, ...}. The parts: check
    (the growth rules, which contain choose, on the engine, and duplicate, on the network), copy
    and topology (the network's), apply (the engine's apply_growth, which on the CUDA engine
    contains index, build, group_state, replay and flush). Everything is unwrapped on exit."""
    from . import growth, network

    events, now, restore = [], {}, []
    engine = trainer.engine
    sync = engine.stream.synchronize if hasattr(engine, "stream") else (lambda: None)

    def wrap(owner, name, label, device=False):
        own = vars(owner).get(name, _MISSING)
        original = getattr(owner, name)

        def timed(*a, **k):
            t = time.perf_counter()
            out = original(*a, **k)
            if device:
                sync()
            now[label] = now.get(label, 0.0) + (time.perf_counter() - t) * 1e3
            return out

        setattr(owner, name, timed)
        restore.append((owner, name, own))

    wrap(trainer, "grow", "total", device=True)
    wrap(trainer.grower, "check", "check")
    wrap(growth, "duplicate_width", "duplicate")
    wrap(growth, "duplicate_depth", "duplicate")
    wrap(engine, "choose_growth", "choose", device=True)
    wrap(engine, "apply_growth", "apply", device=True)
    wrap(network.Network, "topology", "topology")
    wrap(network.Network, "copy", "copy")
    if hasattr(engine, "stream"):
        from .engines import cuda

        wrap(cuda._Index, "grown", "index")
        for name in ("_build", "_group_state", "_replay", "_flush"):
            wrap(engine, name, name.strip("_"), device=True)
    grow = trainer.grow

    def grow_and_record():
        now.clear()
        made = grow()
        if made:
            events.append({"total": now.pop("total"), "new_groups": len(made), **now})
        return made

    trainer.grow = grow_and_record
    try:
        yield events
    finally:
        for owner, name, own in reversed(restore):
            if own is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, own)


def run_growth(steps: int = 2000, every: int = 20, max_groups: int = 512, batch: int = 64,
               implementations=("genlab_level", "genlab_dataflow", "serial", "torch_eager_group",
                                "torch_level_graph")) -> dict:
    """W5: digits from one group, growth every `every` steps up to max_groups, for `steps` steps.
    genlab grows in place; PyTorch rebuilds its model (and re-captures its graph) at each event
    from the genlab network of that moment. Returns total seconds and median ms per growth event."""
    import torch

    from . import datasets
    from .growth import GrowthPolicy
    from .trainer import Trainer

    data = datasets.load("digits", seed=0)
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(data.y_train), batch, replace=False) for _ in range(steps)]
    policy = dict(threshold=0.0, every=every, cooldown=0, max_groups=max_groups, mode="width")
    out = {"description": f"digits from one group of 8, growth every {every} steps up to {max_groups} groups, "
                          f"{steps} steps of batch {batch}"}
    nets = []  # the network after each growth step (from the genlab CUDA run), for PyTorch to rebuild
    for label in [i for i in (*GENLAB, "serial") if i in implementations]:
        backend = "serial" if label == "serial" else "cuda"
        executor = None if label == "serial" else label[len("genlab_"):]
        trainer = Trainer(Network.mlp([64, 8, 10], seed=0), backend=backend, seed=0, growth=GrowthPolicy(**policy),
                          executor=executor)
        grow, events = trainer.grow, []

        def timed_grow():
            torch.cuda.synchronize()
            t = time.perf_counter()
            made = grow()
            torch.cuda.synchronize()
            if made:
                events.append((time.perf_counter() - t) * 1e3)
                if label == "genlab_level":
                    nets.append((trainer.step_count, trainer.net.copy()))
            return made

        trainer.grow = timed_grow
        torch.cuda.synchronize()
        start = time.perf_counter()
        for idx in batches:
            trainer.step(data.X_train[idx], data.y_train[idx])
        torch.cuda.synchronize()
        out[label] = {"total_s": time.perf_counter() - start, "growth_event_ms": statistics.median(events),
                      "growth_events": len(events), "groups_end": len(trainer.net.groups), "steps": steps,
                      "test_accuracy": trainer.evaluate(*data.test)["accuracy"]}
        # where an event's time goes: the same growth again, each part timed (growth_phases); the
        # parts of the event whose total is the median
        phased = Trainer(Network.mlp([64, 8, 10], seed=0), backend=backend, seed=0, growth=GrowthPolicy(**policy),
                         executor=executor)
        with growth_phases(phased) as timed:
            for idx in batches[:every * max(len(events), 1) + 1]:
                phased.step(data.X_train[idx], data.y_train[idx])
        if timed:
            out[label]["growth_event_phases_ms"] = sorted(timed, key=lambda e: e["total"])[len(timed) // 2]
    device = torch.device("cuda")
    for label in ("torch_eager_group", "torch_level_graph"):
        if label not in implementations or not nets:
            continue
        schedule = dict(nets)
        net = Network.mlp([64, 8, 10], seed=0)
        events = []
        torch.cuda.synchronize()
        start = time.perf_counter()
        step = None
        for i, idx in enumerate(batches, start=1):
            if step is None or i - 1 in schedule:
                t = time.perf_counter()
                current = schedule.get(i - 1, net)
                xt = torch.from_numpy(data.X_train[idx]).to(device)
                yt = torch.from_numpy(data.y_train[idx]).to(device)
                if label == "torch_eager_group":
                    step = _torch_step(*torch_group_model(current, device), xt, yt, 1e-3)
                else:
                    static_x, static_y = xt.clone(), yt.clone()
                    step = _graphed(_torch_step(*torch_level_model(current, device), static_x, static_y, 1e-3,
                                                capturable=True))
                torch.cuda.synchronize()
                if i - 1 in schedule:
                    events.append((time.perf_counter() - t) * 1e3)
            if label == "torch_level_graph":
                static_x.copy_(torch.from_numpy(data.X_train[idx]))
                static_y.copy_(torch.from_numpy(data.y_train[idx]))
            else:
                xt.copy_(torch.from_numpy(data.X_train[idx]))
                yt.copy_(torch.from_numpy(data.y_train[idx]))
            step()
        torch.cuda.synchronize()
        out[label] = {"total_s": time.perf_counter() - start, "growth_event_ms": statistics.median(events),
                      "growth_events": len(events)}
    return out


def targets(details: dict) -> list[dict]:
    """The performance targets, each with what was measured (best genlab executor) and whether it is met."""
    w, out = details["workloads"], []

    def ms(name, impl):
        return w.get(name, {}).get("ms_per_step", {}).get(impl)

    def best(name):
        mine = [v for k, v in w.get(name, {}).get("ms_per_step", {}).items() if k in GENLAB]
        return min(mine) if mine else None

    def add(text, measured, met, wanted=None, shortfall=None, why=None):
        entry = {"target": text, "measured": measured, "met": bool(met)}
        if not met and wanted is not None:  # by how much, and what bounds it
            entry.update(wanted=wanted, shortfall=shortfall, **(why or {}))
        out.append(entry)

    def limit(name):
        result = w.get(name, {})
        return bound(result) if "floor_ms" in result and "genlab_best" in result else None

    if best("W1"):
        add("W1: genlab <= 0.15 ms a step", best("W1"), best("W1") <= 0.15, 0.15, best("W1") / 0.15, limit("W1"))
        for impl, factor, text in (("torch_level_graph", 10, "the PyTorch level-batched CUDA graph"),
                                   ("torch_eager_group", 2000, "PyTorch with one Linear per group"),
                                   ("serial", 1000, "the serial engine")):
            if ms("W1", impl):
                ratio = ms("W1", impl) / best("W1")
                add(f"W1: >= {factor}x {text}", ratio, ratio >= factor, factor, factor / ratio, limit("W1"))
    for name, factor in (("W2", 12), ("W3", 4)):
        if best(name) and ms(name, "torch_level_graph"):
            ratio = ms(name, "torch_level_graph") / best(name)
            add(f"{name}: >= {factor}x the level-batched CUDA graph", ratio, ratio >= factor, factor, factor / ratio,
                limit(name))
    if best("W4"):
        torch_best = min(v for k, v in w["W4"]["ms_per_step"].items() if k.startswith("torch"))
        ratio = best("W4") / torch_best
        add("W4: at most 1.2x PyTorch's best time", ratio, ratio <= 1.2, 1.2, ratio / 1.2, limit("W4"))
    for label in GENLAB:
        run = w.get("W5", {}).get(label)
        if run:
            step_ms = run["total_s"] * 1e3 / run["steps"]
            phases = run.get("growth_event_phases_ms", {})
            parts = ", ".join(f"{k} {v:.2f}" for k, v in phases.items() if k not in ("total", "new_groups"))
            why = {"bound": "host work of a growth event",
                   "why": f"the median event of a second run ({phases['new_groups']} new groups, {phases['total']:.2f} ms "
                          f"with the engine synchronised after each part), in ms: {parts}; check contains choose "
                          "and duplicate, apply contains index, build, group_state, replay and flush",
                   "breakdown": phases} if phases else None
            add(f"W5 ({label}): a growth event costs less than one training step (ms: event, mean step)",
                [run["growth_event_ms"], step_ms], run["growth_event_ms"] < step_ms, step_ms,
                run["growth_event_ms"] / step_ms, why)
    if "import" in details:
        times = details["import"]
        cold, warm, base = times["cold_s"], times["warm_s"], times.get("numpy_pycuda_context_s")
        why = {"bound": "numpy, PyCUDA and the CUDA context",
               "why": f"importing numpy and PyCUDA and creating the CUDA context alone take {base:.2f} s here, "
                      f"genlab's own imports and kernel loads {warm - base:.2f} s"} if base is not None else None
        add("import and first CUDA use <= 2 s cold, <= 0.6 s warm", [cold, warm], cold <= 2 and warm <= 0.6,
            [2, 0.6], max(cold / 2, warm / 0.6), why)
    return out


def chart(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [w for w in summary["workloads"] if w != "W5"]
    if not names:
        return
    impls = [i for i in IMPLEMENTATIONS if any(i in summary["workloads"][w] for w in names)]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.8 / max(len(impls), 1)
    for k, impl in enumerate(impls):
        values = [summary["workloads"][w].get(impl, np.nan) for w in names]
        ax.bar(np.arange(len(names)) + k * width, values, width, label=impl)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
    ax.set_yscale("log")
    ax.set_ylabel("ms per training step (log)")
    ax.set_title(f"one training step, {summary['device']}")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def environment() -> dict:
    import pycuda
    import torch

    from . import __version__
    from .engines.cuda import kernels

    _, device, _ = kernels()
    return {"device": device.name(), "compute_capability": "%d.%d" % device.compute_capability(),
            "genlab": __version__, "torch": torch.__version__, "pycuda": pycuda.VERSION_TEXT,
            "numpy": np.__version__, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def write(details: dict, folder: Path) -> None:
    """summary.json (workload -> implementation -> ms per step), details.json (everything) and chart.png."""
    summary = {"device": details["environment"]["device"], "workloads": {}}
    for name, r in details["workloads"].items():
        if name == "W5":
            summary["workloads"][name] = {k: {"total_s": v["total_s"], "growth_event_ms": v["growth_event_ms"]}
                                          for k, v in r.items() if isinstance(v, dict)}
        else:
            summary["workloads"][name] = {**r["ms_per_step"], **({"compile_s": r["compile_s"]} if "compile_s" in r else {})}
    details["targets"] = targets(details)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "details.json").write_text(json.dumps(details, indent=2) + "\n")
    chart(summary, folder / "chart.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="genlab bench", description=__doc__.splitlines()[0])
    parser.add_argument("--workload", action="append", choices=[*WORKLOADS, "W5"],
                        help="repeatable; default: all")
    parser.add_argument("--implementation", action="append", choices=IMPLEMENTATIONS, help="repeatable; default: all")
    parser.add_argument("--growth-implementation", action="append", choices=IMPLEMENTATIONS,
                        help="repeatable; W5's implementations (default: those of --implementation; serial and "
                             "torch_eager_group take minutes there)")
    parser.add_argument("--repeats", type=int, default=100, help="timed steps per implementation (at least 50)")
    parser.add_argument("--compile-timeout", type=int, default=300, help="seconds torch.compile may take")
    parser.add_argument("--out", default="benchmarks/results", help="folder; results go to OUT/<device>/")
    args = parser.parse_args(argv)
    env = environment()
    implementations = args.implementation or IMPLEMENTATIONS
    folder = Path(args.out) / env["device"].replace(" ", "_")
    folder.mkdir(parents=True, exist_ok=True)
    details = {"environment": env, "command": " ".join(["genlab bench", *(argv if argv is not None else sys.argv[1:])]),
               "ceilings": ceilings(), "import": import_times(), "workloads": {}}
    print("ceilings", json.dumps(details["ceilings"]), "import", json.dumps(details["import"]), flush=True)
    for name in args.workload or [*WORKLOADS, "W5"]:
        if name == "W5":
            details["workloads"]["W5"] = run_growth(implementations=args.growth_implementation or implementations)
            print("W5", json.dumps(details["workloads"]["W5"]), flush=True)
        else:
            result = run_workload(name, max(args.repeats, 50), implementations, compile_timeout=args.compile_timeout)
            add_floors(result, details["ceilings"])
            details["workloads"][name] = result
            print(name, json.dumps(result["ms_per_step"]), "floor", json.dumps(result["floor_ms"]), flush=True)
        write(details, folder)  # after each workload, so a run cut short keeps what it measured
    for target in details["targets"]:
        print(("met   " if target["met"] else "missed"), target["target"], target["measured"], flush=True)
    print(f"wrote {folder}/summary.json, details.json, chart.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
