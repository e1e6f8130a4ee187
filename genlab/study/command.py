"""`genlab study`: the command line of the growth study (genlab.study)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add(commands, defaults, backends) -> None:
    """The study's subcommand and its options, on the parser of `genlab`."""
    from ..cli_args import count as _count
    from ..cli_args import names as _names

    study = commands.add_parser(
        "study", help="does growth help? grown networks against fixed ones of their size and random growth",
        formatter_class=defaults,
        description="The growth study: on each dataset, a network grown from one group against its final topology "
                    "trained fixed, one hidden layer of the same size, random growth at the same steps and PyTorch's "
                    "MLP / CNN / GRU of the same size; mean and std over seeds. Writes study.json and two pictures.")
    study.add_argument("--datasets", type=_names, default=None,
                       help="comma-separated, from the study's tasks (default: all of them; with --quick, the quick ones)")
    study.add_argument("--quick", action="store_true", help="the small subset that runs on a CPU in under a minute")
    study.add_argument("--seeds", type=_count(1), default=3, help="seeds per arm (0, 1, ...)")
    study.add_argument("--arms", type=_names, default=None, help="comma-separated arms (default: all; grown is needed)")
    study.add_argument("--backend", default="auto", choices=backends, help="the engine of the genlab arms")
    study.add_argument("--jobs", type=_count(1), default=1,
                       help="processes for the runs on the CPU (GPU runs go one at a time beside them)")
    study.add_argument("--out", default="genlab-study", help="the folder for study.json and the pictures")
    study.add_argument("--merge", nargs="+", metavar="STUDY_JSON", default=None,
                       help="run nothing: merge study.json files of parts run apart (a later file's datasets "
                            "replace an earlier one's) into --out, with the pictures")
    study.add_argument("--json", action="store_true", help="print the summary as JSON at the end")
    study.add_argument("--quiet", action="store_true", help="no progress bar")
    study.set_defaults(run=run)


def run(args):
    """The study the options ask for, checked (errors: exit status 2); returns the work, which
    writes study.json and the pictures to --out."""
    from .. import study
    from ..backends import resolve
    from ..cli_args import Usage as _Usage

    if args.merge:
        merged = study.merge(*(_read(Path(p)) for p in args.merge))
        return lambda: _write(merged, Path(args.out), args.json)
    tasks = study.QUICK if args.quick else study.TASKS
    names = args.datasets or list(tasks)
    unknown = [n for n in names if n not in tasks]
    if unknown:
        raise _Usage(f"--datasets: {', '.join(unknown)} is not among the study's "
                     f"{'quick ' if args.quick else ''}tasks ({', '.join(tasks)})")
    arms = args.arms or list(study.ARMS)
    if set(arms) - set(study.ARMS) or "grown" not in arms:
        raise _Usage(f"--arms: choose from {', '.join(study.ARMS)}, grown among them; got {','.join(arms)}")
    resolve(args.backend)  # cuda asked for where it cannot run: an error before any work
    return lambda: _study(args, {n: tasks[n] for n in names}, arms)


def _study(args, tasks: dict, arms: list) -> dict:
    from .. import study

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "runs.jsonl", "w") as log:  # each run as it finishes
        results = study.run(tasks, seeds=tuple(range(args.seeds)), arms=arms,
                            backend=args.backend, jobs=args.jobs, progress=not args.quiet,
                            on_run=lambda r: (log.write(json.dumps(r) + "\n"), log.flush()))
    results["command"] = "genlab " + " ".join(sys.argv[1:])
    return _write(results, out, args.json)


def _read(path: Path) -> dict:
    from ..cli_args import Usage as _Usage

    try:
        study = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise _Usage(f"--merge: cannot read {path} ({e})") from None
    if not isinstance(study, dict) or not {"tasks", "summary", "runs"} <= set(study):
        raise _Usage(f"--merge: {path} is not a study.json (it lacks tasks, summary or runs)")
    return study


def _write(results: dict, out: Path, as_json: bool) -> dict:
    """study.json and the two pictures into `out`; what the command prints."""
    from .. import study

    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(results, indent=1) + "\n")
    study.accuracy_vs_parameters(results).savefig(out / "accuracy_vs_parameters.png", dpi=100)
    study.learning_curves(results).savefig(out / "learning_curves.png", dpi=100)
    if as_json:
        return {"summary": results["summary"], "written": str(out)}
    table = {f"{t} {a}": f"{s['accuracy_mean']:.4f} +- {s['accuracy_std']:.4f} ({s['parameters_mean']:.0f} parameters)"
             for t, arms in results["summary"].items() for a, s in arms.items()}
    return {**table, "written": str(out)}
