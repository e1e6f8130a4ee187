"""The lab's live pictures: the gradient-std heatmap and the loss and accuracy curves.

Each is a matplotlib Figure (genlab.figures: out of pyplot's reach) kept between redraws: a redraw
gives its artists new data and limits, and a figure is built again only when what it shows
changes shape (a growth event: new rows, a new line). Encoded as PNG for an ipywidgets Image.

Sized for a projector: a picture is drawn PANEL_PX wide, the narrowest its panel gets, so the
browser only ever scales it up: its text is TEXT_PX pixels high on the screen or more.
"""

from __future__ import annotations

import io

import numpy as np

from .. import figures, viz

PANEL_PX = 400          # CSS pixels: the narrowest a picture panel gets (two side by side at 1024 px)
DPI = 100               # the PNG's pixels per inch: a picture is PANEL_PX / DPI inches wide
TEXT_PT = 11            # ticks, labels and titles: 15 px at DPI
TEXT_PX = TEXT_PT * DPI / 72
LINE = 2.5              # points: the curves' lines; growth steps' lines 2
ROW_IN, MAX_HEIGHT_IN = 0.25, 5.0  # the heatmap's height per group and at most


def png(fig) -> bytes:
    """The figure as PNG bytes, drawn on its Agg canvas and encoded with light compression: fast."""
    from PIL import Image

    fig.canvas.draw()
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def _figure(height_in: float):
    fig = figures.figure(figsize=(PANEL_PX / DPI, height_in), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.tick_params(which="both", labelsize=TEXT_PT, width=1.5, length=5)
    return fig, ax


def _freeze(fig) -> None:
    """Lay the figure out once (constrained layout: nothing clipped) and keep that layout: laying
    out costs more than drawing, and the figure is laid out again when it is built again."""
    fig.canvas.draw()
    fig.set_layout_engine("none")


def _log_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values) & (values > 0)]
    if not finite.size:
        return 1e-6, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo / 1.5, hi * 1.5)


COLUMNS = 2 * PANEL_PX  # the heatmap's columns at most: two a pixel where it is drawn narrowest


class Thinned:
    """Every k-th record of a history (the newest kept), at most `most` of them, evenly spaced as
    the history's own are: what a picture of `most` columns can show, at a cost that does not
    grow with the run."""

    def __init__(self, history, most: int):
        n = len(history.steps)
        k = max(1, -(-n // most))
        start = (n - 1) % k if n else 0
        self.steps, self.grad_std = history.steps[start::k], history.grad_std[start::k]
        self.events, self.epochs = history.events, history.epochs
        self.stride = getattr(history, "stride", 1) * k


class Heatmap:
    """Gradient std of every hidden group (rows, by level) over the steps, growth steps as lines;
    its colour scale (lo, hi) is also the DAG's."""

    def __init__(self):
        self.fig = None
        self._shape = None
        self.scale = (1e-6, 1.0)

    def draw(self, history, net) -> bytes | None:
        """The PNG, or None where the network has no hidden group (no row to show)."""
        history = Thinned(history, COLUMNS)
        groups, level, matrix = viz.heatmap_matrix(history, net)
        if not groups:
            self._shape = None
            return None
        shape = (tuple(groups), len(history.events))
        self.scale = _log_range(matrix)
        if shape != self._shape:
            self._build(history, groups, level, matrix)
            self._shape = shape
        span = viz.step_span(history)
        self._image.set_data(np.ma.masked_invalid(matrix))
        self._image.set_extent((*span, len(groups) - 0.5, -0.5))
        self._image.set_clim(*self.scale)
        self._ax.set_xlim(*span)
        return png(self.fig)

    def _build(self, history, groups, level, matrix) -> None:
        from matplotlib.colors import LogNorm

        n = len(groups)
        height = min(1.6 + ROW_IN * n, MAX_HEIGHT_IN)
        fig, ax = _figure(height)
        self._image = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", interpolation="nearest",
                                cmap="viridis", norm=LogNorm(*self.scale),
                                extent=(*viz.step_span(history), n - 0.5, -0.5))
        viz._mark_events(ax, history, lw=2)
        row_px = (height - 1.6) * DPI / max(n, 1)
        shown = range(0, n, max(1, int(np.ceil(1.3 * TEXT_PX / row_px))))  # a label every few rows when they are thin
        ax.set_yticks(list(shown), [f"{groups[i]}" for i in shown])
        ax.set_xlabel("step", fontsize=TEXT_PT)
        ax.set_ylabel("group (by level)", fontsize=TEXT_PT)
        ax.set_title("gradient std of each group", loc="left", fontsize=TEXT_PT + 1)
        bar = fig.colorbar(self._image, ax=ax, pad=0.02)
        bar.ax.tick_params(which="both", labelsize=TEXT_PT)
        bar.set_label("std of dL/dh (log)", fontsize=TEXT_PT)
        _freeze(fig)
        self.fig, self._ax = fig, ax


class Curve:
    """A quantity of the history's steps and epochs (key: "loss", "accuracy") over the steps: train
    (moving mean of `window` steps, and per epoch) and validation (per epoch), growth steps as
    lines; log_scale: on a log axis."""

    def __init__(self, key: str, log_scale: bool = False, window: int = 20):
        self.key, self.log_scale, self.window = key, log_scale, window
        self.fig = None
        self._shape = None

    def draw(self, history) -> bytes:
        epochs = history.epochs
        shape = (len(history.events), bool(epochs), bool(epochs) and "val_" + self.key in epochs[0])
        if shape != self._shape:
            self._build(history, *shape[1:])
            self._shape = shape
            self._update(history)
            _freeze(self.fig)  # laid out with the data in: the ticks' labels take their room
        return self._update(history)

    def _update(self, history) -> bytes:
        epochs = history.epochs
        steps = np.array([s["step"] for s in history.steps])
        values = np.array([s[self.key] for s in history.steps], dtype=float)
        k = max(1, min(self.window, len(values)))
        self._lines["train"].set_data(steps[k - 1:], np.convolve(values, np.ones(k) / k, mode="valid"))
        for name, field in (("epoch", self.key), ("validation", "val_" + self.key)):
            if name in self._lines:
                self._lines[name].set_data([e["step"] for e in epochs], [e[field] for e in epochs])
        self._ax.relim()
        self._ax.autoscale_view()
        return png(self.fig)

    def _build(self, history, per_epoch: bool, validation: bool) -> None:
        fig, ax = _figure(3.0)
        self._lines = {"train": ax.plot([], [], color=viz.TRAIN, lw=LINE)[0]}
        if per_epoch:
            self._lines["epoch"] = ax.plot([], [], "o", color=viz.TRAIN, ms=7)[0]
        if validation:
            self._lines["validation"] = ax.plot([], [], "s-", color=viz.VALIDATION, lw=LINE, ms=7)[0]
        viz._mark_events(ax, history, lw=2)
        if self.log_scale:
            ax.set_yscale("log")
        ax.set_xlabel("step", fontsize=TEXT_PT)
        ax.set_title(self.key, loc="left", fontsize=TEXT_PT + 1)
        ax.grid(alpha=0.3)
        self.fig, self._ax = fig, ax


class ModuleErrors:
    """The relative error of each synthetic-gradient module (genlab.DNI) over the steps: a moving
    mean of `window` steps per module, from the engine's per-step record of the latest steps."""

    def __init__(self, window: int = 20):
        self.window, self.fig, self._shape = window, None, None

    def draw(self, errors, step: int) -> bytes | None:
        """errors: the engine's records, one {group: error} per step, the last taken at `step`."""
        if not errors:
            return None
        errors = list(errors)
        groups = sorted({g for e in errors for g in e})
        if tuple(groups) != self._shape:
            fig, ax = _figure(3.0)
            self._lines = {g: ax.plot([], [], color=viz.MODULE_COLOURS[i % len(viz.MODULE_COLOURS)], lw=LINE,
                                      label=f"group {g}")[0] for i, g in enumerate(groups)}
            ax.set_xlabel("step", fontsize=TEXT_PT)
            ax.set_title("synthetic gradients' error", loc="left", fontsize=TEXT_PT + 1)
            ax.set_ylabel("|prediction - truth| / |truth|", fontsize=TEXT_PT)
            ax.legend(fontsize=TEXT_PT, loc="upper right")
            ax.grid(alpha=0.3)
            self.fig, self._ax, self._shape = fig, ax, tuple(groups)
            _freeze(fig)
        k = max(1, -(-len(errors) // COLUMNS))  # at most COLUMNS points a line
        first = step - len(errors) + 1
        for g, line in self._lines.items():
            values = np.array([e.get(g, np.nan) for e in errors], float)
            w = max(1, min(self.window, len(values)))
            smooth = np.convolve(values, np.ones(w) / w, mode="valid")
            line.set_data(np.arange(first + w - 1, step + 1)[::k], smooth[::k])
        self._ax.relim()
        self._ax.autoscale_view()
        return png(self.fig)
