"""The dashboard's buttons, pressed from a test, step training and update the panels."""

import re

import numpy as np
import pytest

import genlab
from genlab import DataError, GrowthPolicy, Lab, Network, Trainer
from genlab.lab import EMPTY

PNG = b"\x89PNG\r\n\x1a\n"


def words(widget) -> str:
    """An HTML widget's text, without its tags."""
    return re.sub(r"<[^>]+>", "", widget.value)


@pytest.fixture
def lab():
    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", lr=0.01, batch_size=16, seed=0,
                      growth=GrowthPolicy(threshold=0.0, every=None, cooldown=0, max_groups=12))
    return Lab(trainer, data, refresh_every=10, min_interval=0.0)


def test_buttons_step_run_grow_and_reset(lab):
    assert "step 0" in lab.status.value and "<svg" in lab.dag.value
    lab.step_button.click()
    assert lab.trainer.step_count == 1 and "step 1" in lab.status.value
    assert all(bytes(p.value[:8]) == PNG for p in (lab.heat, lab.loss, lab.accuracy))
    assert (lab.heat_panel.children, lab.loss_panel.children, lab.accuracy_panel.children) == (
        (lab.heat,), (lab.loss,), (lab.accuracy,))
    lab.n.value = 30
    lab.run_button.click()
    assert lab.trainer.step_count == 31 and lab.progress.value == 30 and "step 31" in lab.status.value
    before = lab.dag.value
    lab.grow_button.click()
    assert lab.trainer.history.events and len(lab.trainer.net.groups) > 3
    assert lab.dag.value != before and genlab.viz.NEW_KIND["depth"] in lab.dag.value  # the new group, outlined
    assert lab.scrub.max == 1 and lab.play.max == 1 and words(lab.message) == (
        f"step 31: group 2 duplicated depth-wise into group 3: grad_std {lab.trainer.history.events[0]['statistic']:.2g}"
        " > threshold 0")
    lab.reset_button.click()
    assert lab.trainer.step_count == 0 and len(lab.trainer.net.groups) == 3 and "step 0" in lab.status.value


def test_the_empty_state_says_what_to_do(lab):
    """Before the first step: no broken pictures, no "loss nan"."""
    assert "nan" not in lab.status.value and "loss &mdash;" in lab.status.value
    assert [c.value for c in lab.heat_panel.children + lab.loss_panel.children] == [EMPTY, ""]


def test_reset_resets_the_trainer_you_passed_and_clears_every_panel(lab):
    trainer, net = lab.trainer, lab.trainer.net
    start = {k: v.copy() for k, v in net.weights.items()}
    lab.run(12)
    lab.grow()
    assert trainer.step_count == 12 and len(net.groups) > 3 and lab.progress.value == lab.progress.max == 12
    lab.reset()
    assert lab.progress.value == 0  # not left full
    assert lab.trainer is trainer and trainer.step_count == 0 and not trainer.history.steps
    assert trainer.net is net and len(net.groups) == 3 and not net.history
    for key, w in start.items():
        np.testing.assert_array_equal(net.weights[key], w)
    assert [c.value for c in lab.heat_panel.children + lab.loss_panel.children] == [EMPTY, ""]
    assert lab.scrub.max == 0 and "step 0" in lab.status.value
    lab.run(12)  # and it trains the same way again: the same batches, the same steps
    assert trainer.step_count == 12


def test_grow_now_says_why_nothing_grew(lab):
    lab.threshold.value = 10.0
    lab.step()
    assert lab.grow() == []
    message = words(lab.message)
    assert message.startswith("no growth: no group above 1.0e+01; highest grad_std at the last step:")
    top = max(lab.trainer.net.hidden_groups, key=lambda g: lab.trainer.engine.stats["grad_std"][g])
    assert f"group {top}" in message


def test_preview_outlines_what_the_next_check_would_grow_and_changes_nothing(lab):
    lab.run(3)
    plan = lab.trainer.preview_growth()
    assert plan and {kind for _, kind, _ in plan} <= {"depth", "width"}
    before = (lab.trainer.net.topology(), lab.trainer.step_count, dict(lab.trainer.grower.cool_until))
    lab.preview_button.value = True
    caption = words(lab.dag_legend)
    assert f"the next growth check would grow: {plan[0][0]} ({plan[0][1]}-wise)" in caption
    assert f"{plan[0][1]}-wise: would grow at the next check" in caption and 'stroke-dasharray' in lab.dag.value
    assert (lab.trainer.net.topology(), lab.trainer.step_count, dict(lab.trainer.grower.cool_until)) == before
    events = lab.grow()
    assert [(e.source, e.kind) for e in events] == [(g, kind) for g, kind, _ in plan]


def test_the_labs_batches_are_fits(lab):
    """Evened out as fit's: no remainder batch much smaller than the rest."""
    X, _ = lab.data.train
    sizes = [len(lab._batch()[0]) for _ in range(-(-len(X) // lab.trainer.batch_size))]
    assert sum(sizes) == len(X) and max(sizes) - min(sizes) <= 1


def test_quick_clicks_redraw_the_pictures_at_most_every_min_interval():
    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", seed=0)
    lab = Lab(trainer, data, min_interval=3600.0)
    lab.step()  # the first pictures: at once
    first = bytes(lab.heat.value)
    assert first[:8] == PNG
    for _ in range(5):
        lab.step()
    assert "step 6" in lab.status.value and bytes(lab.heat.value) == first and lab._pending
    lab.min_interval = 0.0
    lab.step()
    assert bytes(lab.heat.value) != first and not lab._pending


def test_your_own_data_as_arrays_or_a_dataframe():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    names = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "answer": names})
    for data, label in (((X, names), None), (frame, "answer")):
        lab = Lab(Trainer(Network.mlp([3, 4, 2], seed=0), backend="serial"), data, label=label, min_interval=0.0)
        assert lab.data.classes == ("no", "yes") and lab.data.n_features == 3
        assert "2 classes (no, yes)" in lab.status.value  # the names the data gave, not 0 and 1
        lab.run(5)
        assert lab.trainer.step_count == 5
    trainer = Trainer(Network.mlp([3, 4, 2], seed=0), backend="serial")
    frame["answer"] = (names == "yes").astype(int)
    trainer.fit(frame, "answer", epochs=1, progress=False)  # the trainer takes a frame and its label column
    assert trainer.step_count > 0
    with pytest.raises(DataError, match="no column 'label'"):
        trainer.fit(frame, "label")
    with pytest.raises(DataError, match="needs label="):
        Lab(trainer, frame)
    with pytest.raises(DataError, match="2 features but the network's input group has width 3"):
        Lab(trainer, (X[:, :2], names))


def test_sliders_and_mode_reach_the_trainer(lab):
    lab.lr.value = 0.05
    lab.threshold.value = 0.2
    lab.mode.value = "width"
    assert lab.trainer.lr == pytest.approx(0.05)
    assert lab.trainer.growth.threshold == pytest.approx(0.2) and lab.trainer.growth.mode == "width"
    lab.trainer.growth.threshold = 0.0
    lab.step_button.click()
    events = lab.grow_button.click() or lab.trainer.history.events
    assert {e["kind"] for e in events} == {"width"}


def test_scrubbing_shows_the_network_as_it_was(lab):
    lab.run(5)
    lab.grow()
    lab.run(5)
    lab.grow()
    grown = lab.dag.value
    lab.scrub.value = 0  # before any growth: three groups
    first = lab.dag.value
    assert first != grown and first.count('class="node"') == 3
    lab.scrub.value = 2
    assert lab.dag.value.count('class="node"') == len(lab.trainer.net.groups)


def test_in_jupyter_a_step_answers_at_once_and_the_pictures_follow():
    """On a running event loop (as in Jupyter's kernel), step() draws no picture itself; they are
    drawn from the loop, at most every min_interval."""
    import asyncio

    data = genlab.datasets.load("moons", seed=0)
    lab = Lab(Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", seed=0), data, min_interval=0.05)

    async def clicks():
        lab.step()
        assert lab._pending and lab.heat_panel.children == lab._empty[:1]  # not drawn inside the click
        await asyncio.sleep(0.2)
        assert not lab._pending and bytes(lab.heat.value[:8]) == PNG
        drawn = bytes(lab.heat.value)
        for _ in range(3):
            lab.step()
        assert bytes(lab.heat.value) == drawn  # three quick clicks: one redraw, later
        await asyncio.sleep(0.2)
        assert bytes(lab.heat.value) != drawn and "step 4" in lab.status.value

    asyncio.run(clicks())


def test_nothing_outside_the_lab_can_close_its_figures():
    """matplotlib-inline closes every pyplot figure after each cell, from whichever thread runs
    it; a Run that grew died when its figure was closed while it drew. genlab's pictures are not
    pyplot's: none is in pyplot's list as it is made, and a Run with growth draws on while
    another thread keeps closing all of pyplot's figures."""
    import threading

    import matplotlib.pyplot as plt

    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", lr=0.01, seed=0,
                      growth=GrowthPolicy(every=10, cooldown=0, max_groups=10))
    lab = Lab(trainer, data, refresh_every=3, min_interval=0.0)
    done = threading.Event()
    def close_all():  # as often as a busy kernel's cells could, leaving the GIL between closes
        while not done.wait(0.001):
            plt.close("all")

    closer = threading.Thread(target=close_all)
    closer.start()
    try:
        lab.run(90)
    finally:
        done.set()
        closer.join()
    assert len(trainer.history.events) >= 5 and bytes(lab.heat.value[:8]) == PNG
    for make in (lambda: genlab.viz.heatmap(trainer.history, trainer.net), lambda: genlab.viz.curves(trainer.history),
                 lambda: genlab.viz.decision_boundary(trainer, data)):
        fig = make()
        assert plt.get_fignums() == [] and fig._repr_png_()[:8] == PNG


def test_every_growth_event_is_announced_with_its_statistic_and_rule():
    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", lr=0.01, seed=0,
                      growth=GrowthPolicy(every=5, cooldown=0, max_groups=12, mode="width"))
    lab = Lab(trainer, data, refresh_every=100, min_interval=0.0)
    for _ in range(4):
        lab.step()
    assert lab.message.value == ""  # no check yet
    lab.step()
    (event,) = trainer.history.events
    assert words(lab.message) == (f"step 5: group 2 duplicated width-wise into group 3: grad_std "
                                 f"{event['statistic']:.2g}, the highest")
    lab.run(40)
    lines = re.sub(r"<(?!br)[^>]+>", "", lab.message.value).split("<br>")
    assert len(trainer.history.events) == 9 and lines[0] == "(and 5 more growth events)" and len(lines) == 4
    assert [line.split(":")[0] for line in lines[1:]] == [f"step {e['step']}" for e in trainer.history.events[-3:]]


def test_run_n_goes_on_in_the_background_and_stops_when_asked():
    """In Jupyter (a running event loop) Run N returns at once and steps in slices between which
    the loop answers clicks: Step, Grow now and Reset wait, disabled; Stop ends the run."""
    import asyncio

    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", seed=0,
                      growth=GrowthPolicy(every=50, cooldown=0, max_groups=6))
    lab = Lab(trainer, data, refresh_every=25, min_interval=0.05)

    async def session():
        lab.n.value = 100_000
        lab.run_button.click()
        assert trainer.step_count < 100_000 and lab._task is not None  # it returned at once
        assert lab.step_button.disabled and lab.grow_button.disabled and lab.reset_button.disabled
        assert not lab.stop_button.disabled and lab.progress.description == "running"
        await asyncio.sleep(0.5)
        assert trainer.step_count > 0  # it ran while this coroutine slept
        lab.stop_button.click()
        await lab._task
        taken = trainer.step_count
        assert 0 < taken < 100_000 and f"stopped after {taken} of 100000 steps" in lab.message.value
        assert not lab.step_button.disabled and lab.stop_button.disabled and f"step {taken}" in lab.status.value
        assert lab.progress.description == ""
        lab.n.value = 30
        lab.run_button.click()
        await lab._task
        assert trainer.step_count == taken + 30 and "stopped" not in lab.message.value

    asyncio.run(session())


def test_an_error_during_a_background_run_is_shown_in_the_lab():
    import asyncio

    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", seed=0)
    lab = Lab(trainer, data, min_interval=0.0)

    def broken(*args):
        raise genlab.TrainingError("this step's loss is not finite")

    trainer.step = broken

    async def session():
        lab.start(10)
        await lab._task

    asyncio.run(session())
    assert words(lab.message) == "Run N stopped at step 0: this step&#x27;s loss is not finite"
    assert not lab.run_button.disabled


def test_the_dag_is_coloured_live_on_the_heatmaps_scale_and_says_what_it_shows(lab):
    """Every redraw colours the groups by the last step's gradient std on the heatmap's colour
    scale (its ends in the DAG's colour bar), not only after a growth event; the legend says what
    a node's label, its fill and an edge's colour mean."""
    lab.step()
    first = lab.dag.value
    lo, hi = lab._heatmap.scale
    legend = words(lab.dag_legend)
    assert f"{lo:.1e}" in legend and f"{hi:.1e}" in legend and "on the heatmap's scale" in legend
    assert "a circle: a group, its number over its width" in legend and "mean weight &gt; 0" in legend
    assert "max-width:100%" in first  # scaled to its panel, never scrolled
    lab.run(5)
    assert not lab.trainer.history.events and lab.dag.value != first  # no growth, new colours
    last = lab.trainer.history.grad_std[-1]
    colours, _ = genlab.viz._std_colours(last, lab._heatmap.scale)
    g = lab.trainer.net.hidden_groups[0]
    assert colours[g] in lab.dag.value


def test_the_pictures_are_updated_in_place_and_rebuilt_when_the_network_grows(lab):
    lab.run(3)
    heat, loss = lab._heatmap.fig, lab._curves[0].fig
    drawn = bytes(lab.heat.value)
    lab.run(3)
    assert lab._heatmap.fig is heat and lab._curves[0].fig is loss and bytes(lab.heat.value) != drawn
    lab.grow()
    assert lab._heatmap.fig is not heat  # a new row
    matrix = genlab.viz.heatmap_matrix(lab.trainer.history, lab.trainer.net)[2]
    np.testing.assert_array_equal(np.ma.filled(lab._heatmap._image.get_array(), np.nan), matrix)


def test_the_pictures_text_is_readable_from_the_back_of_a_room(lab):
    """Drawn PANEL_PX wide (the narrowest panel: the browser only scales them up), every piece of
    text in the heatmap and the curves is 14 px or more."""
    from matplotlib.text import Text

    from genlab.lab import pictures

    lab.run(30)
    lab.grow()
    lab.run(5)
    for fig in (lab._heatmap.fig, *(c.fig for c in lab._curves)):
        assert round(fig.get_figwidth() * fig.dpi) == pictures.PANEL_PX
        texts = [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
        assert len(texts) > 5 and min(t.get_fontsize() * fig.dpi / 72 for t in texts) >= 14


def test_the_slider_steps_through_growth_events():
    """Two groups grow at one check: two events, two frames on the slider."""
    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 4, 2], seed=0), backend="serial", lr=0.01, seed=0,
                      growth=GrowthPolicy(every=None, cooldown=0, max_groups=12, mode="width"))
    lab = Lab(trainer, data, min_interval=0.0)
    lab.run(3)
    trainer.grow(groups=trainer.net.hidden_groups[:2])
    lab.refresh()
    assert len(trainer.history.events) == 2 and lab.scrub.max == 2 and "2 growth events" in lab.status.value
    lab.scrub.value = 1  # after the first event only: one more group than at the start
    assert lab.dag.value.count('class="node"') == 5
    lab.scrub.value = 2
    assert lab.dag.value.count('class="node"') == 6


def test_the_librarys_notes_go_to_the_labs_message_not_stderr(capsys):
    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", seed=0,
                      growth=GrowthPolicy(every=2, cooldown=0, max_groups=4))
    lab = Lab(trainer, data, min_interval=0.0)
    lab.run(6)
    assert "growth stopped at step 4: the network reaches its budget, max_groups=4" in words(lab.message)
    assert "growth stopped" not in capsys.readouterr().err


def test_in_jupyter_a_note_is_a_grey_line_not_stderrs_pink_box(monkeypatch, capsys):
    import IPython.display

    from genlab import notices

    shown = []
    monkeypatch.setattr(notices, "_in_kernel", lambda: True)
    monkeypatch.setattr(IPython.display, "display", shown.append)
    notices.say("genlab: using the serial engine (pycuda is not installed)")
    assert capsys.readouterr().err == "" and len(shown) == 1
    assert "using the serial engine (pycuda is not installed)" in shown[0].data and "color:#555" in shown[0].data
    monkeypatch.setattr(notices, "_in_kernel", lambda: False)
    notices.say("genlab: a note")
    assert capsys.readouterr().err == "genlab: a note\n"


def test_a_network_without_hidden_groups_says_why_its_heatmap_is_empty():
    data = genlab.datasets.load("iris", seed=0)
    lab = Lab(Trainer(Network.mlp([4, 3], seed=0), backend="serial", seed=0), data, min_interval=0.0)
    lab.run(5)
    assert lab.heat_panel.children == (lab._no_rows,) and "no hidden group" in lab._no_rows.value
    assert bytes(lab.loss.value[:8]) == PNG
    assert lab.grow() == [] and "the network has no hidden group" in words(lab.message)
    assert "3 classes (setosa, versicolor, virginica)" in lab.status.value  # scikit-learn's names
    with pytest.raises(ValueError, match="no hidden group"):
        genlab.viz.heatmap(lab.trainer.history, lab.trainer.net)


def test_the_labs_heatmap_shows_a_long_run_in_a_bounded_number_of_columns():
    """A long history is drawn from every k-th record (the newest kept, evenly spaced): a redraw
    costs the same after 3,000 steps as after 300, and the picture spans the whole run."""
    from genlab.lab import pictures

    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", seed=0)
    lab = Lab(trainer, data, refresh_every=10**6, min_interval=0.0)
    lab.run(3000)
    image = lab._heatmap._image
    columns = image.get_array().shape[1]
    assert pictures.COLUMNS // 2 < columns <= pictures.COLUMNS
    left, right = image.get_extent()[:2]
    assert left < 10 and right >= 3000  # the whole run
    view = pictures.Thinned(trainer.history, pictures.COLUMNS)
    steps = [s["step"] for s in view.steps]
    assert steps[-1] == 3000 and len(set(np.diff(steps))) == 1 and view.stride == steps[1] - steps[0]


def test_the_first_pictures_come_at_once_on_a_machine_just_booted(monkeypatch):
    """perf_counter counts from boot: a Lab on a machine up for less than min_interval still
    draws its first pictures at the first step."""
    from genlab.lab import dashboard

    monkeypatch.setattr(dashboard.time, "perf_counter", lambda: 5.0)  # five seconds after boot
    data = genlab.datasets.load("moons", seed=0)
    lab = Lab(Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", seed=0), data, min_interval=3600.0)
    lab.step()
    assert lab.loss.value[:8] == PNG and "(step 0)" not in lab.status.value  # drawn, the test set measured now


def test_a_click_does_not_wait_for_the_test_set():
    """The test accuracy is measured with the pictures (at most every min_interval); between
    them the status line says at which step it was measured."""
    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", seed=0)
    lab = Lab(trainer, data, min_interval=3600.0)
    lab.step()  # the first pictures: at once, with the test set
    calls = []
    evaluate = trainer.evaluate
    trainer.evaluate = lambda *a: calls.append(1) or evaluate(*a)
    for _ in range(3):
        lab.step()
    assert calls == [] and "step 4" in lab.status.value and "(step 1)" in lab.status.value
    lab.refresh()
    assert calls == [1] and "(step" not in lab.status.value


@pytest.mark.parametrize("backend, pipelined", [("serial", False), ("cuda", False), ("serial", True),
                                                ("cuda", True)])
def test_a_lab_with_synthetic_gradients_shows_the_cuts_and_each_modules_error(request, backend, pipelined):
    """On the serial engine and on the CUDA engine (its kernels' CPU build), pipelined or not."""
    from matplotlib.text import Text

    from genlab.lab import pictures

    if backend == "cuda":
        request.getfixturevalue("cpu_gpu")
    data = genlab.datasets.load("digits")
    net = Network.mlp([data.n_features, 12, 10, data.n_classes], seed=0)
    trainer = Trainer(net, backend=backend, seed=0,
                      decouple=genlab.DNI(net.hidden_groups, conditioned=True, pipelined=pipelined),
                      growth=GrowthPolicy(threshold=0.0, every=20, cooldown=0, max_groups=8))
    lab = Lab(trainer, data, refresh_every=10, min_interval=0.0)
    assert lab.modules_panel in lab.widget.children[4].children  # a fifth picture panel
    lab.run(45)
    cut = trainer.engine.crossing
    assert trainer.history.events and cut
    assert "synthetic gradients at the cuts after groups" in words(lab.status)
    assert ("pipelined" in words(lab.status)) == pipelined
    assert "thick black edges" in words(lab.dag_legend)
    # each crossing edge is drawn thick and black (its line and its arrowhead), no other edge is
    assert lab.dag.value.count('stroke="#000000"') == 2 * len(cut)
    assert lab.modules_panel.children == (lab.modules,) and bytes(lab.modules.value).startswith(PNG)
    fig = lab._modules.fig
    labels = [t.get_text() for t in fig.findobj(Text)]
    assert {f"group {g}" for g in trainer.engine.boundary} <= set(labels)
    texts = [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
    assert round(fig.get_figwidth() * fig.dpi) == pictures.PANEL_PX
    assert min(t.get_fontsize() * fig.dpi / 72 for t in texts) >= 14
    lab.reset()  # a fresh engine: no errors yet, the panel empty again
    assert lab.modules_panel.children != (lab.modules,)


def test_a_lab_without_synthetic_gradients_has_no_module_panel(lab):
    assert lab.modules_panel not in lab.widget.children[4].children
    lab.run(5)
    assert "synthetic" not in words(lab.status) and "thick black" not in words(lab.dag_legend)


@pytest.mark.parametrize("threshold", [None, 0.0, 3e-3])
def test_the_browser_sending_the_sliders_value_back_leaves_the_policy_alone(threshold):
    """The browser snaps the threshold slider's value to its grid and sends it back: that is not a
    move. A move of a step is."""
    import math

    trainer = Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial",
                      growth=GrowthPolicy(threshold=threshold, every=None))
    lab = Lab(trainer, genlab.datasets.load("moons", seed=0))
    shown = lab.threshold.value
    assert shown == (5e-3 if threshold is None else max(threshold, 1e-6))
    step = lab.threshold.step
    lab.threshold.value = 10 ** (round(math.log10(shown) / step) * step)  # the grid's nearest value, sent back
    assert trainer.growth.threshold == threshold
    lab.threshold.value = lab.threshold.value * 10 ** step  # the student moves it one step up
    assert trainer.growth.threshold == pytest.approx(lab.threshold.value)
