"""The shape sweep: which executor wins where, what executor="auto" chose, and how genlab stands
against PyTorch beyond W1-W4.

A grid of layered random DAGs (depth x groups per level x width, fan-in 4, batch 256) and a few
shapes beside it (mixed widths, odd sizes, very wide and shallow, tiny), each timed with every
executor, with "auto" and with PyTorch's level-batched model captured in a CUDA graph, in one
process: the median ms of a training step (engine.step, host work included, CUDA events).
Shapes of more than MAX_PARAMS parameters are left out (listed).
"""

from __future__ import annotations

import itertools

from ..network import OUTPUT, Network
from .baselines import _graphed, _torch_step, torch_level_model
from .timing import time_cuda
from .workloads import batch_of

DEPTHS, PER_LEVEL, WIDTHS = (3, 12, 48), (4, 32, 128), (8, 32, 128)
MAX_PARAMS = 40_000_000
AUTO = "genlab_auto"
TORCH = "torch_level_graph"


def shapes() -> dict:
    """name: (network builder, batch)."""
    grid = {f"L{d} G{g} n{w}": ((lambda d=d, g=g, w=w: Network.random_dag(d, g, w, 4, seed=0)), 256)
            for d, g, w in itertools.product(DEPTHS, PER_LEVEL, WIDTHS)}
    grid.update({
        "mixed widths 4-96, L10 G24": (lambda: Network.random_dag(10, 24, (4, 96), (1, 6), seed=1), 256),
        "odd: L7 G13 n13, batch 100": (lambda: Network.random_dag(7, 13, 13, 3, seed=2, n_inputs=37, n_outputs=7), 100),
        "wide shallow: L1 G1024 n16": (lambda: Network.random_dag(1, 1024, 16, 1, seed=3), 256),
        "wide shallow: L2 G256 n64": (lambda: Network.random_dag(2, 256, 64, 2, seed=3), 256),
        "tiny: mlp 64-8-10, batch 32": (lambda: Network.mlp([64, 8, 10], seed=0), 32),
        "tiny: L2 G2 n4": (lambda: Network.random_dag(2, 2, 4, 2, seed=4), 32),
        "classroom: L5 G10 n16, batch 32": (lambda: Network.random_dag(5, 10, 16, 4, seed=0), 32),
        "big batch: L8 G32 n16, batch 2048": (lambda: Network.random_dag(8, 32, 16, 4, seed=5), 2048),
    })
    return grid


def run_sweep(repeats: int = 30, names=None, progress=print, torch_baseline: bool = True) -> dict:
    """Per shape: its size, the ms per step of every executor, of auto and of PyTorch's level
    graph, the winner, auto's choice (and how it was made), auto's time over the winner's and
    PyTorch's over the winner's."""
    from ..engines.cuda import CudaEngine
    from ..engines.cuda.executors import EXECUTORS
    from ..optim import Adam

    out = {}
    for name, (build, batch) in shapes().items():
        if names and name not in names:
            continue
        net = build()
        entry = {"batch": batch, "groups": len(net.groups), "levels": net.levels()[OUTPUT], "parameters": net.n_params}
        if net.n_params > MAX_PARAMS:
            out[name] = {**entry, "skipped": f"more than {MAX_PARAMS} parameters"}
            continue
        x, y = batch_of(net, batch)
        times, first_loss = {}, None
        for executor in [*EXECUTORS, "auto"]:
            times[f"genlab_{executor}"], chooser, loss = _time(CudaEngine(net, Adam(lr=1e-4), executor=executor), x, y,
                                                               repeats)
            first_loss = loss if first_loss is None else first_loss
            if chooser is not None:
                entry["auto"] = chooser.last
        if torch_baseline:
            times[TORCH] = _torch_graph_ms(net, x, y, repeats, first_loss)
        entry["ms_per_step"] = times
        out[name] = judge(entry)
        best = entry["best"]
        against = f", PyTorch's level graph {times[TORCH]:.3f} ms = {entry['torch_over_best']:.2f}x" if TORCH in times else ""
        progress(f"sweep {name}: best {best} {times[best]:.3f} ms, auto chose {entry['auto_chose']} "
                 f"({entry['auto']['how']}) {times[AUTO]:.3f} ms = {entry['auto_over_best']:.3f}x{against}")
    return out


def judge(entry: dict) -> dict:
    """The winner of a shape and auto's standing, from its times: auto_over_best is the time of
    the executor auto chose over the best one's, both measured side by side in the sweep (the
    choice is the executor: auto runs its code and nothing else on the device);
    auto_measured_over_best is auto's own engine timed apart, which adds the spread between two
    engines of one executor (up to 13% on sub-millisecond steps bound by the host); torch_over_best
    is PyTorch's level graph over the best executor, where it was timed."""
    times = entry["ms_per_step"]
    best = min((k for k in times if k.startswith("genlab_") and k != AUTO), key=times.get)
    chose = entry["auto"]["executor"]
    entry.update(best=best, auto_chose=chose, auto_over_best=times[f"genlab_{chose}"] / times[best],
                 auto_measured_over_best=times[AUTO] / times[best])
    if TORCH in times:
        entry["torch_over_best"] = times[TORCH] / times[best]
    return entry


def _torch_graph_ms(net: Network, x, y, repeats: int, loss: float) -> float:
    """PyTorch's level-batched model (Adam, as genlab's engines) captured in one CUDA graph: the
    median ms of a replayed step, once its loss before any step is checked against `loss` (a
    genlab engine's first step's)."""
    import torch

    device = torch.device("cuda")
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    params, forward = torch_level_model(net, device)
    with torch.no_grad():
        theirs = torch.nn.functional.cross_entropy(forward(xt), yt).item()
    if abs(theirs - loss) > 1e-4 * abs(loss):
        raise AssertionError(f"PyTorch's level model disagrees with genlab on the loss: {theirs} against {loss}")
    ms = time_cuda(_graphed(_torch_step(params, forward, xt, yt, 1e-4, capturable=True)), repeats, warmup=5)
    del params, forward
    torch.cuda.empty_cache()
    return ms


def _time(engine, x, y, repeats: int):
    """(median ms of a step, the engine's chooser, its first step's loss); the first step (auto's
    choice) untimed."""
    loss, _ = engine.step(x, y)
    return time_cuda(lambda: engine.step(x, y), repeats, warmup=5), engine.chooser, loss
