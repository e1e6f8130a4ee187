"""The dashboard's buttons, pressed from a test, step training and update the panels."""

import numpy as np
import pytest

import genlab
from genlab import DataError, GrowthPolicy, Lab, Network, Trainer
from genlab.lab import EMPTY

PNG = b"\x89PNG\r\n\x1a\n"


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
    assert bytes(lab.heat.value[:8]) == PNG and bytes(lab.curves.value[:8]) == PNG
    assert lab.heat_panel.children == (lab.heat,) and lab.curves_panel.children == (lab.curves,)
    lab.n.value = 30
    lab.run_button.click()
    assert lab.trainer.step_count == 31 and lab.progress.value == 30 and "step 31" in lab.status.value
    before = lab.dag.value
    lab.grow_button.click()
    assert lab.trainer.history.events and len(lab.trainer.net.groups) > 3
    assert lab.dag.value != before and genlab.viz.NEW_KIND["depth"] in lab.dag.value  # the new group, outlined
    assert lab.scrub.max == 1 and lab.play.max == 1 and lab.message.value == (
        f"step 31: group 2 duplicated depth-wise into group 3: grad_std {lab.trainer.history.events[0]['statistic']:.2g}"
        " > threshold 0")
    lab.reset_button.click()
    assert lab.trainer.step_count == 0 and len(lab.trainer.net.groups) == 3 and "step 0" in lab.status.value


def test_the_empty_state_says_what_to_do(lab):
    """Before the first step: no broken pictures, no "loss nan"."""
    assert "nan" not in lab.status.value and "loss &mdash;" in lab.status.value
    assert [c.value for c in lab.heat_panel.children + lab.curves_panel.children] == [EMPTY, EMPTY]


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
    assert [c.value for c in lab.heat_panel.children + lab.curves_panel.children] == [EMPTY, EMPTY]
    assert lab.scrub.max == 0 and "step 0" in lab.status.value
    lab.run(12)  # and it trains the same way again: the same batches, the same steps
    assert trainer.step_count == 12


def test_grow_now_says_why_nothing_grew(lab):
    lab.threshold.value = 10.0
    lab.step()
    assert lab.grow() == []
    message = lab.message.value
    assert message.startswith("no growth: no group above 1.0e+01; highest grad_std at the last step:")
    top = max(lab.trainer.net.hidden_groups, key=lambda g: lab.trainer.engine.stats["grad_std"][g])
    assert f"group {top}" in message


def test_preview_outlines_what_the_next_check_would_grow_and_changes_nothing(lab):
    lab.run(3)
    plan = lab.trainer.preview_growth()
    assert plan and {kind for _, kind, _ in plan} <= {"depth", "width"}
    before = (lab.trainer.net.topology(), lab.trainer.step_count, dict(lab.trainer.grower.cool_until))
    lab.preview_button.value = True
    caption = lab.dag.value.replace("&#45;", "-")  # Graphviz writes its hyphens as entities
    assert f"the next growth check would grow: {plan[0][0]} ({plan[0][1]}-wise)" in caption
    assert f"would grow, dashed ({plan[0][1]}-wise)" in caption and 'stroke-dasharray' in lab.dag.value  # not "new"
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
    closer = threading.Thread(target=lambda: [plt.close("all") for _ in iter(done.is_set, True)])
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
    assert lab.message.value == (f"step 5: group 2 duplicated width-wise into group 3: grad_std "
                                 f"{event['statistic']:.2g}, the highest")
    lab.run(40)
    lines = lab.message.value.split("<br>")
    assert len(trainer.history.events) == 9 and lines[0] == "(and 3 more growth events)" and len(lines) == 6
    assert [line.split(":")[0] for line in lines[1:]] == [f"step {e['step']}" for e in trainer.history.events[-5:]]


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
        assert not lab.stop_button.disabled
        await asyncio.sleep(0.5)
        assert trainer.step_count > 0  # it ran while this coroutine slept
        lab.stop_button.click()
        await lab._task
        taken = trainer.step_count
        assert 0 < taken < 100_000 and f"stopped after {taken} of 100000 steps" in lab.message.value
        assert not lab.step_button.disabled and lab.stop_button.disabled and f"step {taken}" in lab.status.value
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
    assert lab.message.value == "Run N stopped at step 0: this step&#x27;s loss is not finite"
    assert not lab.run_button.disabled
