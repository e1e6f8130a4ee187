"""Figures without pyplot: a matplotlib Figure on its own Agg canvas, which Jupyter shows as a PNG.

pyplot keeps every figure it makes in a global list that anything may close (matplotlib-inline
closes them all after each cell, from whatever thread runs it); genlab's pictures never enter it,
so the lab keeps drawing whatever else the kernel does, and nothing is shown twice.
"""

from __future__ import annotations

import functools


@functools.cache
def _picture_class():
    from matplotlib.figure import Figure

    class Picture(Figure):
        """A Figure that Jupyter shows as a PNG (without pyplot's inline backend)."""

        def _repr_png_(self) -> bytes:
            import io

            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=80)
            return buffer.getvalue()

    return Picture


def figure(**options):
    """A new Figure (Figure's options: figsize, layout...) on an Agg canvas of its own."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _picture_class()(**options)
    FigureCanvasAgg(fig)
    return fig


def subplots(nrows: int = 1, ncols: int = 1, **options):
    """(figure, axes) as pyplot.subplots gives them, without pyplot."""
    squeeze = options.pop("squeeze", True)
    fig = figure(**options)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)
