"""The lab's legends, in HTML beside the pictures: crisp at any size, wrapping at any width, in
the pictures' own colours (genlab.viz's constants)."""

from __future__ import annotations

import numpy as np

from .. import viz

SEP = " &nbsp;&middot;&nbsp; "


def _mark(colour: str, text: str, glyph: str = "&#9472;&#9472;") -> str:
    return f"<span style='color:{colour};font-weight:bold'>{glyph}</span>&nbsp;{text}"


def pictures(validation: bool) -> str:
    """The curves' lines and the growth steps' lines (the same in the heatmap)."""
    items = [_mark(viz.TRAIN, "train (mean of 20 steps; dots: each epoch)")]
    if validation:
        items.append(_mark(viz.VALIDATION, "validation (each epoch)", "&#9632;"))
    items += [_mark(colour, label, "&#9474;") for colour, label in viz.EVENT_LABELS.items()]
    return SEP.join(items)


def colour_bar(lo: float, hi: float) -> str:
    """viridis from lo to hi on a log scale, as the heatmap's colour bar."""
    from matplotlib import colormaps

    stops = ", ".join(viz._hex(colormaps["viridis"](t)) for t in np.linspace(0, 1, 9))
    return (f"{lo:.1e}&nbsp;<span style='display:inline-block;width:120px;height:0.9em;vertical-align:middle;"
            f"background:linear-gradient(to right, {stops})'></span>&nbsp;{hi:.1e}")


def dag(scale: tuple[float, float] | None, highlight: dict | None, preview: bool, recurrent: bool,
        bundled: bool = False, cut: bool = False) -> str:
    """What the DAG's fills, labels, edges and outlines mean."""
    lines = ["<b>a circle</b>: a group, its number over its width (neurons); boxes: the input and the output"]
    if scale is not None:
        lines.append("<b>fill</b>: the group's gradient std at the last step, on the heatmap's scale: "
                     + colour_bar(*scale) + " (log)")
    lines.append("<b>edges</b>: " + _mark(viz.POSITIVE, "mean weight &gt; 0") + ", "
                 + _mark(viz.NEGATIVE, "mean weight &lt; 0") + "; thicker: larger weights"
                 + ("; dashed: a recurrent edge, read t-k steps back" if recurrent else "")
                 + ("; grey &times;n: n edges from one boxed level to another, drawn as one" if bundled else ""))
    if cut:
        lines.append("<b>" + _mark(viz.DNI_CUT, "thick black edges") + "</b>: the cuts: the group they leave learns "
                     "from a synthetic gradient, predicted by a module whose error is drawn beside")
    if highlight:
        what = "would grow at the next check (dashed outline)" if preview else "made by the last growth step"
        kinds = sorted(set(highlight.values()) & set(viz.NEW_KIND))
        lines.append("<b>outlined</b>: " + ", ".join(
            f"<span style='color:{viz.NEW_KIND[k]};font-weight:bold'>{k}-wise</span>" for k in kinds) + f": {what}")
    return "<br>".join(lines)
