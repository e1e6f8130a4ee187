"""The DOT graph of a recurrent network unrolled over its steps, as textbooks draw an RNN: time
from left to right (one column of cells a step), the groups from the input at the bottom to the
output at the top, edges without a delay inside a column, an edge of delay k from column t - k
to column t (dashed). Each cell carries its wavefront stage (genlab.wavefront), so the cells
that can run together read off the picture; cells that cannot reach the loss are drawn faded.
Positions are fixed (Graphviz's neato with pinned nodes), so every step's column is the same."""

from __future__ import annotations

import html

from . import wavefront
from .errors import ArgumentError
from .network import INPUT, OUTPUT, Network
from .unroll import live_cells

COLUMN, ROW = 1.9, 1.15  # inches between steps, between groups
MAX_CELLS = 400
DELAYED = "#0072b2"  # Okabe-Ito blue: an edge read k steps later
SAME_STEP = "#555555"
FADED = "#bbbbbb"


def graph(net: Network, steps: int, caption: str = "", every_step: bool = False, fontsize: float = 11):
    """The graphviz.Digraph of `net` over `steps` steps (see the module's docstring)."""
    import graphviz

    rows = [g for g in net.topological_order() if g not in (INPUT, OUTPUT)]
    cells = wavefront.cells(net, steps, every_step)
    if len(cells) + steps > MAX_CELLS:
        raise ArgumentError(f"{len(cells) + steps} cells over {steps} steps are too many to draw "
                            f"(at most {MAX_CELLS}); draw fewer steps")
    stage = {cell: k + 1 for k, plan in enumerate(wavefront.stages(net, steps, every_step)) for cell in plan}
    live = live_cells(net, steps, every_step)
    g = graphviz.Digraph(engine="neato")
    g.attr(splines="true", overlap="true", outputorder="edgesfirst", fontname="Helvetica", fontsize=str(fontsize + 1))
    g.attr("node", fontname="Helvetica", fontsize=str(fontsize), style="filled", fillcolor="white")
    g.attr("edge", arrowsize="0.6")
    top = len(rows) + 1

    def node(name, x, y, label, **attrs):
        g.node(name, label, pos=f"{x * COLUMN:.2f},{y * ROW:.2f}!", **attrs)

    for t in range(steps):
        node(f"x{t}", t, 0, f"input\nx[t={t}]", shape="box", fillcolor="#dddddd", width="1.0")
        node(f"head{t}", t, top + 0.7, f"t = {t}", shape="plaintext", style="")
    for cell_g, t in cells:
        y = top if cell_g == OUTPUT else rows.index(cell_g) + 1
        faded = (cell_g, t) not in live
        label = f"{'output' if cell_g == OUTPUT else cell_g}\nstage {stage[(cell_g, t)]}"
        node(_name(cell_g, t), t, y, label, shape="box" if cell_g == OUTPUT else "circle", width="0.8",
             fixedsize="true", color=FADED if faded else "black", fontcolor=FADED if faded else "black",
             fillcolor="#dddddd" if cell_g == OUTPUT else "white")
    present = set(cells)
    for cell_g, t in cells:
        for s in net.inputs(cell_g):
            k = net.delay(s, cell_g)
            if t < k:
                continue  # it reads zeros
            tail = f"x{t - k}" if s == INPUT else _name(s, t - k)
            if s != INPUT and (s, t - k) not in present:
                continue
            faded = (cell_g, t) not in live
            colour = FADED if faded else (DELAYED if k else SAME_STEP)
            g.edge(tail, _name(cell_g, t), color=colour, style="dashed" if k else "solid",
                   penwidth="1.6" if k else "1.2")
    legend = [caption] if caption else []
    legend += [f"{steps} steps from left to right; solid: read in the same step; dashed blue: read k steps later",
               "stage n: the wavefront runs a cell as soon as the cells it reads are done, all cells of a stage together"]
    if len(live) < len(cells):
        legend.append("faded: cells that cannot reach the loss (skipped)")
    g.attr(label="<" + "<br/>".join(html.escape(line) for line in legend) + ">", labelloc="b")
    return g


def _name(group: int, t: int) -> str:
    return f"c{group}_{t}"
