"""The command line's argument types and parser: each option checked as it is read, with a
one-line error (exit status 2) naming the option and what it takes."""

from __future__ import annotations

import argparse
import math


class Parser(argparse.ArgumentParser):
    """Errors in one line (what is wrong, and --help for the rest), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Usage(Exception):
    """A bad option found before any work: one line, exit status 2."""


def count(low: int, high: int | None = None):
    """An argparse type: an integer of at least `low` (and at most `high`)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            within = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {within}, got {value}")
        return value
    return parse


def rate(text: str) -> float:
    """An argparse type: a finite, non-negative number (a learning rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of at least 0, got {text}")
    return value


def sizes(text: str) -> list[int]:
    """An argparse type: positive widths separated by commas ("64,32"), none left empty."""
    from .checks import MAX_WIDTH

    items = [s.strip() for s in text.split(",")]
    try:
        values = [int(s) for s in items]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected positive widths like 64,32, got {text!r}") from None
    if min(values) <= 0 or max(values) > MAX_WIDTH:
        raise argparse.ArgumentTypeError(f"expected positive widths (at most {MAX_WIDTH}) like 64,32, got {text!r}")
    return values


def names(text: str) -> list[str]:
    """An argparse type: names separated by commas, none empty."""
    items = [n.strip() for n in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected names separated by commas, got {text!r}")
    return items


class Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, where it has one."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)
