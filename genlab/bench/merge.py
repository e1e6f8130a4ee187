"""One report from several `genlab bench` runs of the same code on the same GPU model.

A full run (W1-W5, the classroom network, the sweep, the precisions) can outlast what one
session on a lent GPU may run at once, so it is run in parts, each its own process; this puts
their workloads into one details.json, summary.json and chart.png, with the targets computed
over all of them. The ceilings and import times are the first part's; every part's are kept
under "parts". Parts of different devices or commits, of a commit not known (or of a tree with
changes beside it), or that measured the same workload, are refused.

    python -m genlab.bench.merge [--note TEXT] OUT RUN_FOLDER...   # each RUN_FOLDER holds a details.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import GenlabError
from .report import write


class MergeError(GenlabError, ValueError):
    """Benchmark runs that cannot be reported as one."""


def merge(parts: list[dict], note: str | None = None) -> dict:
    """The details of one report from the details of several runs (in the order given)."""
    if not parts:
        raise MergeError("no runs to merge")
    first = parts[0]["environment"]
    for p in parts:
        code = p["environment"].get("commit")
        if not code or code == "unknown" or code.endswith("+changes"):
            raise MergeError(f"a run of unknown code cannot join a report ({p['command']}: commit {code!r}); "
                             "run every part from one commit (GENLAB_COMMIT where the tree has no history)")
    for p in parts[1:]:
        env = p["environment"]
        for key in ("device", "commit"):
            if env.get(key) != first.get(key):
                raise MergeError(f"runs of different {key}s cannot be one report: {first.get(key)!r} and "
                                 f"{env.get(key)!r}")
    workloads: dict = {}
    for p in parts:
        for name, result in p["workloads"].items():
            if name in workloads:
                raise MergeError(f"workload {name} was measured by more than one run")
            workloads[name] = result
    dates = sorted({p["environment"].get("date") for p in parts} - {None})
    details = {"environment": {**first, "date": " to ".join(dict.fromkeys([dates[0], dates[-1]])) if dates else None},
               "command": " ; ".join(p["command"] for p in parts), "ceilings": parts[0]["ceilings"],
               "import": parts[0]["import"], "workloads": workloads,
               "parts": [{"command": p["command"], "date": p["environment"].get("date"), "ceilings": p["ceilings"],
                          "import": p["import"], "workloads": list(p["workloads"])} for p in parts]}
    if note:
        details["runs"] = [note]
    return details


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genlab.bench.merge", description=__doc__.splitlines()[0])
    parser.add_argument("--note", help="what the reader should know about these runs (details.json's runs)")
    parser.add_argument("out", type=Path, help="folder of the merged report")
    parser.add_argument("runs", type=Path, nargs="+", help="folders holding each run's details.json")
    args = parser.parse_args(argv)
    out, folders = args.out, args.runs
    try:
        details = merge([json.loads((f / "details.json").read_text()) for f in folders], args.note)
    except (OSError, ValueError, KeyError) as e:
        print(f"genlab.bench.merge: error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    write(details, out)
    print(f"wrote {out}/summary.json, details.json, chart.png from {len(folders)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
