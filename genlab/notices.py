"""One-line notes for the person training ("genlab: using the serial engine (...)", "genlab: growth
stopped at step 150: ..."): on stderr in a script; in Jupyter a quiet grey line in the cell's
output instead of stderr's pink box, which reads as an error; inside the lab, its message line.

genlab's loggers (genlab.growth) speak through here too; logging.getLogger("genlab").setLevel(
logging.ERROR) silences them, as `genlab ... --quiet` does.
"""

from __future__ import annotations

import contextlib
import html
import logging
import sys
from typing import Callable

_sinks: list[Callable[[str], None]] = []


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def say(line: str) -> None:
    """Tell the person training `line`: where redirected() sends it, else as the module says."""
    if _sinks:
        _sinks[-1](line)
    elif _in_kernel():
        from IPython.display import HTML, display

        display(HTML(f"<div style='color:#555;font-size:0.95em;margin:0.2em 0'>{html.escape(line)}</div>"))
    else:
        print(line, file=sys.stderr)


@contextlib.contextmanager
def redirected(sink: Callable[[str], None]):
    """Within the block, notes go to sink(line) (the lab shows them in its message line)."""
    _sinks.append(sink)
    try:
        yield
    finally:
        _sinks.remove(sink)


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        say(record.getMessage())


def install() -> None:
    """Let the "genlab" loggers' notes through say() (once per process)."""
    logger = logging.getLogger("genlab")
    if not any(isinstance(h, _Handler) for h in logger.handlers):
        logger.addHandler(_Handler())
