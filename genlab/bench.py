"""Benchmarks: one full training step (forward, loss, backward, Adam update) of a workload.

Every implementation is built from the same genlab Network with the same weights, and their
losses on the same batch are checked to agree before anything is timed. Times are medians of
CUDA-event measurements after a warm-up, in milliseconds per step.

Implementations: genlab_level (the CUDA engine, one launch per level), serial (the NumPy
engine), torch_eager_group (one nn.Linear per group on torch.cat of its inputs), torch_level
(one gather + bmm + ReLU per topological level) and torch_level_graph (that, captured whole in
one CUDA graph).

    python -m genlab.bench --workload W1 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from .network import INPUT, OUTPUT, Network

WORKLOADS = {  # name: (description, network builder, batch)
    "W1": ("wide: L=16 W=128 n=16 k=4", lambda: Network.random_dag(16, 128, 16, 4, seed=0), 256),
}


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


def run_workload(name: str, repeats: int = 100, serial_repeats: int = 3, eager_repeats: int = 5) -> dict:
    import torch

    from .engines.cuda import CudaEngine
    from .engines.serial import SerialEngine
    from .optim import Adam

    description, build, batch = WORKLOADS[name]
    net = build()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(batch, net.n_inputs)).astype(np.float32)
    y = rng.integers(0, net.n_outputs, batch)
    lr = 1e-3
    result = {"description": description, "batch": batch, "groups": len(net.groups), "edges": len(net.edges),
              "parameters": net.n_params, "levels": net.levels()[OUTPUT]}

    engine = CudaEngine(net, Adam(lr=lr))         # the engine's primary context is PyTorch's too
    device = torch.device("cuda")
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)

    reference = SerialEngine(net, Adam(lr=lr), dtype="float64")
    reference.forward(x)
    losses = {"serial": reference.backward(y)}
    engine.forward(x)
    losses["genlab_level"] = engine.backward(y)

    group_params, group_forward = torch_group_model(net, device)
    level_params, level_forward = torch_level_model(net, device)
    ce = torch.nn.functional.cross_entropy
    losses["torch_eager_group"] = ce(group_forward(xt), yt).item()
    losses["torch_level"] = ce(level_forward(xt), yt).item()
    reference = losses["serial"]
    agreement = {k: abs(v - reference) / abs(reference) for k, v in losses.items()}
    if max(agreement.values()) > 1e-4:
        raise AssertionError(f"implementations disagree on the loss: {losses}")
    result["loss"] = losses
    result["loss_relative_difference"] = agreement

    times = {}
    times["genlab_level"] = time_cuda(lambda: engine.step(x, y), repeats)

    opt_group = torch.optim.Adam(group_params.parameters(), lr=lr)

    def eager_group_step():
        opt_group.zero_grad(set_to_none=True)
        ce(group_forward(xt), yt).backward()
        opt_group.step()

    times["torch_eager_group"] = time_cuda(eager_group_step, eager_repeats, warmup=2)

    opt_level = torch.optim.Adam(level_params.parameters(), lr=lr, capturable=True)

    def level_step():
        opt_level.zero_grad(set_to_none=False)
        ce(level_forward(xt), yt).backward()
        opt_level.step()

    times["torch_level"] = time_cuda(level_step, repeats)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            level_step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        level_step()
    times["torch_level_graph"] = time_cuda(graph.replay, repeats)

    serial = SerialEngine(net, Adam(lr=lr), dtype="float32")
    times["serial"] = time_host(lambda: serial.step(x, y), serial_repeats)

    result["ms_per_step"] = times
    g = times["genlab_level"]
    result["speedup_of_genlab_level"] = {k: v / g for k, v in times.items() if k != "genlab_level"}
    return result


def environment() -> dict:
    import torch

    from . import __version__
    from .engines.cuda import kernels

    _, device, _ = kernels()
    import pycuda

    return {"device": device.name(), "compute_capability": "%d.%d" % device.compute_capability(),
            "genlab": __version__, "torch": torch.__version__, "pycuda": pycuda.VERSION_TEXT,
            "numpy": np.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="genlab bench", description=__doc__.splitlines()[0])
    parser.add_argument("--workload", action="append", choices=sorted(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--out", default="benchmarks/results", help="folder; results go to OUT/<device>/")
    args = parser.parse_args(argv)
    env = environment()
    workloads = {}
    for name in args.workload or sorted(WORKLOADS):
        workloads[name] = run_workload(name, args.repeats)
        print(name, json.dumps(workloads[name]["ms_per_step"]), flush=True)
    folder = Path(args.out) / env["device"].replace(" ", "_")
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"device": env["device"], "environment": env,
               "workloads": {name: w["ms_per_step"] for name, w in workloads.items()}}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "details.json").write_text(json.dumps({"environment": env, "workloads": workloads}, indent=2) + "\n")
    print(f"wrote {folder / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
