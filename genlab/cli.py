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


def build_parser() -> argparse.ArgumentParser:
    from .backends import BACKENDS
    from .datasets import NAMES

    parser = argparse.ArgumentParser(prog="genlab", description="Train and grow generalized neural networks.")
    parser.add_argument("--version", action="version", version=f"genlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a network on a dataset and report its accuracy")
    train.add_argument("--dataset", default="digits", choices=NAMES)
    train.add_argument("--backend", default="auto", choices=BACKENDS)
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--hidden", type=_sizes, default=[64, 32],
                       help="widths of the hidden groups of the starting chain (default 64,32)")
    train.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    train.add_argument("--lr", type=float, default=None, help="learning rate (adam 1e-3, sgd 0.1)")
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    train.add_argument("--save", metavar="PATH", help="write the trained network to PATH (.npz)")
    train.add_argument("--json", action="store_true", help="print one JSON object with the results")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=run_train)
    return parser


def run_train(args) -> dict:
    from . import datasets
    from .network import Network
    from .trainer import Trainer

    data = datasets.load(args.dataset, seed=args.seed)
    net = Network.mlp([data.n_features, *args.hidden, data.n_classes], seed=args.seed)
    trainer = Trainer(net, backend=args.backend, optimizer=args.optimizer, lr=args.lr,
                      batch_size=args.batch_size, seed=args.seed, dtype=args.dtype)
    start = time.perf_counter()
    trainer.fit(*data.train, epochs=args.epochs, validation=data.test, progress=not args.quiet)
    seconds = time.perf_counter() - start
    train, test = trainer.evaluate(*data.train), trainer.evaluate(*data.test)
    if args.save:
        trainer.net.save(args.save)
    return {
        "dataset": args.dataset, "backend": trainer.backend, "epochs": args.epochs, "seed": args.seed,
        "optimizer": args.optimizer, "lr": trainer.lr, "batch_size": args.batch_size, "dtype": args.dtype,
        "groups": len(net.groups), "edges": len(net.edges), "parameters": net.n_params,
        "steps": trainer.step_count, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
        "test_loss": test["loss"], "test_accuracy": test["accuracy"], "seconds": round(seconds, 3),
    }


def main(argv=None) -> int:
    from .errors import GenlabError

    args = build_parser().parse_args(argv)
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
