"""The speed targets genlab aims at, and what bounds a workload where one is missed."""

from __future__ import annotations

from .sweep import TORCH
from .workloads import AUTO, GENLAB


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
        parts = w["W1"].get("breakdown", {})
        for side, wanted in (("forward", 3.0), ("backward", 5.0)):
            value = parts.get(f"{side}_per_level_us")
            if value is not None:
                add(f"W1: a {side} level <= {wanted:g} us ({parts['executor']})", value, value <= wanted, wanted,
                    value / wanted, limit("W1"))
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
    _auto(w, add)
    _other_shapes(w, add)
    _precision(w.get("precision"), add)
    _small(w.get("small"), add)
    for label in (*GENLAB, AUTO):
        run = w.get("W5", {}).get(label)
        if run:
            step_ms = run["mean_step_ms"]
            phases = run.get("growth_event_phases_ms", {})
            parts = ", ".join(f"{k} {v:.2f}" for k, v in phases.items() if k not in ("total", "new_groups"))
            why = {"bound": "host work of a growth event",
                   "why": f"the median event of a second run ({phases['new_groups']} new groups, {phases['total']:.2f} ms "
                          f"with the engine synchronised after each part), in ms: {parts}; check contains choose "
                          "and duplicate, apply contains index, build, group_state, replay and flush",
                   "breakdown": phases} if phases else None
            # the event with what the step after it pays beyond a step (its graph captured again)
            event = run.get("growth_event_with_next_step_ms") or run["growth_event_ms"]
            add(f"W5 ({label}): a growth event, with the next step's extra, costs less than one training step "
                "(ms: event, mean step)", [event, step_ms], event < step_ms, step_ms, event / step_ms, why)
    if "import" in details:
        times = details["import"]
        cold, warm, base = times["cold_s"], times["warm_s"], times.get("numpy_pycuda_context_s")
        why = {"bound": "numpy, PyCUDA and the CUDA context",
               "why": f"importing numpy and PyCUDA and creating the CUDA context alone take {base:.2f} s here, "
                      f"genlab's own imports and kernel loads {warm - base:.2f} s"} if base is not None else None
        add("import and first CUDA use <= 2 s cold, <= 0.6 s warm", [cold, warm], cold <= 2 and warm <= 0.6,
            [2, 0.6], max(cold / 2, warm / 0.6), why)
    return out


def _auto(w: dict, add) -> None:
    """executor="auto" within 10% of the best executor: on each workload, and on the sweep's
    worst shape."""
    for name, result in w.items():
        if "auto_over_best" in result:
            ratio = result["auto_over_best"]
            chose = result.get("auto", {})
            why = {"bound": "the choice", "why": f"auto chose {chose.get('executor')} ({chose.get('how')}), the best was "
                                                  f"{result['genlab_best']}; the trial's times (ms): {chose.get('ms')}"}
            add(f"{name}: auto within 10% of the best executor", ratio, ratio <= 1.1, 1.1, ratio / 1.1, why)
    sweep = {k: v for k, v in w.get("sweep", {}).items() if "auto_over_best" in v}
    if sweep:
        worst = max(sweep, key=lambda k: sweep[k]["auto_over_best"])
        ratio, entry = sweep[worst]["auto_over_best"], sweep[worst]
        measured = max(v.get("auto_measured_over_best", v["auto_over_best"]) for v in sweep.values())
        why = {"bound": "the choice", "why": f"worst shape {worst}: auto chose {entry['auto_chose']} "
                                              f"({entry['auto']['how']}), the best was {entry['best']}; "
                                              f"ms {entry['ms_per_step']}"}
        add(f"sweep: auto's choice within 10% of the best executor on every shape ({len(sweep)} shapes; auto's "
            f"own engine timed apart: at most {measured:.3f}x)", ratio, ratio <= 1.1, 1.1, ratio / 1.1, why)


def _other_shapes(w: dict, add) -> None:
    """genlab's best executor >= 3x PyTorch's level graph on every shape of the sweep (the shapes
    beyond W1-W4: deep, odd, wide and shallow, tiny), judged by the worst."""
    sweep = {k: v for k, v in w.get("sweep", {}).items() if "torch_over_best" in v}
    if sweep:
        worst = min(sweep, key=lambda k: sweep[k]["torch_over_best"])
        ratio, entry = sweep[worst]["torch_over_best"], sweep[worst]
        why = {"bound": "the worst shape", "why": f"{worst}: {entry['best']} {entry['ms_per_step'][entry['best']]:.3f} ms "
                                                   f"against PyTorch's level graph {entry['ms_per_step'][TORCH]:.3f} "
                                                   f"ms; {sum(v['torch_over_best'] >= 3 for v in sweep.values())} of "
                                                   f"{len(sweep)} shapes at 3x or more"}
        add(f"sweep: genlab >= 3x the PyTorch level-batched CUDA graph on every shape ({len(sweep)} shapes)", ratio,
            ratio >= 3, 3, 3 / ratio, why)


def _precision(result: dict | None, add) -> None:
    """executor="auto" within 10% of the best executor that offers the precision, on each workload
    of `genlab bench --workload precision`."""
    for name, r in (result or {}).get("workloads", {}).items():
        for precision, row in r["by_precision"].items():
            chose = row["auto"]
            why = {"bound": "the choice", "why": f"auto chose {chose.get('executor')} ({chose.get('how')}), the best "
                                                  f"was {row['genlab_best']}; the trial's times (ms): {chose.get('ms')}"}
            add(f"{name} in {precision}: auto within 10% of the best executor that offers it", row["auto_over_best"],
                row["auto_over_best"] <= 1.1, 1.1, row["auto_over_best"] / 1.1, why)


def _small(result: dict | None, add) -> None:
    """The classroom network at <= 50 us a Trainer step; what bounds it: the device's part of
    the best executor's step and the host's."""
    if not result:
        return
    runs, best = result["executors"], result["best"]
    run = runs[best]
    fastest_device = min(runs, key=lambda k: runs[k]["device_us"])
    why = {"bound": "the device's step" if run["device_us"] >= 0.5 * run["trainer_step_us"] else "host work",
           "why": f"{best}: Trainer.step {run['trainer_step_us']:.0f} us, the engine's step {run['engine_step_us']:.0f} "
                  f"us, its graph alone on the device {run['device_us']:.0f} us (the least device time: "
                  f"{fastest_device}, {runs[fastest_device]['device_us']:.0f} us); host work and the round trip "
                  f"{run['trainer_step_us'] - run['device_us']:.0f} us",
           "breakdown": runs}
    add(f"small: a {result['description']} trains at <= {result['target_us']:g} us a step",
        result["trainer_step_us"], result["trainer_step_us"] <= result["target_us"], result["target_us"],
        result["trainer_step_us"] / result["target_us"], why)


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
