"""A drawn DAG (Graphviz's DOT source, rendered by its dot program where installed): what
genlab.viz's pictures and genlab.animation's frames return."""

from __future__ import annotations

import sys
from pathlib import Path

_warned = False  # the missing dot program is said once a process


def _no_dot_message() -> str:
    return "genlab: Graphviz's dot program is not installed (apt-get install graphviz); showing the DOT source"


class Drawing:
    """A drawn DAG: its DOT source, and SVG or PNG through Graphviz's dot when installed."""

    def __init__(self, graph, caption: str = ""):
        self.graph = graph
        self.caption = caption

    @property
    def source(self) -> str:
        return self.graph.source

    def _pipe(self, fmt: str):
        import graphviz

        global _warned
        try:
            return self.graph.pipe(format=fmt)
        except graphviz.ExecutableNotFound:
            if not _warned:
                print(_no_dot_message(), file=sys.stderr)
                _warned = True
            return None

    def svg(self) -> str | None:
        """The SVG text, or None (after one line on stderr) without dot."""
        data = self._pipe("svg")
        return data.decode() if data is not None else None

    def png(self) -> bytes | None:
        return self._pipe("png")

    def save(self, path) -> Path:
        """Write .svg, .png or .dot (by the suffix); without dot, the .dot source instead."""
        path = Path(path)
        data = None if path.suffix == ".dot" else self._pipe(path.suffix.lstrip("."))
        if data is None:
            path = path.with_suffix(".dot")
            data = self.source.encode()
        path.write_bytes(data)
        return path

    def _repr_mimebundle_(self, include=None, exclude=None):
        svg = self.svg()
        if svg is not None:
            return {"image/svg+xml": svg}
        return {"text/plain": f"{_no_dot_message()}\n{self.source}"}
