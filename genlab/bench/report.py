"""What a run writes: summary.json, details.json and chart.png under results/<device>/."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from .targets import targets
from .workloads import IMPLEMENTATIONS, WORKLOADS


OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
HATCHES = ("//", "\\\\", "xx", "..", "oo", "--")


def chart(summary: dict, path: Path) -> None:
    """Bars of ms a step per workload: genlab's implementations in Okabe-Ito's colours (told apart
    without colour vision), the others grey, each with its own hatching."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [w for w in summary["workloads"] if w in WORKLOADS]
    if not names:
        return
    impls = [i for i in IMPLEMENTATIONS if any(i in summary["workloads"][w] for w in names)]
    ours = [i for i in impls if i.startswith("genlab_")]
    fig, ax = plt.subplots(figsize=(12, 4.8))
    width = 0.8 / max(len(impls), 1)
    for k, impl in enumerate(impls):
        values = [summary["workloads"][w].get(impl, np.nan) for w in names]
        if impl in ours:
            style = dict(color=OKABE_ITO[ours.index(impl) % len(OKABE_ITO)], edgecolor="white", linewidth=0.3)
        else:
            other = impls.index(impl) - len(ours)
            style = dict(color="#bbbbbb" if other % 2 else "#888888", edgecolor="black", linewidth=0.3,
                         hatch=HATCHES[other % len(HATCHES)])
        ax.bar(np.arange(len(names)) + k * width, values, width, label=impl, **style)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, fontsize=13)
    ax.set_yscale("log")
    ax.set_ylabel("ms per training step (log scale)", fontsize=13)
    ax.tick_params(axis="y", labelsize=12)
    ax.set_title(f"one training step, {summary['device']}", fontsize=14)
    ax.legend(fontsize=10, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def sweep_figure(summary: dict, target: float = 3.0):
    """The sweep's shapes as bars of PyTorch's level graph over genlab's best executor (higher: genlab
    faster), one colour and hatching per executor that was best, the target and parity as lines; a
    matplotlib Figure, or None where the sweep ran without PyTorch."""
    import matplotlib.pyplot as plt

    sweep = {k: v for k, v in summary["workloads"].get("sweep", {}).items() if "torch_over_best" in v}
    if not sweep:
        return None
    shapes = sorted(sweep, key=lambda k: sweep[k]["torch_over_best"])
    bests = sorted({v["best"] for v in sweep.values()})
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(shapes) + 1.6))
    for i, best in enumerate(bests):
        rows = [n for n, k in enumerate(shapes) if sweep[k]["best"] == best]
        ax.barh(rows, [sweep[shapes[n]]["torch_over_best"] for n in rows], color=OKABE_ITO[i % len(OKABE_ITO)],
                hatch=HATCHES[i % len(HATCHES)], edgecolor="black", linewidth=0.3,
                label=best.removeprefix("genlab_"))
    ax.axvline(1.0, color="black", linewidth=1.0, linestyle=":", label="as fast as PyTorch")
    ax.axvline(target, color="#D55E00", linewidth=1.5, linestyle="--", label=f"target {target:g}x")
    ax.set_yticks(range(len(shapes)), shapes, fontsize=12)
    ax.set_xlabel("PyTorch level graph ms / genlab ms (higher: genlab faster)", fontsize=13)
    ax.tick_params(axis="x", labelsize=12)
    ax.set_title(f"genlab's best executor against PyTorch, {summary['device']}", fontsize=14)
    ax.legend(fontsize=11, title="best executor", loc="lower right", frameon=True)
    fig.tight_layout()
    return fig


def sweep_chart(summary: dict, path: Path) -> None:
    """sweep_figure saved as a PNG (nothing written where the sweep ran without PyTorch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = sweep_figure(summary)
    if fig is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)


def commit() -> str:
    """The code's commit: GENLAB_COMMIT where the tree was copied without its history (the GPU
    machines), else git's HEAD of genlab's checkout (with "+changes" when the tree differs from
    it), else "unknown"."""
    given = os.environ.get("GENLAB_COMMIT")
    if given:
        return given
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def environment() -> dict:
    import pycuda
    import torch

    from .. import __version__
    from ..engines.cuda import kernels

    device = kernels().device
    return {"device": device.name(), "compute_capability": "%d.%d" % device.compute_capability(),
            "genlab": __version__, "torch": torch.__version__, "pycuda": pycuda.VERSION_TEXT,
            "numpy": np.__version__, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
            "commit": commit()}


def write(details: dict, folder: Path) -> None:
    """summary.json (workload -> implementation -> ms per step), details.json (everything), chart.png
    and, for a sweep timed beside PyTorch, sweep.png."""
    summary = {"device": details["environment"]["device"], "workloads": {}}
    for name, r in details["workloads"].items():
        if name == "W5":
            summary["workloads"][name] = {k: {"total_s": v["total_s"], "growth_event_ms": v["growth_event_ms"],
                                              "mean_step_ms": v["mean_step_ms"]}
                                          for k, v in r.items() if isinstance(v, dict)}
        elif name == "small":
            summary["workloads"][name] = {k: v["trainer_step_us"] for k, v in r["executors"].items()}
        elif name == "precision":
            summary["workloads"][name] = {
                w: {p: {"best": v["genlab_best"], "best_ms": v["ms_per_step"][v["genlab_best"]],
                        "torch_ms": v["ms_per_step"]["torch_level_graph"], "torch_over_best": v["torch_over_best"]}
                    for p, v in r_w["by_precision"].items()} for w, r_w in r["workloads"].items()}
        elif name == "sweep":
            summary["workloads"][name] = {shape: {"best": v["best"], "auto_chose": v["auto_chose"],
                                                  "auto_over_best": v["auto_over_best"],
                                                  **({"torch_over_best": v["torch_over_best"]}
                                                     if "torch_over_best" in v else {})}
                                          for shape, v in r.items() if "best" in v}
        else:
            summary["workloads"][name] = {**r["ms_per_step"], **({"compile_s": r["compile_s"]} if "compile_s" in r else {})}
    details["targets"] = targets(details)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "details.json").write_text(json.dumps(details, indent=2) + "\n")
    chart(summary, folder / "chart.png")
    sweep_chart(summary, folder / "sweep.png")
