"""DAGs of many small conv or attention groups on the GPU: genlab's CUDA engine (the level
executor) against PyTorch's best hand-written equivalent, per level one grouped conv2d (or one
batched scaled_dot_product_attention) after one gather of every group's inputs, its training
step captured in one CUDA graph, and the same model under torch.compile. Every implementation
trains the same network (the same weights, Adam, cross-entropy) on the same random batch; the
logits of PyTorch's model are checked against genlab's before timing; times are the median of
CUDA-event-bracketed steps after a warm-up.

    python -m genlab.bench.kinds --out benchmarks/results/<device>/kinds.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..network import Network
from .baselines import _graphed, _torch_step, run_child
from .timing import time_cuda, time_graph

WORKLOADS = {  # kind: (levels, groups a level, width, fan-in, input shape, batch, options)
    "conv": (8, 64, 8, 2, (3, 16, 16), 256, {"kernel": 3}),
    "attention": (8, 64, 16, 2, (16, 16), 256, {"heads": 2}),
}


def layered(kind: str, levels: int, per_level: int, width: int, fan_in: int, shape, options: dict,
            seed: int = 0) -> Network:
    """`levels` levels of `per_level` groups of `kind`: level 1 reads the input; group i of a later
    level reads group i of the level before and fan_in - 1 others drawn at random (so that every
    group is read); the output reads the last level."""
    rng = np.random.default_rng(seed)
    net = Network(input_shape=shape, n_outputs=10, seed=seed)
    previous = [net.input]
    for _ in range(levels):
        chosen = []
        for i in range(per_level):
            others = [g for g in previous if g != previous[i % len(previous)]]
            extra = rng.choice(others, min(fan_in - 1, len(others)), replace=False) if others else []
            chosen.append(sorted([previous[i % len(previous)], *map(int, extra)]))
        previous = [net.add_group(width, inputs=inputs, kind=kind, **options) for inputs in chosen]
    for g in previous:
        net.connect(g, net.output)
    net.init_params(seed)
    return net


def _levels(net: Network) -> list[list[int]]:
    level = net.levels()
    return [[g for g in net.hidden_groups if level[g] == lv] for lv in range(1, level[net.output])]


def _output_head(net: Network, params, position: dict, device):
    """The output group's weights (its inputs' blocks side by side) and bias into `params`; the
    positions of its inputs in the last level, in its input order."""
    import torch

    last = net.inputs(net.output)
    head = np.concatenate([net.weights[(g, net.output)] for g in last], axis=1)
    params.append(torch.nn.Parameter(torch.from_numpy(head).to(device)))
    params.append(torch.nn.Parameter(torch.from_numpy(net.biases[net.output]).to(device)))
    return torch.from_numpy(np.array([position[g] for g in last])).to(device)


def torch_conv_model(net: Network, device):
    """Per level: gather each group's input channels from the level before, one grouped conv2d
    (groups = the level's groups), one ReLU; the output a Linear over the last level flattened."""
    import torch

    params, plan = torch.nn.ParameterList(), []
    position = {net.input: 0}
    for groups in _levels(net):
        c_in = net.widths[net.inputs(groups[0])[0]]
        idx = np.concatenate([position[s] * c_in + np.arange(c_in) for g in groups for s in net.inputs(g)])
        weight = np.concatenate([np.concatenate([net.weights[(s, g)] for s in net.inputs(g)], axis=1) for g in groups])
        params.append(torch.nn.Parameter(torch.from_numpy(weight).to(device)))
        params.append(torch.nn.Parameter(torch.from_numpy(np.concatenate([net.biases[g] for g in groups])).to(device)))
        plan.append((torch.from_numpy(idx).to(device), len(groups)))
        position.update({g: i for i, g in enumerate(groups)})
    order = _output_head(net, params, position, device)
    k = net.options[net.inputs(net.output)[0]]["kernel"]

    def forward(x):
        h = x
        for (idx, groups), w, b in zip(plan, params[0:-2:2], params[1:-2:2]):
            h = torch.relu(torch.nn.functional.conv2d(torch.index_select(h, 1, idx), w, b, padding=k // 2,
                                                      groups=groups))
        per_group = h.view(len(x), len(order), -1)[:, order]
        return per_group.reshape(len(x), -1) @ params[-2].T + params[-1]

    return params, forward


def torch_attention_model(net: Network, device):
    """Per level: gather each group's inputs (token-wise) from the level before, the projections as
    batched matmuls, one scaled_dot_product_attention over (samples x groups, heads); the output
    averages the tokens of the last level and applies its weights."""
    import torch
    import torch.nn.functional as F

    params, plan = torch.nn.ParameterList(), []
    position = {net.input: 0}
    for groups in _levels(net):
        d = net.widths[groups[0]]
        params.append(torch.nn.Parameter(torch.from_numpy(np.stack(
            [np.concatenate([net.weights[(s, g)] for s in net.inputs(g)], axis=1) for g in groups])).to(device)))
        own = np.stack([net.biases[g] for g in groups])
        params.append(torch.nn.Parameter(torch.from_numpy(own[:, :d]).to(device)))
        params.append(torch.nn.Parameter(torch.from_numpy(own[:, d:].reshape(len(groups), 4, d, d)).to(device)))
        idx = np.array([[position[s] for s in net.inputs(g)] for g in groups])
        plan.append((torch.from_numpy(idx).to(device), net.options[groups[0]]["heads"]))
        position.update({g: i for i, g in enumerate(groups)})
    order = _output_head(net, params, position, device)

    def forward(x):
        h = x[:, None]  # (batch, groups, tokens, features)
        for (idx, heads), w, b, mats in zip(plan, params[0:-2:3], params[1:-2:3], params[2:-2:3]):
            B, (G, fan), T = len(x), idx.shape, x.shape[1]
            inp = h[:, idx.reshape(-1)].view(B, G, fan, T, -1).permute(0, 1, 3, 2, 4).reshape(B, G, T, -1)
            z = torch.einsum("bgtk,gjk->bgtj", inp, w) + b[None, :, None]
            q, k, v = (torch.einsum("bgtk,gjk->bgtj", z, mats[:, i]) for i in range(3))
            split = lambda a: a.reshape(B * G, T, heads, -1).transpose(1, 2)
            o = F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(B, G, T, -1)
            h = z + torch.einsum("bgtk,gjk->bgtj", o, mats[:, 3])
        pooled = h.mean(dim=2)[:, order]
        return pooled.reshape(len(x), -1) @ params[-2].T + params[-1]

    return params, forward


MODELS = {"conv": torch_conv_model, "attention": torch_attention_model}


def case(kind: str):
    levels, per_level, width, fan_in, shape, batch, options = WORKLOADS[kind]
    net = layered(kind, levels, per_level, width, fan_in, shape, options)
    rng = np.random.default_rng(1)
    return net, rng.normal(size=(batch, *shape)).astype(np.float32), rng.integers(0, 10, batch)


def genlab_times(net: Network, x: np.ndarray, y: np.ndarray, repeats: int) -> dict:
    """ms of a training step (the engine's step: upload, graph replay, read-back) and of its parts."""
    from ..engines.cuda import CudaEngine
    from ..engines.cuda.executors import passes
    from ..optim import Adam

    engine = CudaEngine(net, Adam(1e-3), executor="level")
    logits = engine.forward(x)  # before any step: the weights PyTorch's model holds
    rows = engine.put_batch(x, y)
    parts = {name: time_graph(engine, lambda fn=fn: fn(engine), 20) / 1e3
             for name, fn in (("forward_ms", lambda e: passes.forward(e, rows)),
                              ("backward_ms", lambda e: passes.backward(e, rows)), ("update_ms", passes.update))}
    return {"ms": time_cuda(lambda: engine.step(x, y), repeats), **parts, "logits": logits}


def precision(tf32: bool) -> None:
    """fp32 throughout (tf32=False, as genlab computes), or PyTorch's defaults: cuDNN convolutions
    on TF32 tensor cores (10-bit mantissas), matmuls in fp32."""
    import torch

    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = False


def torch_graph_ms(kind: str, net: Network, x, y, repeats: int, tf32: bool = False) -> tuple[float, np.ndarray]:
    import torch

    precision(tf32)
    device = torch.device("cuda")
    params, forward = MODELS[kind](net, device)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    with torch.no_grad():
        logits = forward(xt).cpu().numpy()
    replay = _graphed(_torch_step(params, forward, xt, yt, 1e-3, capturable=True))
    return time_cuda(replay, repeats), logits


def compile_child(kind: str, repeats: int, tf32: bool) -> None:
    """(In a child process) torch.compile of the level model's step: compile time and step time."""
    import torch

    precision(tf32)
    net, x, y = case(kind)
    device = torch.device("cuda")
    params, forward = MODELS[kind](net, device)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    step = _torch_step(params, torch.compile(forward), xt, yt, 1e-3)
    start = time.perf_counter()
    step()
    torch.cuda.synchronize()
    print(json.dumps({"ms": time_cuda(step, repeats), "compile_s": time.perf_counter() - start}))


def compiled_ms(kind: str, repeats: int, timeout: int, tf32: bool) -> dict:
    return run_child(f"from genlab.bench.kinds import compile_child; compile_child({kind!r}, {repeats}, {tf32})",
                     timeout)


def run(repeats: int = 30, compile_timeout: int = 240, kinds=tuple(WORKLOADS), compile: bool = True) -> dict:
    import torch

    out = {"device": torch.cuda.get_device_name(), "workloads": {},
           "precision": "fp32 everywhere (PyTorch with TF32 off: torch.backends.cudnn.allow_tf32 = False); "
                        "with_tf32: PyTorch's default, cuDNN convolutions on TF32 tensor cores"}
    for kind in kinds:
        net, x, y = case(kind)
        levels, per_level, width, fan_in, shape, batch, options = WORKLOADS[kind]
        genlab = genlab_times(net, x, y, repeats)
        graph_ms, logits = torch_graph_ms(kind, net, x, y, repeats)
        check = float(np.linalg.norm(genlab.pop("logits") - logits) / np.linalg.norm(logits))
        graph_tf32_ms = torch_graph_ms(kind, net, x, y, repeats, tf32=True)[0]
        skipped = {"skipped": "--no-compile"}
        compiled = compiled_ms(kind, repeats, compile_timeout, False) if compile else skipped
        compiled_tf32 = compiled_ms(kind, repeats, compile_timeout, True) if compile else skipped
        out["workloads"][kind] = {
            "shape": {"levels": levels, "groups_per_level": per_level, "width": width, "fan_in": fan_in,
                      "input_shape": list(shape), "batch": batch, **options, "groups": len(net.hidden_groups),
                      "parameters": net.n_params},
            "genlab_level_ms": genlab["ms"], "genlab_parts_ms": {k: v for k, v in genlab.items() if k != "ms"},
            "torch_level_graph_ms": graph_ms, "torch_compile": compiled,
            "speedup_vs_graph": graph_ms / genlab["ms"],
            "speedup_vs_compile": compiled["ms"] / genlab["ms"] if "ms" in compiled else None,
            "with_tf32": {"torch_level_graph_ms": graph_tf32_ms, "torch_compile": compiled_tf32,
                          "speedup_vs_graph": graph_tf32_ms / genlab["ms"],
                          "speedup_vs_compile": compiled_tf32["ms"] / genlab["ms"] if "ms" in compiled_tf32 else None},
            "logits_rel_error_vs_torch": check}
        print(kind, json.dumps(out["workloads"][kind]), flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genlab.bench.kinds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--kinds", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS),
                        help="the workloads to run (default: all)")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out (minutes of compiling)")
    args = parser.parse_args(argv)
    result = run(args.repeats, kinds=args.kinds, compile=not args.no_compile)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
