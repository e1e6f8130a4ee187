"""The DOT graph of a topology (for Graphviz's dot): groups ranked by level from left to right,
sized by width and filled by a statistic on a log colour scale, edges coloured by their weights'
sign, a widened recurrent stack drawn level to level, and a legend that says what each mark
means. genlab.viz draws networks and growth histories with it."""

from __future__ import annotations

import html

import numpy as np

from .network import INPUT, OUTPUT
from .operations import Change

POSITIVE, NEGATIVE = "#1f77b4", "#ff7f0e"        # mean weight > 0, < 0
# outline of the groups a growth event made (Okabe-Ito vermillion and blue: told apart by
# colour-blind eyes too); the groups a preview shows are outlined alike, dashed
NEW_KIND = {Change.DEPTH: "#d55e00", Change.WIDTH: "#0072b2"}
BUNDLE_OVER = 8  # recurrent edges drawn one by one up to this many, then level to level
MAX_SIZE = "9.5,40"  # inches: a drawing wider than a notebook's column (about 950 px) scales down
BUNDLE_COLOUR = "#555555"


def _hex(rgba) -> str:
    return "#%02x%02x%02x" % tuple(int(round(255 * c)) for c in rgba[:3])


def _std_colours(stats: dict[int, float], scale=None) -> tuple[dict[int, str], tuple[float, float]]:
    """A viridis colour per group on a log scale of its gradient std, from scale's (lo, hi) (the
    heatmap's, where given: values outside it take its ends) or the values' own; and the ends."""
    from matplotlib import colormaps

    values = {g: v for g, v in stats.items() if v > 0 and np.isfinite(v)}
    if not values:
        return {}, (0.0, 0.0)
    lo, hi = scale if scale is not None else (min(values.values()), max(values.values()))
    values = {g: min(max(v, lo), hi) for g, v in values.items()}
    span = np.log(hi) - np.log(lo) or 1.0
    cmap = colormaps["viridis"]
    return {g: _hex(cmap((np.log(v) - np.log(lo)) / span)) for g, v in values.items()}, (lo, hi)


def _bundles(edges: list, levels: dict, delayed: dict, bundle: bool | None) -> tuple[dict, set]:
    """{(source level, destination level, delay or 0): [edges drawn as one]} and the levels drawn
    boxed (those a bundle leaves or enters that hold more than one group)."""
    bundles = {}
    if bundle if bundle is not None else len(delayed) > BUNDLE_OVER:
        for s, d in sorted(tuple(e) for e in edges):
            bundles.setdefault((levels[s], levels[d], delayed.get((s, d), 0)), []).append((s, d))
        bundles = {key: pairs for key, pairs in bundles.items() if len(pairs) > 2}
    crowded = {v for v in levels.values() if sum(1 for u in levels.values() if u == v) > 1}
    return bundles, {level for ls, ld, _ in bundles for level in (ls, ld)} & crowded


def _node(n: int, width: int, max_width: int, colour: str | None, label, shape: str | None,
          outline: str | None, preview: bool) -> dict:
    """A group's node: a circle sized by its width ("number / width"), a box for the input and the
    output, the kind's shape for the groups that are not dense; outlined when new or previewed."""
    size = "%.2f" % (0.35 + 0.55 * np.log2(1 + width) / np.log2(1 + max_width))
    attrs = {"width": size, "height": size, "fixedsize": "true", "fillcolor": colour or "#ffffff"}
    if n in (INPUT, OUTPUT):
        attrs.update(shape="box", fixedsize="false", fillcolor="#dddddd",
                     label=f"{'input' if n == INPUT else 'output'}\n{label}")
    elif shape is not None:
        attrs.update(shape=shape, fixedsize="false", label=f"{n}\n{label}")
    else:
        attrs.update(shape="circle", label=f"{n}\n{width}")
        if colour is not None and np.mean([int(colour[i:i + 2], 16) for i in (1, 3, 5)]) < 110:
            attrs["fontcolor"] = "white"
    if outline is not None:
        attrs.update(color=NEW_KIND.get(outline, "#000000"), penwidth="3")
        if preview:
            attrs["style"] = "filled,dashed"
    return attrs


def _edges(g, edges: list, delayed: dict, bundles: dict, boxed: set, edge_style: dict | None,
           fontsize: float) -> None:
    """The edges: a bundle as one grey edge between its levels' boxes ("x49"; recurrent ones
    dashed, over the top), the others each coloured by edge_style, recurrent ones dashed "t-k"."""
    for (ls, ld, k), pairs in bundles.items():
        (s, d), between = pairs[0], {}
        if ls != ld:
            between.update({"ltail": f"cluster_level{ls}"} if ls in boxed else {})
            between.update({"lhead": f"cluster_level{ld}"} if ld in boxed else {})
        if k:  # back over the top, not pulling on the ranks
            between.update(style="dashed", constraint="false", tailport="n", headport="n")
        g.edge(f"g{s}", f"g{d}", penwidth="3", color=BUNDLE_COLOUR, fontsize=str(fontsize),
               label=(f"t-{k} " if k else "") + f"\u00d7{len(pairs)}", **between)
    if bundles:
        g.attr(compound="true")
    in_bundle = {pair for pairs in bundles.values() for pair in pairs}
    for s, d in sorted(tuple(e) for e in edges):
        if (s, d) in in_bundle:
            continue
        penwidth, colour = (edge_style or {}).get((s, d), (1.0, "#888888"))
        extra = (dict(style="dashed", label=f"t-{delayed[(s, d)]}", fontsize=str(fontsize - 1), constraint="false")
                 if (s, d) in delayed else {})
        g.edge(f"g{s}", f"g{d}", penwidth="%.2f" % penwidth, color=colour, **extra)


def _legend(recurrent: bool, bundled: bool, weights: bool, circles: bool, scale, highlight: dict, preview: bool,
            caption: str) -> list[str]:
    """The legend's rows (Graphviz HTML-like table rows)."""
    from matplotlib import colormaps

    rows = [f"<tr><td colspan='8'>{html.escape(caption)}</td></tr>"] if caption else []
    if recurrent:
        rows.append('<tr><td colspan="8">dashed: a recurrent edge, read t-k steps back</td></tr>')
    if bundled:
        rows.append('<tr><td colspan="8">grey \u00d7n: n edges from one level (boxed) to another, drawn as one; '
                    't-k \u00d7n: n recurrent ones</td></tr>')
    if weights:
        rows.append(f'<tr><td colspan="8">edges: <font color="{POSITIVE}">mean weight &gt; 0</font>, '
                    f'<font color="{NEGATIVE}">mean weight &lt; 0</font>; thicker: a larger weight norm</td></tr>')
    if circles:
        rows.append('<tr><td colspan="8">a circle: a group, its number over its width (neurons)</td></tr>')
    if scale is not None:
        cmap = colormaps["viridis"]
        swatches = "".join(f'<td bgcolor="{_hex(cmap(t))}" width="14"> </td>' for t in np.linspace(0, 1, 6))
        rows.append(f'<tr><td>fill: gradient std {scale[0]:.1e}</td>{swatches}<td>{scale[1]:.1e} (log scale)</td></tr>')
    if highlight:
        what = "would grow, dashed" if preview else "new"
        rows.append("<tr><td colspan='8'>" + ", ".join(f'<font color="{NEW_KIND[k]}">{what} ({k}-wise)</font>'
                                                       for k in sorted(set(highlight.values())) if k in NEW_KIND)
                    + "</td></tr>")
    return rows


def graph(widths: dict, edges: list, levels: dict, stats: dict | None = None, highlight: dict | None = None,
          edge_style: dict | None = None, caption: str = "", delays=(), labels: dict | None = None,
          shapes: dict | None = None, preview: bool = False, scale=None, fontsize: float = 9,
          show_legend: bool = True, bundle: bool | None = None):
    """The Digraph of a topology. edge_style: {(src, dst): (penwidth, colour)}; delays: [src, dst,
    delay] of the recurrent edges, drawn dashed, labelled t-delay, without pulling on the ranks;
    labels and shapes: of the groups that are not dense ("conv 8ch 3x3" in a 3-D box); preview:
    the highlighted groups are the ones the next growth check would grow (dashed outlines);
    scale: the (lo, hi) of the colours (the heatmap's); fontsize: of the groups' labels (points),
    the legend's 2 more; show_legend=False: no legend nor caption (the lab writes its own);
    bundle: the edges from one level to another (recurrent ones apart) drawn as one, between the
    levels' boxes, where there are more than two (None: where there are more than BUNDLE_OVER
    recurrent edges, as after width-wise growth of a recurrent stack, where every sibling reads
    every other's state)."""
    import graphviz

    labels = {int(k): v for k, v in (labels or {}).items()}  # (JSON keys are strings)
    shapes = {int(k): v for k, v in (shapes or {}).items()}
    g = graphviz.Digraph("genlab", graph_attr={"rankdir": "LR", "nodesep": "0.15", "ranksep": "0.5",
                                               "fontname": "Helvetica", "fontsize": str(fontsize + 2),
                                               "size": MAX_SIZE},  # larger drawings scale down to fit
                         node_attr={"fontname": "Helvetica", "fontsize": str(fontsize), "style": "filled"},
                         edge_attr={"arrowsize": "0.4"})
    colours, (lo, hi) = _std_colours({k: v for k, v in (stats or {}).items() if k in widths}, scale)
    highlight = highlight or {}
    max_width = max(widths.values())
    delayed = {(s, d): k for s, d, k in delays}
    bundles, boxed = _bundles(edges, levels, delayed, bundle)
    for level in sorted(set(levels.values())):
        with g.subgraph(name=f"cluster_level{level}" if level in boxed else f"level{level}") as rank:
            rank.attr(rank="same", **(dict(color="#bbbbbb", style="rounded") if level in boxed else {}))
            for n in sorted(k for k in widths if levels[k] == level):
                rank.node(f"g{n}", **_node(n, widths[n], max_width, colours.get(n), labels.get(n, widths[n]),
                                           shapes.get(n), highlight.get(n), preview))
    _edges(g, edges, delayed, bundles, boxed, edge_style, fontsize)
    legend = _legend(bool(delayed), bool(bundles), bool(edge_style),
                     any(n not in (INPUT, OUTPUT) and n not in shapes for n in widths),
                     (lo, hi) if colours else None, highlight, preview, caption)
    if legend and show_legend:
        g.attr(label=f'<<table border="0" cellspacing="2">{"".join(legend)}</table>>', labelloc="b")
    return g
