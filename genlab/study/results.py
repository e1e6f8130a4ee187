"""The growth study's results: one JSON-ready dict (what ran where, every run, mean +- std per
task and arm), and the merge of studies run in parts."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from .. import __version__
from .arms import Run
from .tasks import ANCHORS, ARM_TEXT, ARMS, Task


def results(tasks: dict[str, Task], seeds, runs: list[Run], backend: str, jobs: int, seconds: float) -> dict:
    """The study as JSON: what ran where, every run, and mean +- std per task and arm."""
    summary = {}
    for name in tasks:
        summary[name] = {}
        for arm in ARMS:
            mine = [r for r in runs if r.task == name and r.arm == arm]
            if mine:
                acc, params = np.array([r.accuracy for r in mine]), np.array([r.parameters for r in mine])
                summary[name][arm] = {
                    "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                    "parameters_mean": float(params.mean()), "seconds_mean": float(np.mean([r.seconds for r in mine])),
                    "groups_mean": float(np.mean([r.groups for r in mine])) if mine[0].groups else None,
                    "runs": len(mine), "backend": mine[0].backend}
    order = {(t, a, s): i for i, (t, a, s) in enumerate((t, a, s) for t in tasks for a in ARMS for s in seeds)}
    runs = sorted(runs, key=lambda r: order.get((r.task, r.arm, r.seed), 0))
    return {"genlab": __version__, "commit": _commit(), "date": time.strftime("%Y-%m-%d"), "machine": _machine(),
            "backend": backend, "jobs": jobs, "seconds": round(seconds, 1), "seeds": list(seeds),
            "arms": {a: ARM_TEXT[a] for a in ARMS}, "tasks": {n: t.to_dict() for n, t in tasks.items()},
            "anchors": {n: ANCHORS[n] for n in tasks if n in ANCHORS}, "summary": summary,
            "runs": [r.to_dict() for r in runs]}


def _commit() -> str | None:
    """The checkout's commit ($GENLAB_COMMIT where the copy that runs has no git history of its own)."""
    if os.environ.get("GENLAB_COMMIT"):
        return os.environ["GENLAB_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _machine() -> dict:
    from ..backends import cuda_status

    gpu = None
    if cuda_status()[0]:
        from ..engines.cuda import kernels

        gpu = kernels().device.name()
    return {"gpu": gpu, "cpu": platform.processor() or platform.machine(), "python": platform.python_version()}


PART = ("genlab", "commit", "date", "machine", "backend", "jobs", "seconds", "command")


def merge(*studies: dict) -> dict:
    """One study from parts run apart: a later part's tasks replace an earlier part's; each part's
    provenance (commit, date, machine, command...) is kept under "parts" with the tasks it gave."""
    merged = {k: v for k, v in studies[0].items() if k not in PART}
    merged.update(tasks={}, anchors={}, summary={}, runs=[], parts=[])
    for study in studies:
        names = list(study["tasks"])
        merged["runs"] = [r for r in merged["runs"] if r["task"] not in names] + list(study["runs"])
        for key in ("tasks", "anchors", "summary"):
            merged[key].update(study.get(key, {}))
        for part in merged["parts"]:
            part["tasks"] = [t for t in part["tasks"] if t not in names]
        parts = study.get("parts") or [{**{k: study.get(k) for k in PART}, "tasks": names}]
        merged["parts"] = [p for p in merged["parts"] if p["tasks"]] + parts
    return merged


def compare(study: dict, arm: str = "grown") -> list[dict]:
    """For each task, `arm` against each other arm: the difference of mean test accuracy, of mean
    parameters, and a verdict: "better" / "worse" where the difference exceeds the sum of the two
    standard deviations over seeds, else "within noise"."""
    rows = []
    for task, arms in study["summary"].items():
        mine = arms.get(arm)
        for other, s in arms.items():
            if other == arm or mine is None:
                continue
            diff = mine["accuracy_mean"] - s["accuracy_mean"]
            noise = mine["accuracy_std"] + s["accuracy_std"]
            rows.append({"task": task, "against": other, "accuracy_difference": diff, "noise": noise,
                         "parameters_ratio": mine["parameters_mean"] / s["parameters_mean"],
                         "verdict": "within noise" if abs(diff) <= noise else "better" if diff > 0 else "worse"})
    return rows


def published() -> dict:
    """The committed study (benchmarks/results/NVIDIA_H200/study/study.json, genlab.results_dir())."""
    from .. import results_dir

    return json.loads((results_dir() / "NVIDIA_H200" / "study" / "study.json").read_text())
