"""Pictures of a network and of its training.

- draw(net): the DAG through Graphviz, ranked by level from left to right; groups sized by
  width and filled by their gradient std; edges as wide as their weights' norm, blue for a
  positive mean weight and orange for a negative one (the TensorFlow Playground's colours);
  the groups made by the last growth event outlined (vermillion: depth-wise, blue: width-wise); a
  legend says so.
- heatmap(history): gradient std of every group over the steps, growth events as lines.
- curves(history): loss and accuracy, train and validation, growth events marked.
- decision_boundary(trainer, data): the classes of a 2-D dataset over the plane.
- animation(history): the DAG growing, one frame per growth event, shown inline (live and in an
  exported page); animate(history, folder) writes it as a GIF and an HTML player.

Graphviz's `dot` program draws the DAG; without it draw() still returns the DOT source and says
so in one line.
"""

from __future__ import annotations

import html

import numpy as np

from . import figures
from .animation import Animation, animate, animation, frames  # noqa: F401 (the DAG growing: reached as viz.*)
from .animation import events_by_step
from .dot import BUNDLE_OVER, NEGATIVE, NEW_KIND, POSITIVE, _hex, _std_colours  # noqa: F401 (the drawings' marks)
from .dot import graph as _graph
from .drawing import Drawing
from .network import OUTPUT
from .operations import Change

TRAIN, VALIDATION = "#222222", "#e69f00"          # the curves (Okabe-Ito black and orange)
DNI_CUT = "#000000"                                 # an edge a synthetic gradient stands in for (draw's cut)
MODULE_COLOURS = ("#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")  # Okabe-Ito, one per module
def last_event_groups(history_events: list) -> dict[int, str]:
    """{new group: kind} for the groups the last growth step made."""
    grown = [e for e in history_events if e.get("new") is not None]
    if not grown:
        return {}
    step = grown[-1]["step"]
    return {e["new"]: e["kind"] for e in grown if e["step"] == step}


def draw(net, stats: dict | None = None, highlight: dict | None = None, caption: str = "",
         partition=None, preview: bool = False, scale: tuple[float, float] | None = None,
         fontsize: float = 9, legend: bool = True, bundle: bool | None = None, cut=None) -> Drawing:
    """The DAG of `net`. stats: {group: gradient std} to fill the groups (for instance
    trainer.history.grad_std[-1]), on a log colour scale from scale=(lo, hi) (by default the
    stats' own range); highlight: {group: "depth" | "width"}, by default the groups made by the
    network's last growth event (preview=True: the groups that would grow, dashed); partition
    (genlab.partition.plan): the groups filled by their part instead, the cut edges drawn thick
    and red; fontsize: of the groups' labels, in points; legend=False: no legend nor caption below;
    bundle: the edges from one level to another drawn as one (None: for a widened recurrent stack);
    cut: edges drawn thick and black, where synthetic gradients stand in (genlab.DNI's crossing edges)."""
    norms = {e: float(np.linalg.norm(w)) for e, w in net.weights.items()}
    top = max(norms.values()) or 1.0
    style = {e: (0.4 + 3.6 * norms[e] / top, POSITIVE if float(np.mean(net.weights[e])) >= 0 else NEGATIVE)
             for e in norms}
    topology = net.topology()
    if highlight is None:
        highlight = {g: k for g, k in last_event_groups(net.history).items() if g in net.widths}
    for e in cut or ():
        style[e] = (4.5, DNI_CUT)
    if partition is not None:  # the parts fill the groups; the cut edges, red, replace the weights' colours
        stats, style = None, {e: (3.0, CUT) for e in partition.cut_edges}
    graph = _graph(topology["widths"], topology["edges"], topology["levels"], stats, highlight, style, caption,
                   topology["delays"], topology["labels"], topology["shapes"], preview, scale, fontsize, legend, bundle)
    if partition is not None:
        _show_partition(graph, partition)
    return Drawing(graph, caption)


PART_COLOURS = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d")
CUT = "#d62728"


def draw_unrolled(net, steps: int = 4, caption: str = "", every_step: bool = False, fontsize: float = 11) -> Drawing:
    """A recurrent network over `steps` steps, as textbooks draw an RNN: one column of cells a step,
    from the input at the bottom to the output at the top; each cell labelled with its wavefront
    stage (genlab.wavefront), cells that cannot reach the loss faded (genlab.dot_unrolled)."""
    from . import checks
    from .dot_unrolled import graph

    steps = checks.integer(steps, "steps", 1)
    return Drawing(graph(net, steps, caption, every_step, fontsize), caption)


def _show_partition(graph, partition) -> None:
    """Fill each group with its part's colour and say below what the colours and the red edges are
    (this legend replaces the drawing's own)."""
    for g, p in partition.parts.items():
        graph.node(f"g{g}", fillcolor=PART_COLOURS[p % len(PART_COLOURS)], fontcolor="black")
    swatches = "".join(f'<td bgcolor="{PART_COLOURS[p % len(PART_COLOURS)]}">part {p}</td>'
                       for p in range(partition.n_parts))
    summary = (f"{len(partition.cut_edges)} cut edges (red): {partition.cut_bytes / 1024:.1f} KiB a sample a step; "
               f"imbalance {partition.imbalance:.2f} ({partition.method})")
    graph.attr(label=f'<<table border="0" cellspacing="2"><tr>{swatches}</tr>'
                     f'<tr><td colspan="{partition.n_parts}">{html.escape(summary)}</td></tr></table>>',
               labelloc="b")


PRUNED = "#7f7f7f"  # the line of a growth step that only removed groups
EVENT_LABELS = {NEW_KIND[Change.DEPTH]: "growth step (depth-wise)", NEW_KIND[Change.WIDTH]: "growth step (width-wise)",
                PRUNED: "pruning step"}


def _mark_events(ax, history, lw: float = 0.8) -> list:
    """A vertical line at each growth step (vermillion: it deepened, blue: it widened, grey: it
    only pruned), lw points wide; returns one legend handle per colour drawn."""
    from matplotlib.lines import Line2D

    drawn = {}
    for step, events in events_by_step(history):
        kinds = {e["kind"] for e in events}
        colour = next((NEW_KIND[c] for c in (Change.DEPTH, Change.WIDTH) if c in kinds), PRUNED)
        ax.axvline(step, color=colour, alpha=0.6, lw=lw)
        drawn[colour] = Line2D([], [], color=colour, alpha=0.7, lw=1.5 * lw, label=EVENT_LABELS[colour])
    return list(drawn.values())


def step_span(history) -> tuple[float, float]:
    """The x range of the history's records drawn as columns: from half a stride before the
    first recorded step to half one after the last ((0.5, n + 0.5) when every step is kept)."""
    half = getattr(history, "stride", 1) / 2
    return history.steps[0]["step"] - half, history.steps[-1]["step"] + half


def heatmap_matrix(history, net=None) -> tuple[list[int], dict[int, int], np.ndarray]:
    """(hidden groups ordered by level, their levels, matrix group x step of gradient std, NaN
    where a group did not exist)."""
    records = history.grad_std
    if not records:
        raise ValueError("the history has no steps yet: train first")
    groups = sorted({g for r in records for g in r if g != OUTPUT})
    if net is not None:
        level = net.levels()
    elif history.events:
        level = {int(k): v for k, v in history.events[-1]["after"]["levels"].items()}
    else:
        level = {}
    groups.sort(key=lambda g: (level.get(g, 10**9), g))
    matrix = np.full((len(groups), len(records)), np.nan)
    row = {g: i for i, g in enumerate(groups)}
    for t, r in enumerate(records):
        for g, v in r.items():
            if g in row and v > 0:
                matrix[row[g], t] = v
    return groups, level, matrix


def heatmap(history, net=None, ax=None):
    """Gradient std (log colour scale) of every group (rows, ordered by level) over the steps
    (columns); a group's row starts at its creation; growth steps drawn as vertical lines
    (vermillion: a depth-wise event, blue: width-wise, grey: pruning). Returns the figure."""
    from matplotlib.colors import LogNorm

    groups, level, matrix = heatmap_matrix(history, net)
    if not groups:
        raise ValueError("the network has no hidden group: the heatmap has no row to show")
    if ax is None:
        fig, ax = figures.subplots(figsize=(9, 0.25 * len(groups) + 1.8))
    else:
        fig = ax.figure
    finite = matrix[np.isfinite(matrix)]
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if finite.size else None
    image = ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap="viridis", norm=norm,
                      extent=(*step_span(history), len(groups) - 0.5, -0.5))
    markers = _mark_events(ax, history)
    if markers:
        ax.legend(handles=markers, fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(markers),
                  frameon=False, borderaxespad=0.2)
    if len(groups) <= 40:
        ax.set_yticks(range(len(groups)), [f"{g} (L{level[g]})" if g in level else str(g) for g in groups],
                      fontsize=7)
    ax.set_xlabel("step")
    ax.set_ylabel("group (by level)")
    ax.set_title("gradient std of each group", loc="left")
    fig.colorbar(image, ax=ax, label="std of dL/dh", pad=0.01)
    fig.tight_layout()
    return fig


def curves(history, window: int = 20):
    """Loss and accuracy: per step (moving average over `window` steps) and per epoch, train and
    validation, with growth steps as vertical lines. Returns the figure."""
    if not history.steps:
        raise ValueError("the history has no steps yet: train first")
    fig, axes = figures.subplots(1, 2, figsize=(10, 3.4))
    steps = np.array([s["step"] for s in history.steps])
    for ax, key in zip(axes, ("loss", "accuracy")):
        values = np.array([s[key] for s in history.steps])
        k = max(1, min(window, len(values)))
        smooth = np.convolve(values, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, color=TRAIN, lw=1, label=f"train (mean of {k} steps)")
        epochs = history.epochs
        if epochs:
            ax.plot([e["step"] for e in epochs], [e[key] for e in epochs], "o-", color=TRAIN, ms=3,
                    label="train (epoch)")
            if "val_" + key in epochs[0]:
                ax.plot([e["step"] for e in epochs], [e["val_" + key] for e in epochs], "s-", color=VALIDATION,
                        ms=3, label="validation (epoch)")
        markers = _mark_events(ax, history)
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].legend(handles=axes[1].get_legend_handles_labels()[0] + markers, fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def decision_boundary(trainer, data, ax=None, resolution: int = 200):
    """The predicted class over the plane of a 2-D dataset, with the training (dots) and test
    (crosses) samples. Returns the figure."""
    if data.n_features != 2:
        raise ValueError(f"decision_boundary needs a 2-D dataset, {data.name} has {data.n_features} features")
    points = np.concatenate([data.X_train, data.X_test])
    (x0, y0), (x1, y1) = points.min(axis=0) - 0.5, points.max(axis=0) + 0.5
    xx, yy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    classes = trainer.predict(np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
    if ax is None:
        fig, ax = figures.subplots(figsize=(4.2, 4))
    else:
        fig = ax.figure
    ax.contourf(xx, yy, classes, levels=np.arange(data.n_classes + 1) - 0.5, cmap="coolwarm", alpha=0.35)
    ax.scatter(*data.X_train.T, c=data.y_train, cmap="coolwarm", s=8, edgecolors="none")
    ax.scatter(*data.X_test.T, c=data.y_test, cmap="coolwarm", s=14, marker="x")
    accuracy = trainer.evaluate(*data.test)["accuracy"]
    ax.set_title(f"{data.name}: test accuracy {accuracy:.3f}, {len(trainer.net.groups)} groups", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig
