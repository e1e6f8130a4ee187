"""The `genlab` command: `genlab train ...`, `genlab --version`."""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import __version__
from .checks import FLOAT_DTYPES
from .cli_args import Defaults, Parser, Usage, count, rate, sizes
from .datasets import SEED_MAX
from .distributed.modes import MODES
from .engines.cuda.executors import NAMES as EXECUTOR_NAMES
from .operations import Change
from .optim import OPTIMIZERS
from .precision import PRECISIONS
from .starts import BUILDERS, STARTS, Start



def _common(command, names, backends) -> None:
    """The options train and demo share: the data, the engine, the epochs, the seed."""
    command.add_argument("--dataset", default=None, choices=names, help="the data, from genlab.datasets (default: digits)")
    command.add_argument("--backend", default="auto", choices=backends,
                         help="the engine: auto takes the GPU where it can run")
    command.add_argument("--epochs", type=count(1, 10**6), default=None,
                         help="passes over the training set (default: about 2000 steps' worth, by dataset)")
    command.add_argument("--seed", type=count(0, SEED_MAX), default=None,
                         help="the seed of the weights, the split and the batches (default: 0)")
    command.add_argument("--kind", default=None, choices=list(BUILDERS),
                         help="the kind of the starting groups (default: conv for images, recurrent dense groups "
                              "for sequences, dense otherwise; attention for sequences, dense for images too)")


def build_parser() -> argparse.ArgumentParser:
    from .backends import BACKENDS
    from .datasets import NAMES

    parser = Parser(prog="genlab", description="Train and grow generalized neural networks.")
    parser.add_argument("--version", action="version", version=f"genlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    defaults = Defaults
    train = commands.add_parser(
        "train", help="train a network on a dataset and report its accuracy", formatter_class=defaults,
        description="Train a network on one of genlab's datasets (no download) and print its accuracy, size and "
                    "time: a chain of groups (--start mlp), or one group of 8 that grows (--start single --grow).")
    _common(train, NAMES, BACKENDS)
    train.add_argument("--hidden", type=sizes, default=None,
                       help="widths (conv: channels) of the hidden groups of the starting chain (default by kind: "
                            "dense 64,32, conv 8,16, recurrent 64, attention 32; with --start single, 8 or 16)")
    train.add_argument("--start", "--from", dest="start", choices=list(STARTS), default=None,
                       help="mlp (default): a chain of --hidden groups; single: one hidden group of the kind "
                            "(--from is the same option, for torchrun, which takes --start for its own)")
    train.add_argument("--grow", action="store_true", help="grow the network with the default GrowthPolicy: the group with the highest gradient "
                            "spread every 50 steps, up to --max-groups")
    train.add_argument("--max-groups", type=count(3, 100_000), default=None, help="growth budget (default 32; iris 16)")
    train.add_argument("--optimizer", default=None, choices=list(OPTIMIZERS), help="the optimizer (default: adam)")
    train.add_argument("--lr", type=rate, default=None, help="learning rate (adam 1e-3, sgd 0.1)")
    train.add_argument("--batch-size", type=count(1, 2**24), default=None, help="rows per training step (default: 32)")
    train.add_argument("--dtype", default=None, choices=list(FLOAT_DTYPES),
                       help="the float type of the computation (default: float32; float64 runs on the serial engine)")
    train.add_argument("--executor", default=None, choices=list(EXECUTOR_NAMES),
                       help="the CUDA engine's schedule of a step (default: auto, the fastest for the network's shape "
                            "on this GPU; see README, On a GPU)")
    train.add_argument("--precision", default=None, choices=list(PRECISIONS),
                       help="the dense products' arithmetic (default: fp32; tf32, bf16 and 3xtf32 run on tensor cores "
                            "on a GPU, and the serial engine rounds the same operands; see README, Precision)")
    train.add_argument("--save", metavar="PATH",
                       help="write a checkpoint to exactly PATH (Network.load reads its network; --resume continues it)")
    train.add_argument("--resume", metavar="PATH",
                       help="continue the run a checkpoint (--save, Trainer.save) holds, for --epochs more epochs")
    train.add_argument("--distributed", choices=list(MODES), default=None,
                       help="train over the processes torchrun starts: 'data' gives each a slice of every batch, "
                            "'partitioned' spreads the groups over them (see README, More than one GPU)")
    train.add_argument("--hogwild", type=count(1, 64), default=None, metavar="K",
                       help="fit with K lock-free workers on shared parameters (genlab.Hogwild; see README, "
                            "Training without waiting)")
    train.add_argument("--decouple", choices=["dni", "cdni"], default=None,
                       help="synthetic gradients (genlab.DNI) after every hidden group of the starting network, or "
                            "at the partition's cut with --distributed partitioned; cdni: the modules read the label")
    train.add_argument("--pipelined", action="store_true",
                       help="with --decouple in one process: each part on its own batch, the later parts on earlier "
                            "batches (DNI(pipelined=True))")
    train.add_argument("--json", action="store_true", help="print one JSON object with the results")
    train.add_argument("--quiet", action="store_true", help="print the results only: no progress bar, no notes")
    train.set_defaults(run=run_train)

    demo = commands.add_parser(
        "demo", help="grow a network from one group and write its pictures and a report", formatter_class=defaults,
        description="Grow a network from one group of 8 on a dataset, compare it with a traditional one-layer "
                    "network of as many parameters, and write the DAG, the heatmap, the curves and report.json.")
    _common(demo, NAMES, BACKENDS)
    demo.add_argument("--out", default="genlab-demo", help="the folder for the pictures and report.json")
    demo.add_argument("--json", action="store_true", help="print report.json's contents at the end")
    demo.add_argument("--quiet", action="store_true", help="no progress bar or growth lines")
    demo.set_defaults(run=run_demo)

    from .study.command import add as add_study

    add_study(commands, defaults, BACKENDS)

    bench = commands.add_parser("bench", add_help=False, help="time training steps on the GPU against PyTorch "
                                                                "(genlab bench --help)")
    bench.set_defaults(run=None)
    return parser


# what a checkpoint fixes: these options cannot change on --resume (--lr and --backend can)
FIXED_BY_CHECKPOINT = ("hidden", "kind", "start", "grow", "max_groups", "optimizer", "batch_size", "dtype",
                       "precision")


def _resume(args, world):
    """The trainer, dataset and seed of --resume's checkpoint; bad options exit with status 2."""
    from .errors import FileFormatError
    from .trainer import Trainer

    fixed = [f"--{name.replace('_', '-')}" for name in FIXED_BY_CHECKPOINT if getattr(args, name) not in (None, False)]
    if fixed:
        raise Usage(f"--resume continues the saved run as it was built; {', '.join(fixed)} cannot change it")
    try:
        trainer = Trainer.load(args.resume, backend=args.backend, executor=args.executor,
                               distributed=args.distributed, world=world)
    except (FileFormatError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise Usage(f"--resume {args.resume}: {e}") from None
    saved = trainer.metadata or {}
    for name in ("dataset", "seed"):
        given = getattr(args, name)
        if given is not None and saved.get(name) is not None and given != saved[name]:
            raise Usage(f"--{name} {given} differs from the checkpoint's ({saved[name]})")
    if saved.get("dataset") is None and args.dataset is None:
        raise Usage(f"{args.resume} does not say its dataset: give --dataset")
    if args.lr is not None:
        trainer.lr = args.lr
    return trainer, args.dataset or saved["dataset"], saved.get("seed", args.seed or 0)


def _decouple(args, net):
    """The genlab.DNI of --decouple, or None."""
    if args.decouple is None:
        if args.pipelined:
            raise Usage("--pipelined pipelines the parts of --decouple: give --decouple dni or cdni too")
        return None
    from .asynchronous import DNI

    cuts = None if args.distributed == "partitioned" else net.hidden_groups
    return DNI(cuts, conditioned=args.decouple == "cdni", pipelined=args.pipelined)


def _world(args):
    """The processes of a --distributed run (torchrun's environment), or None."""
    if args.distributed is None:
        return None
    from .distributed import World

    return World.start()


def run_train(args):
    """Everything before the first step (a GenlabError here is a usage error: exit status 2);
    returns the work, which trains and reports (a GenlabError there: exit status 1)."""
    from . import datasets, starts
    from .trainer import Trainer

    world = _world(args)
    if args.resume:
        if args.decouple or args.pipelined:
            raise Usage("--decouple and --pipelined start a run: --resume continues the checkpoint's own (its synthetic-gradient "
                        "modules included, if it had them)")
        trainer, args.dataset, args.seed = _resume(args, world)
        data = datasets.load(args.dataset, seed=args.seed)
        groups_start = len(trainer.net.groups)
    else:
        args.dataset, args.seed = args.dataset or "digits", args.seed or 0
        data = datasets.load(args.dataset, seed=args.seed)
        kind = starts.kind_for(data, args.kind)
        net = starts.build(data, kind, args.hidden, args.start == Start.SINGLE, args.seed)
        groups_start = len(net.groups)
        policy = None
        if args.grow:
            policy = starts.policy(args.max_groups or datasets.MAX_GROUPS.get(args.dataset, 32))
        trainer = Trainer(net, backend=args.backend, executor=args.executor, optimizer=args.optimizer or "adam",
                          lr=args.lr,
                          batch_size=args.batch_size or 32, seed=args.seed, dtype=args.dtype or "float32",
                          growth=policy, distributed=args.distributed, world=world, decouple=_decouple(args, net),
                          precision=args.precision or "fp32")
    if args.hogwild is not None:
        from .asynchronous import Hogwild, hogwild

        trainer.parallel = hogwild.checked(Hogwild(args.hogwild), args.distributed, args.decouple)
        trainer.parallel.check(trainer.engine)
    args.epochs = args.epochs or datasets.default_epochs(data, trainer.batch_size)
    return lambda: _train(args, trainer, data, world, groups_start)


def _train(args, trainer, data, world, groups_start) -> dict:
    start = time.perf_counter()
    first = world is None or world.rank == 0  # the process that shows progress and prints
    trainer.fit(*data.train, epochs=args.epochs, validation=data.test, progress=not args.quiet and first)
    seconds = time.perf_counter() - start
    train, test = trainer.evaluate(*data.train), trainer.evaluate(*data.test)
    net = trainer.net
    report = {
        "dataset": args.dataset, "backend": trainer.backend, "executor": args.executor, "epochs": args.epochs,
        "seed": args.seed, "optimizer": trainer.optimizer.name, "lr": trainer.lr, "batch_size": trainer.batch_size,
        "dtype": net.dtype.name, "precision": trainer.precision, "groups": len(net.groups), "edges": len(net.edges), "parameters": net.n_params,
        "steps": trainer.step_count, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
        "test_loss": test["loss"], "test_accuracy": test["accuracy"], "seconds": round(seconds, 3),
    }
    if trainer.growth.every:
        kinds = [e["kind"] for e in trainer.history.events]
        report.update(growth_events=len(kinds), **{f"{c}_events": kinds.count(c) for c in Change},
                      groups_start=groups_start, groups_end=len(net.groups))
    if args.resume:
        report["resumed_from"] = str(args.resume)
    if trainer.parallel is not None:
        stale = [s["staleness"] for s in trainer.history.steps if "staleness" in s]
        report.update(hogwild_workers=trainer.parallel.workers, staleness_mean=float(sum(stale) / max(len(stale), 1)))
    decouple = trainer.decouple  # given, or continued from the checkpoint
    if decouple is not None:
        last = trainer.engine.errors[-1] if trainer.engine.errors else {}
        report.update(decouple="cdni" if decouple.conditioned else "dni", pipelined=decouple.pipelined,
                      module_error=float(sum(last.values()) / max(len(last), 1)))
    if world is not None:
        report.update(distributed=args.distributed, processes=world.size, process_group=world.backend)
        if not first:
            report["quiet"] = True  # every process ran the same; the first one prints
        if args.save and not first and args.distributed == "data":
            return report  # the replicas are identical: the first one saves (a partitioned run gathers in every
            # process, and each writes the same bytes atomically)
    if args.save:
        report["saved"] = str(trainer.save(args.save, metadata={"dataset": args.dataset, "seed": args.seed}))
    return report


def run_demo(args):
    """The demo's set-up (its errors: exit status 2); returns the work (exit status 1 on error)."""
    from . import datasets, starts
    from .trainer import Trainer

    args.dataset, args.seed = args.dataset or "digits", args.seed or 0
    data = datasets.load(args.dataset, seed=args.seed)
    args.epochs = args.epochs or datasets.default_epochs(data)
    backend = args.backend
    kind = starts.kind_for(data, args.kind)  # conv for images, recurrent groups for sequences, else dense
    trainer = Trainer(starts.build(data, kind, None, True, args.seed), backend=backend, seed=args.seed,
                      growth=starts.policy(datasets.MAX_GROUPS.get(args.dataset, 32)))
    return lambda: _demo(args, trainer, data, kind, backend)


def _demo(args, trainer, data, kind, backend) -> dict:
    from pathlib import Path

    from tqdm.auto import tqdm

    from . import starts, viz
    from .trainer import Trainer

    n_in = data.n_features if not (data.image or data.sequence) else list(data.sample_shape)
    n_out = data.n_classes
    if not args.quiet:
        trainer.on_growth = lambda events: tqdm.write(
            f"step {events[0].step}: " + ", ".join(f"{e.kind} {e.source}" + (f" -> {e.new}" if e.new else "")
                                                   for e in events) + f" ({len(trainer.net.groups)} groups)",
            file=sys.stderr)
    start = time.perf_counter()
    trainer.fit(*data.train, epochs=args.epochs, validation=data.test, progress=not args.quiet)
    grown_seconds = time.perf_counter() - start
    net = trainer.net
    # the traditional network: one hidden layer of the same kind, of about as many parameters
    hidden, traditional = starts.one_layer_like(data, kind, net.n_params, args.seed)
    mlp = Trainer(traditional, backend=backend, seed=args.seed)
    start = time.perf_counter()
    mlp.fit(*data.train, epochs=args.epochs, progress=False)
    mlp_seconds = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = viz.animate(trainer.history, out) if trainer.history.events else {}  # (nothing grew: no animation)
    files["dag"] = viz.draw(net, stats=trainer.history.grad_std[-1]).save(out / "dag.svg")
    for name, fig in (("heatmap", viz.heatmap(trainer.history, net)), ("curves", viz.curves(trainer.history))):
        files[name] = out / f"{name}.png"
        fig.savefig(files[name], dpi=100)
    report = {
        "dataset": args.dataset, "backend": trainer.backend, "epochs": args.epochs, "seed": args.seed,
        "grown": {"groups_start": len(trainer.history.events[0]["before"]["widths"]) if trainer.history.events else len(net.groups), "groups": len(net.groups), "edges": len(net.edges),
                  "parameters": net.n_params, "growth_events": len(trainer.history.events),
                  "test_accuracy": trainer.evaluate(*data.test)["accuracy"], "seconds": round(grown_seconds, 3)},
        "traditional": {"layers": [n_in, hidden, n_out], "kind": kind, "recurrent": kind == "recurrent",
                        "parameters": mlp.net.n_params,
                        "test_accuracy": mlp.evaluate(*data.test)["accuracy"], "seconds": round(mlp_seconds, 3)},
    }
    report["files"] = sorted(p.name for p in files.values()) + ["report.json"]
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if not args.quiet:
        print(f"grown: {report['grown']['groups']} groups, {report['grown']['parameters']} parameters, test "
              f"accuracy {report['grown']['test_accuracy']:.3f}; traditional {hidden}-wide layer: "
              f"{report['traditional']['parameters']} parameters, {report['traditional']['test_accuracy']:.3f}; "
              f"pictures in {out}/", file=sys.stderr)
    return report


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # its options belong to genlab.bench
        from .bench import main as bench

        return bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "start", None) == Start.SINGLE and args.hidden and len(args.hidden) != 1:
        parser.error("--start single takes one width in --hidden")
    import logging

    logger = logging.getLogger("genlab")
    level = logger.level
    if getattr(args, "quiet", False):
        logger.setLevel(logging.ERROR)  # the results and nothing else, for this command
    try:
        return _command(parser.prog + " " + args.command, args)
    finally:
        logger.setLevel(level)  # (main called from Python leaves the notes as they were)


def _command(command: str, args) -> int:
    """Set-up (its errors: exit status 2), then the work (its errors: exit status 1)."""
    from . import notices
    from .errors import GenlabError

    said: list[str] = []  # the set-up's notes (the engine it fell back to), shown once it has succeeded
    try:  # every option, file and engine checked, the network built: nothing has run yet
        _check_paths(args)
        with notices.redirected(said.append):
            work = args.run(args)
    except (Usage, GenlabError) as e:
        print(f"{command}: error: {e}", file=sys.stderr)  # alone: no note before it
        return 2
    for line in said if not getattr(args, "quiet", False) else ():
        notices.say(line)
    try:
        result = work()
    except GenlabError as e:  # during the work: what it saved before stays as it was
        print(f"{command}: error: {e}", file=sys.stderr)
        return 1
    if result.pop("quiet", False):
        return 0
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0


def _check_paths(args) -> None:
    """Output paths checked before any work: a run is never lost to a folder that is not there."""
    from pathlib import Path

    from .errors import SaveError
    from .files import writable_target

    if getattr(args, "save", None):
        try:
            writable_target(args.save)
        except SaveError as e:
            raise Usage(f"--save: {e}") from None
    if getattr(args, "resume", None) and not Path(args.resume).is_file():
        raise Usage(f"--resume: {args.resume} is not a file")
    out = getattr(args, "out", None)
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise Usage(f"--out: {out} is a file, not a folder")
        parent = next((p for p in [out, *out.parents] if p.exists()), Path("."))
        import os

        if not os.access(parent, os.W_OK | os.X_OK):
            raise Usage(f"--out: cannot create or write {out} ({parent} is not writable)")
