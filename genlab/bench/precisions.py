"""genlab bench --workload precision: W1-W4 in each precision, genlab against PyTorch computing in
the same one, side by side in one run.

For each workload and precision (genlab.precision): every executor that offers it and
executor="auto" (ms a training step, CUDA events, median), PyTorch's level-batched model in one
CUDA graph under the matching setting, and how far each lands from the exact step:

    fp32     PyTorch with TF32 off (torch.backends.cuda.matmul.allow_tf32 = False)
    3xtf32   the same (PyTorch has no 3xTF32 mode; its fp32 is the accuracy 3xtf32 keeps)
    tf32     PyTorch with TF32 matmuls on (allow_tf32 = True)
    bf16     PyTorch under torch.autocast(dtype=torch.bfloat16): its matmuls on bfloat16 operands
             (it also keeps their outputs in bfloat16, genlab keeps float32)

An executor whose first timed step takes GIVE_UP times the best so far is recorded with that one
step and not timed further (the cluster executor, made for small networks, takes seconds on W4).
Accuracy: the first step's loss of each implementation against the float64 serial engine in fp32
(the exact step) and genlab's against the serial engine in the same precision (the reference it is
tested against).
"""

from __future__ import annotations

import contextlib

from ..network import Network
from ..precision import Precision
from .baselines import _graphed, _torch_step, torch_level_model
from .timing import time_cuda
from .workloads import WORKLOADS, batch_of

LR = 1e-3
GIVE_UP = 10  # an executor whose first timed step is this many times the best so far is not timed further


def offering(precision: Precision) -> list[str]:
    """The executors that offer `precision`, by name."""
    from ..engines.cuda.executors import EXECUTORS

    return [name for name, cls in EXECUTORS.items() if precision in cls.precisions]


def torch_setting(precision: Precision):
    """A context in which PyTorch computes its matmuls as `precision` asks (module text)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = precision is Precision.TF32
    torch.backends.cudnn.allow_tf32 = precision is Precision.TF32
    if precision is Precision.BF16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def genlab_side(net: Network, x, y, precision: Precision, repeats: int, executors) -> tuple[dict, dict, dict]:
    """(ms by implementation, first loss by implementation, auto's choice) of genlab's engines."""
    from ..engines.cuda import CudaEngine
    from ..optim import Adam

    times, losses, auto = {}, {}, {}
    for name in [*executors, "auto"]:
        engine = CudaEngine(net, Adam(lr=LR), executor=name, precision=precision)
        losses[f"genlab_{name}"] = engine.step(x, y)[0]
        engine.load(net)
        step = engine.step
        first = time_cuda(lambda: step(x, y), 1, warmup=1)
        if times and first > GIVE_UP * min(times.values()):  # the cluster executor on W4: 7.7 s a step
            times[f"genlab_{name}_gave_up_after_one_step"] = first
        else:
            times[f"genlab_{name}"] = time_cuda(lambda: step(x, y), repeats)
        if name == "auto":
            auto = {"executor": engine.executor.name, **{k: v for k, v in engine.chooser.last.items() if k != "shape"}}
        engine = step = None  # its device memory, before the next engine is made
    return times, losses, auto


def torch_side(net: Network, x, y, precision: Precision, repeats: int) -> tuple[float, float]:
    """(ms, first loss) of PyTorch's level-batched step in one CUDA graph, in `precision`."""
    import torch

    device = torch.device("cuda")
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    params, forward = torch_level_model(net, device)

    def model(inputs):
        with torch_setting(precision):
            return forward(inputs).float()

    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(xt), yt).item()
    ms = time_cuda(_graphed(_torch_step(params, model, xt, yt, LR, capturable=True)), repeats)
    torch_setting(Precision.FP32)
    return ms, loss


def run_precisions(workloads=("W1", "W2", "W3", "W4"), repeats: int = 50, progress=print, precisions=tuple(Precision)) -> dict:
    from ..engines.serial import SerialEngine
    from ..optim import Adam

    out = {"precisions": [p.value for p in precisions], "workloads": {}}
    for name in workloads:
        description, build, batch = WORKLOADS[name]
        net = build()
        x, y = batch_of(net, batch)
        n = repeats if net.n_params < 10**7 else max(10, repeats // 5)  # W4's steps take ~20 ms: fewer
        exact = SerialEngine(net, Adam(lr=LR), dtype="float64")
        exact.forward(x)
        exact_loss = exact.backward(y)
        rows = {}
        for precision in precisions:
            reference = SerialEngine(net, Adam(lr=LR), dtype="float64", precision=precision)
            reference.forward(x)
            reference_loss = reference.backward(y)
            times, losses, auto = genlab_side(net, x, y, precision, n, offering(precision))
            times["torch_level_graph"], losses["torch_level_graph"] = torch_side(net, x, y, precision, n)
            mine = {k: v for k, v in times.items() if k.startswith("genlab_") and k != "genlab_auto"
                    and not k.endswith("gave_up_after_one_step")}
            best = min(mine, key=mine.get)
            rows[precision.value] = {
                "ms_per_step": times, "genlab_best": best, "auto": auto,
                "torch_over_best": times["torch_level_graph"] / times[best],
                "auto_over_best": times["genlab_auto"] / times[best],
                "loss_error_vs_exact": {k: relative(v, exact_loss) for k, v in losses.items()},
                "genlab_loss_error_vs_serial_same_precision": {
                    k: relative(v, reference_loss) for k, v in losses.items() if k.startswith("genlab_")},
            }
            progress(f"{name} {precision.value}: best {best} {times[best]:.3f} ms, torch "
                     f"{times['torch_level_graph']:.3f} ms ({rows[precision.value]['torch_over_best']:.2f}x)")
        out["workloads"][name] = {"description": description, "batch": batch, "repeats": n, "by_precision": rows}
    return out
