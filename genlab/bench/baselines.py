"""The PyTorch baselines: the same network as one Linear per group, or batched per level; their
training step, captured in a CUDA graph or compiled in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

from ..network import INPUT, OUTPUT, Network
from .timing import time_cuda
from .workloads import WORKLOADS, batch_of


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


def _compile_in_child(name: str, repeats: int, timeout: int) -> dict:
    """torch.compile of the level-batched step, timed in a child process given `timeout` seconds."""
    return run_child(f"from genlab.bench import compile_child; compile_child({name!r}, {repeats})", timeout)


def run_child(code: str, timeout: int) -> dict:
    """The last JSON line a child Python process running `code` prints (torch.compile runs there, so
    that a hang or a crash of the compiler costs that process only), or {"error": why}."""
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
