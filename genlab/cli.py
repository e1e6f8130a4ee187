"""The `genlab` command: `genlab train ...`, `genlab --version`."""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import __version__


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 64,32, got {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive widths like 64,32, got {text!r}")
    return sizes


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, where it has one."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _common(command, names, backends) -> None:
    """The options train and demo share: the data, the engine, the epochs, the seed."""
    command.add_argument("--dataset", default="digits", choices=names, help="the data (genlab.datasets)")
    command.add_argument("--backend", default="auto", choices=backends,
                         help="the engine: auto takes the GPU where it can run")
    command.add_argument("--epochs", type=int, default=None,
                         help="passes over the training set (default: about 2000 steps' worth, by dataset)")
    command.add_argument("--seed", type=int, default=0, help="the seed of the weights, the split and the batches")


def build_parser() -> argparse.ArgumentParser:
    from .backends import BACKENDS
    from .datasets import NAMES

    parser = argparse.ArgumentParser(prog="genlab", description="Train and grow generalized neural networks.")
    parser.add_argument("--version", action="version", version=f"genlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    defaults = _Defaults
    train = commands.add_parser(
        "train", help="train a network on a dataset and report its accuracy", formatter_class=defaults,
        description="Train a network on one of genlab's datasets (no download) and print its accuracy, size and "
                    "time: a chain of groups (--start mlp), or one group of 8 that grows (--start single --grow).")
    _common(train, NAMES, BACKENDS)
    train.add_argument("--hidden", type=_sizes, default=None,
                       help="widths of the hidden groups of the starting chain (default 64,32; with "
                            "--start single, 8)")
    train.add_argument("--start", choices=["mlp", "single"], default="mlp",
                       help="mlp: a chain of --hidden groups; single: one hidden group of 8 neurons")
    train.add_argument("--grow", action="store_true", help="grow the network with the default GrowthPolicy")
    train.add_argument("--max-groups", type=int, default=None, help="growth budget (default 32; iris 16)")
    train.add_argument("--optimizer", default="adam", choices=["adam", "sgd"], help="the optimizer")
    train.add_argument("--lr", type=float, default=None, help="learning rate (adam 1e-3, sgd 0.1)")
    train.add_argument("--batch-size", type=int, default=32, help="rows per training step")
    train.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                       help="the float type of the computation (float64: the serial engine)")
    train.add_argument("--save", metavar="PATH", help="write the trained network to PATH (.npz)")
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

    bench = commands.add_parser("bench", add_help=False, help="time training steps on the GPU against PyTorch "
                                                                "(genlab bench --help)")
    bench.set_defaults(run=None)
    return parser


def _backend(args) -> str:
    """The engine --backend names here; with --quiet, without the line saying that "auto" fell
    back to the serial engine (genlab.backends prints it on stderr)."""
    import contextlib
    import io

    from .backends import resolve

    with contextlib.redirect_stderr(io.StringIO()) if args.quiet else contextlib.nullcontext():
        return resolve(args.backend)


def run_train(args) -> dict:
    from . import datasets
    from .network import Network
    from .trainer import Trainer

    from .growth import GrowthPolicy

    data = datasets.load(args.dataset, seed=args.seed)
    args.epochs = args.epochs or datasets.default_epochs(data, args.batch_size)
    hidden = args.hidden or ([8] if args.start == "single" else [64, 32])
    net = Network.mlp([data.n_features, *hidden, data.n_classes], seed=args.seed)
    groups_start = len(net.groups)
    policy = None
    if args.grow:
        policy = GrowthPolicy(max_groups=args.max_groups or datasets.MAX_GROUPS.get(args.dataset, 32))
    trainer = Trainer(net, backend=_backend(args), optimizer=args.optimizer, lr=args.lr,
                      batch_size=args.batch_size, seed=args.seed, dtype=args.dtype, growth=policy)
    start = time.perf_counter()
    trainer.fit(*data.train, epochs=args.epochs, validation=data.test, progress=not args.quiet)
    seconds = time.perf_counter() - start
    train, test = trainer.evaluate(*data.train), trainer.evaluate(*data.test)
    if args.save:
        trainer.net.save(args.save)
    net = trainer.net
    report = {
        "dataset": args.dataset, "backend": trainer.backend, "epochs": args.epochs, "seed": args.seed,
        "optimizer": args.optimizer, "lr": trainer.lr, "batch_size": args.batch_size, "dtype": args.dtype,
        "groups": len(net.groups), "edges": len(net.edges), "parameters": net.n_params,
        "steps": trainer.step_count, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
        "test_loss": test["loss"], "test_accuracy": test["accuracy"], "seconds": round(seconds, 3),
    }
    if args.grow:
        kinds = [e["kind"] for e in trainer.history.events]
        report.update(growth_events=len(kinds), depth_events=kinds.count("depth"),
                      width_events=kinds.count("width"), prune_events=kinds.count("prune"),
                      groups_start=groups_start, groups_end=len(net.groups))
    return report


def run_demo(args) -> dict:
    from pathlib import Path

    from tqdm.auto import tqdm

    from . import datasets, viz
    from .growth import GrowthPolicy
    from .network import Network
    from .trainer import Trainer

    data = datasets.load(args.dataset, seed=args.seed)
    args.epochs = args.epochs or datasets.default_epochs(data)
    n_in, n_out = data.n_features, data.n_classes
    backend = _backend(args)
    trainer = Trainer(Network.mlp([n_in, 8, n_out], seed=args.seed), backend=backend, seed=args.seed,
                      growth=GrowthPolicy(max_groups=datasets.MAX_GROUPS.get(args.dataset, 32)))
    if not args.quiet:
        trainer.on_growth = lambda events: tqdm.write(
            f"step {events[0].step}: " + ", ".join(f"{e.kind} {e.source}" + (f" -> {e.new}" if e.new else "")
                                                   for e in events) + f" ({len(trainer.net.groups)} groups)",
            file=sys.stderr)
    start = time.perf_counter()
    trainer.fit(*data.train, epochs=args.epochs, validation=data.test, progress=not args.quiet)
    grown_seconds = time.perf_counter() - start
    net = trainer.net
    # the traditional network: one hidden layer with about as many parameters as the grown one
    hidden = max(1, round((net.n_params - n_out) / (n_in + 1 + n_out)))
    mlp = Trainer(Network.mlp([n_in, hidden, n_out], seed=args.seed), backend=backend, seed=args.seed)
    start = time.perf_counter()
    mlp.fit(*data.train, epochs=args.epochs, progress=False)
    mlp_seconds = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = viz.animate(trainer.history, out)
    files["dag"] = viz.draw(net, stats=trainer.history.grad_std[-1]).save(out / "dag.svg")
    for name, fig in (("heatmap", viz.heatmap(trainer.history, net)), ("curves", viz.curves(trainer.history))):
        files[name] = out / f"{name}.png"
        fig.savefig(files[name], dpi=100)
    report = {
        "dataset": args.dataset, "backend": trainer.backend, "epochs": args.epochs, "seed": args.seed,
        "grown": {"groups_start": 3, "groups": len(net.groups), "edges": len(net.edges),
                  "parameters": net.n_params, "growth_events": len(trainer.history.events),
                  "test_accuracy": trainer.evaluate(*data.test)["accuracy"], "seconds": round(grown_seconds, 3)},
        "traditional": {"layers": [n_in, hidden, n_out], "parameters": mlp.net.n_params,
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
    from .errors import GenlabError

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # its options belong to genlab.bench
        from .bench import main as bench

        return bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "start", None) == "single" and args.hidden and len(args.hidden) != 1:
        parser.error("--start single takes one width in --hidden")
    if getattr(args, "quiet", False):
        import logging

        logging.getLogger("genlab").setLevel(logging.ERROR)  # the results and nothing else
    try:
        result = args.run(args)
    except GenlabError as e:
        print(f"genlab: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0
