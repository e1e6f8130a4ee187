"""The dashboard's buttons, pressed from a test, step training and update the panels."""

import numpy as np
import pytest

import genlab
from genlab import GrowthPolicy, Lab, Network, Trainer


@pytest.fixture
def lab():
    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", lr=0.01, batch_size=16, seed=0,
                      growth=GrowthPolicy(threshold=0.0, every=None, cooldown=0, max_groups=12))
    return Lab(trainer, data, refresh_every=10)


def test_buttons_step_run_grow_and_reset(lab):
    assert "step 0" in lab.status.value and "<svg" in lab.dag.value
    lab.step_button.click()
    assert lab.trainer.step_count == 1 and "step 1" in lab.status.value
    assert lab.heat.value[:8] == b"\x89PNG\r\n\x1a\n" and lab.curves.value[:8] == b"\x89PNG\r\n\x1a\n"
    lab.n.value = 30
    lab.run_button.click()
    assert lab.trainer.step_count == 31 and lab.progress.value == 30 and "step 31" in lab.status.value
    before = lab.dag.value
    lab.grow_button.click()
    assert lab.trainer.history.events and len(lab.trainer.net.groups) > 3
    assert lab.dag.value != before and genlab.viz.NEW_KIND["depth"] in lab.dag.value  # the new group, outlined
    assert lab.scrub.max == 1 and lab.play.max == 1
    lab.reset_button.click()
    assert lab.trainer.step_count == 0 and len(lab.trainer.net.groups) == 3 and "step 0" in lab.status.value


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
