import io

import numpy as np
import pytest
from PIL import Image

import genlab
from genlab import INPUT, OUTPUT, GrowthPolicy, Network, Trainer, viz
from genlab import drawing as drawing_module

EXPECTED_DOT = '''digraph genlab {
	graph [fontname=Helvetica fontsize=11 nodesep=0.15 rankdir=LR ranksep=0.5 size="9.5,40"]
	node [fontname=Helvetica fontsize=9 style=filled]
	edge [arrowsize=0.4]
	subgraph level0 {
		rank=same
		g0 [label="input
2" fillcolor="#dddddd" fixedsize=false height=0.79 shape=box width=0.79]
	}
	subgraph level1 {
		rank=same
		g2 [label="2
3" fillcolor="#440154" fixedsize=true fontcolor=white height=0.90 shape=circle width=0.90]
	}
	subgraph level2 {
		rank=same
		g3 [label="3
1" color="#d55e00" fillcolor="#fde725" fixedsize=true height=0.62 penwidth=3 shape=circle width=0.62]
	}
	subgraph level3 {
		rank=same
		g1 [label="output
2" fillcolor="#dddddd" fixedsize=false height=0.79 shape=box width=0.79]
	}
	g0 -> g2 [color="#1f77b4" penwidth=1.96]
	g2 -> g3 [color="#ff7f0e" penwidth=2.60]
	g3 -> g1 [color="#1f77b4" penwidth=4.00]
	label=<<table border="0" cellspacing="2"><tr><td colspan="8">edges: <font color="#1f77b4">mean weight &gt; 0</font>, <font color="#ff7f0e">mean weight &lt; 0</font>; thicker: a larger weight norm</td></tr><tr><td colspan="8">a circle: a group, its number over its width (neurons)</td></tr><tr><td>fill: gradient std 1.0e-02</td><td bgcolor="#440154" width="14"> </td><td bgcolor="#414487" width="14"> </td><td bgcolor="#2a788e" width="14"> </td><td bgcolor="#22a884" width="14"> </td><td bgcolor="#7ad151" width="14"> </td><td bgcolor="#fde725" width="14"> </td><td>1.0e-01 (log scale)</td></tr><tr><td colspan='8'><font color="#d55e00">new (depth-wise)</font></td></tr></table>> labelloc=b
}
'''


def known_network():
    net = Network(2, 2, seed=0)
    a = net.add_group(3, inputs=[INPUT])
    b = net.add_group(1, inputs=[a], outputs=[OUTPUT])
    net.weights[(INPUT, a)][:] = 0.5   # positive: blue; norms set the widths
    net.weights[(a, b)][:] = -1.0      # negative: orange
    net.weights[(b, OUTPUT)][:] = 2.0
    return net, a, b


def test_dot_of_a_known_network_is_exactly_as_expected():
    net, a, b = known_network()
    drawing = viz.draw(net, stats={a: 0.01, b: 0.1, OUTPUT: 0.05}, highlight={b: "depth"})
    assert drawing.source == EXPECTED_DOT
    assert viz.draw(net.copy(), stats={a: 0.01, b: 0.1, OUTPUT: 0.05}, highlight={b: "depth"}).source == EXPECTED_DOT
    # on a given scale (the lab's: the heatmap's), a value beyond it takes its end; no legend on request
    lab = viz.draw(net, stats={a: 0.01, b: 0.1}, scale=(0.001, 0.01), fontsize=14, legend=False).source
    assert 'g2 [label="2\n3" fillcolor="#fde725"' in lab and 'g3 [label="3\n1" fillcolor="#fde725"' in lab
    assert "fontsize=14" in lab and "label=<" not in lab


@pytest.fixture(scope="module")
def grown():
    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", lr=0.01, seed=0,
                      growth=GrowthPolicy(threshold=0.0, every=40, cooldown=40, max_groups=9))
    trainer.fit(*data.train, epochs=12, validation=data.test, progress=False)
    assert trainer.history.events
    return trainer, data


def test_draw_highlights_the_last_growth_event_and_renders(grown, tmp_path):
    trainer, _ = grown
    last = trainer.history.events[-1]
    drawing = viz.draw(trainer.net, stats=trainer.history.grad_std[-1])
    assert f'g{last["new"]} [' in drawing.source and viz.NEW_KIND[last["kind"]] in drawing.source
    assert drawing.svg().lstrip().startswith(("<?xml", "<svg"))
    path = drawing.save(tmp_path / "dag.png")
    assert Image.open(path).format == "PNG"
    assert "image/svg+xml" in drawing._repr_mimebundle_()


def test_a_missing_dot_program_gives_one_line_and_the_source(grown, tmp_path, monkeypatch, capsys):
    import graphviz

    def no_dot(*args, **kwargs):
        raise graphviz.ExecutableNotFound(["dot"])

    monkeypatch.setattr(graphviz.Digraph, "pipe", no_dot)
    monkeypatch.setattr(drawing_module, "_warned", False)
    trainer, _ = grown
    drawing = viz.draw(trainer.net)
    assert drawing.svg() is None and drawing.png() is None
    bundle = drawing._repr_mimebundle_()
    assert bundle["text/plain"].startswith("genlab: Graphviz's dot program is not installed")
    assert drawing.source in bundle["text/plain"]
    assert drawing.save(tmp_path / "dag.svg").read_text() == drawing.source  # written as dag.dot
    assert (tmp_path / "dag.dot").exists()
    paths = viz.animate(trainer.history, tmp_path)
    assert "gif" not in paths and "digraph" in paths["html"].read_text()
    assert capsys.readouterr().err.count("dot program is not installed") == 1


def test_heatmap_curves_and_boundary_are_images(grown, tmp_path):
    trainer, data = grown
    for name, fig in (("heatmap", viz.heatmap(trainer.history, trainer.net)), ("curves", viz.curves(trainer.history)),
                      ("boundary", viz.decision_boundary(trainer, data))):
        fig.savefig(tmp_path / f"{name}.png")
        image = Image.open(tmp_path / f"{name}.png")
        image.verify()
        assert image.format == "PNG"
    groups, level, matrix = viz.heatmap_matrix(trainer.history, trainer.net)
    assert [level[g] for g in groups] == sorted(level[g] for g in groups)  # rows by level
    first = trainer.history.events[0]
    row = matrix[groups.index(first["new"])]
    # a group's row is empty before the step that made it (its statistic appears the step after)
    assert np.isnan(row[:first["step"]]).all() and np.isfinite(row[first["step"]:]).all()
    with pytest.raises(ValueError, match="2-D dataset"):
        viz.decision_boundary(trainer, genlab.datasets.load("iris"))


def test_animation_has_a_frame_per_growth_event_or_per_growth_step(tmp_path):
    """Two groups grow at each check: a frame per event shows them arrive one at a time (each
    event records the topology it left), a frame per step both at once."""
    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 4, 2], seed=0), backend="serial", lr=0.01, seed=0,
                      growth=GrowthPolicy(every=None, cooldown=0, max_groups=10, mode="width"))
    for _ in range(2):
        trainer.fit(*data.train, epochs=1, progress=False)
        trainer.grow(groups=trainer.net.hidden_groups[:2])
    events = trainer.history.events
    steps = sorted({e["step"] for e in events})
    assert len(events) == 2 * len(steps) >= 4
    for a, b in zip(events, events[1:]):  # a chain: each event starts from the topology the last one left
        assert b["before"] == a["after"] and len(b["after"]["widths"]) == len(a["after"]["widths"]) + 1
    assert events[-1]["after"] == trainer.net.topology()
    paths = viz.animate(trainer.history, tmp_path, name="g")
    assert Image.open(paths["gif"]).n_frames == len(events) + 1
    page = paths["html"].read_text()
    assert page.count("step ") >= len(events) and "data:image/svg+xml;base64" in page
    per_event, per_step = viz.frames(trainer.history), viz.frames(trainer.history, each_event=False)
    assert [d.caption.split(" ·")[0] for d in per_event] == ["step 0"] + [f"step {e['step']}" for e in events]
    assert [d.caption.split(" ·")[0] for d in per_step] == ["step 0"] + [f"step {s}" for s in steps]
    assert [d.caption.split(" · ")[1] for d in per_event[:3]] == [f"{n} groups" for n in (4, 5, 6)]
    assert Image.open(viz.animate(trainer.history, tmp_path, name="s", each_event=False)["gif"]).n_frames == \
        len(steps) + 1


def test_pictures_carry_the_legends_a_student_needs():
    """The DAG says what an edge's colour and thickness mean; the heatmap and the curves say what
    their red and green lines are."""
    import genlab
    from genlab import GrowthPolicy, Network, Trainer, viz

    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", seed=0,
                      growth=GrowthPolicy(every=10, threshold=0.0, cooldown=0, mode="alternate", max_groups=8))
    trainer.fit(*data.train, epochs=2, progress=False)
    source = viz.draw(trainer.net).source
    assert "mean weight &gt; 0" in source and "mean weight &lt; 0" in source and "weight norm" in source
    labels = lambda fig: {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()}
    heat, curves = viz.heatmap(trainer.history, trainer.net), viz.curves(trainer.history)
    for fig in (heat, curves):
        assert {"growth step (depth-wise)", "growth step (width-wise)"} <= labels(fig)
    assert "train (mean of 20 steps)" in labels(curves)


def test_the_animation_shows_inline_and_writes_no_file(grown, tmp_path, monkeypatch):
    """Shown as HTML holding the GIF, so that it plays in JupyterLab and in an exported page."""
    import base64

    monkeypatch.chdir(tmp_path)
    trainer, _ = grown
    shown = viz.animation(trainer.history)
    page = shown._repr_html_()
    assert page.startswith('<img src="data:image/gif;base64,') and list(tmp_path.iterdir()) == []
    gif = base64.b64decode(page.split("base64,")[1].split('"')[0])
    assert gif[:6] == b"GIF89a" and Image.open(io.BytesIO(gif)).n_frames == shown.frames == len(viz.frames(trainer.history))


def test_a_widened_recurrent_stack_is_drawn_level_to_level():
    """Width-wise growth of a recurrent stack makes every sibling read every other's state: 49
    recurrent edges for 7 + 7 groups. Drawn one by one they are a tangle; drawn as one edge per
    pair of levels, between boxes around the levels, with the count, a student can read them."""
    net = Network.elman(4, [3, 3], 2, seed=0)
    first, second = net.topological_order()[1:3]
    for _ in range(6):
        for g in (first, second):
            genlab.growth.duplicate_width(net, g, step=1, seed=0)
    assert len(net.delays) > viz.BUNDLE_OVER
    source = viz.draw(net).source
    levels = net.levels()
    within = [sum(1 for s, d in net.delays if levels[s] == levels[d] == v) for v in (1, 2)]
    assert source.count("->") == 5  # input to layer 1, layer 1 to 2, 2 to output; each layer's recurrence
    assert "cluster_level1" in source and "cluster_level2" in source and "compound=true" in source
    assert all(f"t-1 \u00d7{n}" in source for n in within) and "\u00d749" in source and "\u00d77" in source
    plain = viz.draw(net, bundle=False).source
    assert plain.count("->") == len(net.edges) and "cluster" not in plain
    small = Network.elman(4, [3, 3], 2, seed=0)
    assert "cluster" not in viz.draw(small).source  # a few recurrent edges: drawn one by one
