"""Stacked RNN training steps on the GPU: genlab's recurrent CUDA engine on its wavefront kernel
(executor "wavefront", cuda/wavefront.cu) and through its unrolled DAG in wavefront and time-major
order (executors level and dataflow_rows), against PyTorch's nn.RNN (cuDNN, eager and in a CUDA
graph) and PyTorch's layer loop captured in one CUDA graph. Every implementation trains the same network
(the same weights, Adam, cross-entropy at the last step) on the same random batch; times are the
median of CUDA-event-bracketed steps after a warm-up.

    python -m genlab.bench.recurrence --out benchmarks/results/<device>/recurrence.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import BackendError
from ..network import Network
from .baselines import _graphed
from .timing import time_cuda

SHAPES = [  # (layers, steps, hidden, batch); features in = hidden / 2
    (2, 64, 64, 64), (4, 64, 64, 64), (8, 64, 64, 64), (4, 64, 128, 64), (4, 64, 256, 64), (4, 32, 64, 256),
    (4, 128, 64, 64), (2, 256, 64, 64), (4, 256, 64, 64), (2, 512, 64, 32),
]
# the targets' grid (hidden <= 128, batch 1-64, T 16-256) and the wide groups reported beside it
TARGETS = [(2, t, h, b) for h in (64, 128) for b in (1, 16, 64) for t in (16, 64, 256)]
WIDE = [(2, 64, h, 64) for h in (256, 512, 1024)]
GENLAB = [("genlab_wavefront_kernel", "wavefront", False),
          ("genlab_wavefront_level", "level", False), ("genlab_time_major_level", "level", True),
          ("genlab_wavefront_rows", "dataflow_rows", False), ("genlab_time_major_rows", "dataflow_rows", True)]


def case(layers: int, steps: int, hidden: int, batch: int, seed: int = 0):
    net = Network.elman(hidden // 2, [hidden] * layers, 10, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, steps, hidden // 2)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    return net, x, y


def torch_rnn(net: Network, layers: int, device):
    """nn.RNN (ReLU) and a Linear head holding the network's weights (the bias as b_ih, b_hh = 0)."""
    import torch

    hidden = net.widths[net.hidden_groups[0]]
    rnn = torch.nn.RNN(net.n_inputs, hidden, num_layers=layers, nonlinearity="relu", batch_first=True).to(device)
    head = torch.nn.Linear(hidden, net.n_outputs).to(device)
    groups = net.hidden_groups
    with torch.no_grad():
        for layer, g in enumerate(groups):
            src = 0 if layer == 0 else groups[layer - 1]
            getattr(rnn, f"weight_ih_l{layer}").copy_(torch.from_numpy(net.weights[(src, g)]))
            getattr(rnn, f"weight_hh_l{layer}").copy_(torch.from_numpy(net.weights[(g, g)]))
            getattr(rnn, f"bias_ih_l{layer}").copy_(torch.from_numpy(net.biases[g]))
            getattr(rnn, f"bias_hh_l{layer}").zero_()
        head.weight.copy_(torch.from_numpy(net.weights[(groups[-1], 1)]))
        head.bias.copy_(torch.from_numpy(net.biases[1]))
    return rnn, head


def torch_steps(net: Network, layers: int, x: np.ndarray, y: np.ndarray) -> dict:
    """ms per training step: cuDNN's nn.RNN, and the layer loop (cell by cell) in one CUDA graph."""
    import torch

    device = torch.device("cuda")
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    ce = torch.nn.functional.cross_entropy
    out = {}
    rnn, head = torch_rnn(net, layers, device)
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=1e-3)

    def cudnn_step():
        opt.zero_grad(set_to_none=True)
        ce(head(rnn(xt)[0][:, -1]), yt).backward()
        opt.step()
    out["torch_cudnn"] = time_cuda(cudnn_step, 50)
    rnn3, head3 = torch_rnn(net, layers, device)
    opt3 = torch.optim.Adam([*rnn3.parameters(), *head3.parameters()], lr=1e-3, capturable=True)

    def cudnn_graph_step():
        opt3.zero_grad(set_to_none=False)
        ce(head3(rnn3(xt)[0][:, -1]), yt).backward()
        opt3.step()
    try:
        out["torch_cudnn_graph"] = time_cuda(_graphed(cudnn_graph_step), 50)
    except RuntimeError as e:
        out["torch_cudnn_graph_error"] = str(e).splitlines()[0][:200]
        torch.cuda.synchronize()
    rnn2, head2 = torch_rnn(net, layers, device)
    weights = [(getattr(rnn2, f"weight_ih_l{i}"), getattr(rnn2, f"weight_hh_l{i}"), getattr(rnn2, f"bias_ih_l{i}"))
               for i in range(layers)]
    opt2 = torch.optim.Adam([*rnn2.parameters(), *head2.parameters()], lr=1e-3, capturable=True)

    def loop_step():
        opt2.zero_grad(set_to_none=False)
        h = [xt.new_zeros(xt.shape[0], w_hh.shape[0]) for _, w_hh, _ in weights]
        for t in range(xt.shape[1]):
            below = xt[:, t]
            for i, (w_ih, w_hh, b) in enumerate(weights):
                h[i] = torch.relu(torch.addmm(b, below, w_ih.t()) + h[i] @ w_hh.t())
                below = h[i]
        ce(head2(below), yt).backward()
        opt2.step()
    try:
        out["torch_loop_graph"] = time_cuda(_graphed(loop_step), 50)
    except RuntimeError as e:  # recorded, not hidden: the capture of this loop failed on this machine
        out["torch_loop_graph_error"] = str(e).splitlines()[0][:200]
        torch.cuda.synchronize()
    return out


def genlab_steps(net: Network, x: np.ndarray, y: np.ndarray, executors=None) -> dict:
    from ..engines.cuda.recurrent import RecurrentCudaEngine
    from ..optim import Adam

    out = {}
    for name, executor, time_major in GENLAB:
        if executors is not None and executor not in executors:
            continue
        try:
            engine = RecurrentCudaEngine(net, Adam(lr=1e-3), executor=executor, time_major=time_major)
            out[name] = _step_ms(engine, x, y, 30 if x.shape[1] <= 128 or executor == "wavefront" else 8)
        except BackendError as error:  # a shape this executor cannot hold (the unrolled DAG's 2^31 limit): said
            out[name + "_error"] = str(error)[:200]
            continue
        if executor != "wavefront":
            out[name + "_levels"] = max(engine.u.net.levels().values())  # dependent stages of the unrolled step
    return out


def one_layer_ms(net: Network, x: np.ndarray, y: np.ndarray) -> float:
    """ms per step of the wavefront kernel on a stack of one layer of the same width, steps and
    batch: its time over the steps is one cell's cost, the yardstick of the overlap."""
    from ..engines.cuda.recurrent import RecurrentCudaEngine
    from ..optim import Adam

    hidden = net.widths[net.hidden_groups[0]]
    single = Network.elman(net.n_inputs, [hidden], net.n_outputs, seed=0)
    return _step_ms(RecurrentCudaEngine(single, Adam(lr=1e-3), executor="wavefront"), x, y, 30)


def _step_ms(engine, x: np.ndarray, y: np.ndarray, repeats: int) -> float:
    """Median ms of engine.step(x, y) (CUDA events, after a warm-up)."""
    step = engine.step
    return time_cuda(lambda: step(x, y), repeats, warmup=3)


def share_of_ideal(layers: int, steps: int, stack_ms: float, single_ms: float) -> float:
    """How much of the wavefront's ideal overlap a stack reached: run step after step, L layers
    over T steps would cost L T cells of single_ms / T each; the ideal wavefront costs L + T - 1
    of them, so the share is (L + T - 1) (single_ms / T) / stack_ms (1.0: the ideal)."""
    return (layers + steps - 1) * (single_ms / steps) / stack_ms


def run(shapes=SHAPES, executors=None) -> list[dict]:
    from ..wavefront import ideal_speedup

    rows = []
    for layers, steps, hidden, batch in shapes:
        net, x, y = case(layers, steps, hidden, batch)
        row = {"layers": layers, "steps": steps, "hidden": hidden, "batch": batch,
               "ideal_wavefront_speedup": ideal_speedup(net, steps)}
        row.update({f"{k}_ms" if not k.endswith("_levels") else k: v
                    for k, v in genlab_steps(net, x, y, executors).items()})
        row.update({k if k.endswith("_error") else f"{k}_ms": v for k, v in torch_steps(net, layers, x, y).items()})
        for ex in ("level", "rows"):
            if f"genlab_time_major_{ex}_ms" in row:
                row[f"wavefront_speedup_{ex}"] = row[f"genlab_time_major_{ex}_ms"] / row[f"genlab_wavefront_{ex}_ms"]
                row[f"share_of_ideal_{ex}"] = row[f"wavefront_speedup_{ex}"] / row["ideal_wavefront_speedup"]
        if "genlab_wavefront_kernel_ms" in row:
            cudnn = min(row["torch_cudnn_ms"], row.get("torch_cudnn_graph_ms", np.inf))
            row["cudnn_over_wavefront_kernel"] = cudnn / row["genlab_wavefront_kernel_ms"]
            if layers > 1:
                row["genlab_wavefront_kernel_one_layer_ms"] = one_layer_ms(net, x, y)
                row["share_of_ideal_kernel"] = share_of_ideal(layers, steps, row["genlab_wavefront_kernel_ms"],
                                                              row["genlab_wavefront_kernel_one_layer_ms"])
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genlab.bench.recurrence", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--quick", action="store_true", help="the first two shapes only")
    parser.add_argument("--shapes", choices=["default", "targets", "wide"], default="default",
                        help="the first round's shapes, the targets' grid (hidden <= 128, batch 1-64, T 16-256), "
                             "or hidden 256-1024")
    parser.add_argument("--executors", help="comma-separated genlab executors to time (default: all)")
    args = parser.parse_args(argv)
    import torch

    shapes = {"default": SHAPES, "targets": TARGETS, "wide": WIDE}[args.shapes]
    executors = set(args.executors.split(",")) if args.executors else None
    rows = run(shapes[:2] if args.quick else shapes, executors)
    result = {"device": torch.cuda.get_device_name(), "unit": "ms per training step (median, CUDA events)",
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
