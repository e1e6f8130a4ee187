"""Pictures of the growth study: test accuracy against parameters, and learning curves with
error bands, one panel per dataset. Matplotlib Figures without pyplot (nothing global), in the
Okabe-Ito colours (safe for colour-blind readers), markers as well as colours."""

from __future__ import annotations

import numpy as np

from .tasks import ARMS

COLOURS = {"grown": "#0072B2", "regrown": "#56B4E9", "layered": "#009E73", "random": "#E69F00", "torch": "#CC79A7"}
MARKERS = {"grown": "o", "regrown": "s", "layered": "^", "random": "D", "torch": "v"}
TEXT = {"grown": "grown", "regrown": "grown topology, fixed", "layered": "one layer, same size",
        "random": "random growth", "torch": "PyTorch, same size"}


def _figure(n: int, height: float = 3.6):
    from ..figures import figure

    cols = min(n, 3)
    rows = -(-n // cols)
    fig = figure(figsize=(4.6 * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def accuracy_vs_parameters(study: dict):
    """Each run's test accuracy against its parameters (log scale), arms by colour and marker, the
    mean of each arm with its std as an error bar; published anchors as dashed lines."""
    names = list(study["summary"])
    fig, axes = _figure(len(names))
    for ax, name in zip(axes, names):
        for arm in ARMS:
            mine = [r for r in study["runs"] if r["task"] == name and r["arm"] == arm]
            if not mine:
                continue
            p, a = np.array([r["parameters"] for r in mine]), np.array([r["accuracy"] for r in mine])
            ax.scatter(p, a, s=18, alpha=0.35, color=COLOURS[arm], marker=MARKERS[arm])
            s = study["summary"][name][arm]
            ax.errorbar(s["parameters_mean"], s["accuracy_mean"], yerr=s["accuracy_std"], fmt=MARKERS[arm],
                        color=COLOURS[arm], markersize=8, capsize=4, lw=2, label=TEXT[arm])
        for i, (label, value) in enumerate(study.get("anchors", {}).get(name, {}).items()):
            ax.axhline(value, color="0.4", ls=(0, (4, 2 + 2 * i)), lw=1.2)
            ax.annotate(f"{label} (published) {value:.3g}", (0.02, value), xycoords=("axes fraction", "data"),
                        fontsize=10, color="0.3", va="bottom")
        _thousands(ax)
        _label(ax, name, "parameters")
    axes[0].legend(fontsize=10, loc="lower right")
    return fig


def _label(ax, name: str, x: str) -> None:
    """A panel's title, axis labels and grid, large enough for a projector."""
    ax.set_title(name, fontsize=14)
    ax.set_xlabel(x, fontsize=12)
    ax.set_ylabel("test accuracy", fontsize=12)
    ax.tick_params(labelsize=11)
    ax.grid(alpha=0.3)


def _thousands(ax) -> None:
    """A log axis of parameters labelled 20k, 50k, 100k (no crowded minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x >= 1000 else f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def learning_curves(study: dict):
    """Test accuracy after each epoch: the mean over seeds of each arm, a band of +- one std."""
    names = list(study["summary"])
    fig, axes = _figure(len(names))
    for ax, name in zip(axes, names):
        for arm in ARMS:
            curves = [r["curve"] for r in study["runs"] if r["task"] == name and r["arm"] == arm]
            if not curves:
                continue
            c = np.array(curves)
            x = np.arange(1, c.shape[1] + 1)
            mean, std = c.mean(axis=0), c.std(axis=0)
            ax.plot(x, mean, color=COLOURS[arm], lw=2, label=TEXT[arm], marker=MARKERS[arm],
                    markevery=max(1, len(x) // 6))
            ax.fill_between(x, mean - std, mean + std, color=COLOURS[arm], alpha=0.2, lw=0)
        lows = [r["curve"][-1] for r in study["runs"] if r["task"] == name]
        ax.set_ylim(max(0.0, min(lows) - 0.15), min(1.0, max(lows) + 0.03))
        _label(ax, name, "epoch")
    axes[0].legend(fontsize=10, loc="lower right")
    return fig
