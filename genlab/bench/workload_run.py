"""One workload: every implementation checked to agree on the loss, then timed; where the best
executor's step goes; the floors."""

from __future__ import annotations

import numpy as np

from ..network import OUTPUT
from .baselines import _compile_in_child, _graphed, _torch_step, torch_group_model, torch_level_model
from .timing import time_cuda, time_graph, time_host
from .workloads import AUTO, GENLAB, IMPLEMENTATIONS, WORKLOADS, batch_of, step_cost


def run_workload(name: str, repeats: int = 100, implementations=IMPLEMENTATIONS, serial_repeats: int = 3,
                 eager_repeats: int = 5, compile_timeout: int = 300) -> dict:
    """Losses checked equal, then the median ms per training step of each implementation."""
    import torch

    from ..engines.cuda import CudaEngine
    from ..engines.serial import SerialEngine
    from ..optim import Adam

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
    for label in [i for i in (*GENLAB, AUTO) if i in implementations]:  # each checked on its own step
        engines[label] = CudaEngine(net, Adam(lr=lr), executor=label[len("genlab_"):])  # PyTorch's context
        losses[label] = engines[label].step(x, y)[0]  # auto: its choice first (a trial, or the cache)
        engines[label].load(net)
    if AUTO in engines:
        result["auto"] = dict(engines[AUTO].chooser.last)  # a copy: the chooser's own record stays its own
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
    if AUTO in engines:  # the choice again at the first timed step (a new layout): from the cache
        result["auto"]["timed_with"] = engines[AUTO].executor.name
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
        if AUTO in times:
            result["auto_over_best"] = times[AUTO] / times[best]
    return result


def step_breakdown(engine, x: np.ndarray, y: np.ndarray, repeats: int = 50) -> dict:
    """Where one training step of a CUDA engine goes, in microseconds, with the number of
    topological levels it runs through (depth: forward levels; the backward pass has one fewer).

    An executor that traces its items (dataflow_rows): its item timeline (the shortest of five):
    the forward pass from the first item taken to the last forward item done, the backward pass
    from the loss item to the last gradient item, and the median work of a forward and a backward
    item (inputs complete to done). The level executors: the forward, backward and update passes,
    each captured alone in a CUDA graph and timed over `repeats` replays."""
    from ..engines.cuda.executors import Level, passes

    depth = len(engine.layout.forward_levels)
    out = {"executor": engine.executor.name, "levels": depth}
    if engine.executor.traces:
        traces = [engine.trace_step(x, y) for _ in range(5)]
        t = min(traces, key=lambda tr: tr["done"].max())
        fwd, bwd = t["kind"] == "forward", np.isin(t["kind"], ("loss", "backward", "weight", "input_weight"))
        loss_taken = t["taken"][t["kind"] == "loss"].min()
        out.update(step_us=float(t["done"].max() - t["taken"].min()),
                   forward_us=float(t["done"][fwd].max() - t["taken"].min()),
                   backward_us=float(t["done"][bwd].max() - loss_taken),
                   forward_item_work_us=float(np.median((t["done"] - t["ready"])[fwd])),
                   backward_item_work_us=float(np.median((t["done"] - t["ready"])[t["kind"] == "backward"])))
    elif isinstance(engine.executor, Level):
        engine.step(x, y)
        batch = len(x)
        parts = {"forward_us": lambda: passes.forward(engine, batch),
                 "backward_us": lambda: passes.backward(engine, batch), "update_us": lambda: passes.update(engine)}
        for name, enqueue in parts.items():
            out[name] = time_graph(engine, enqueue, repeats)
        out["step_us"] = out["forward_us"] + out["backward_us"] + out["update_us"]
    else:
        return out
    out["forward_per_level_us"] = out["forward_us"] / depth
    out["backward_per_level_us"] = out["backward_us"] / max(depth - 1, 1)
    return out


def add_floors(result: dict, ceiling: dict) -> None:
    compute = result["flops"] / ceiling["fp32_matmul_flops_per_s"] * 1e3
    memory = result["min_bytes"] / ceiling["copy_bytes_per_s"] * 1e3
    result["floor_ms"] = {"compute": compute, "memory": memory, "floor": max(compute, memory)}
    for label in GENLAB:
        if label in result["ms_per_step"]:
            result.setdefault("over_floor", {})[label] = result["ms_per_step"][label] / max(compute, memory)
