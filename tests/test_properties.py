"""Property-based: random sequences of what a user does to a network and its trainer (training
steps, growth events of either kind, edits of the graph, saves and loads of networks and of
checkpoints), checked after every move:

- the network validates and holds only finite parameters;
- growth keeps the function the network computes (to float32 rounding);
- a saved network loads back bit for bit, computing the same logits; a saved checkpoint resumes
  into a trainer whose next step is the original's, bit for bit;
- where a GPU is present, the CUDA engine's trainer, driven through the same moves, agrees with
  the serial engine's (the same tolerance as the GPU tests).

Run with more examples: GENLAB_PROPERTY_EXAMPLES=500 pytest tests/test_properties.py
"""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from genlab import GenlabError, GrowthPolicy, Network, Trainer
from genlab.backends import cuda_status

EXAMPLES = int(os.environ.get("GENLAB_PROPERTY_EXAMPLES", "15"))
CUDA = cuda_status()[0]


def logits(trainer, x) -> np.ndarray:
    return trainer.logits(x).astype(np.float64)


class UsingANetwork(RuleBasedStateMachine):
    """One network (dense or recurrent), its serial trainer, and its CUDA twin where a GPU is."""

    @initialize(recurrent=st.booleans(), seed=st.integers(0, 10_000), mode=st.sampled_from(["depth", "width"]))
    def start(self, recurrent, seed, mode):
        rng = np.random.default_rng(seed)
        self.recurrent = recurrent
        if recurrent:
            net = Network.elman(3, [4], 3, seed=seed)
            self.x = rng.normal(size=(24, 5, 3)).astype(np.float32)
        else:
            net = Network.random_dag(levels=2, per_level=2, width=(2, 5), fan_in=(1, 2), seed=seed, n_inputs=4,
                                     n_outputs=3)
            self.x = rng.normal(size=(24, 4)).astype(np.float32)
        self.y = rng.integers(0, 3, len(self.x))
        policy = GrowthPolicy(every=None, cooldown=0, max_groups=12, mode=mode)
        self.trainer = Trainer(net, backend="serial", seed=seed, lr=1e-2, batch_size=8, growth=policy)
        self.twin = (Trainer(net.copy(), backend="cuda", seed=seed, lr=1e-2, batch_size=8,
                             growth=GrowthPolicy(every=None, cooldown=0, max_groups=12, mode=mode)) if CUDA else None)
        self.folder = Path(tempfile.mkdtemp(prefix="genlab-properties-"))

    # ------------------------------------------------------------------ moves
    @rule(steps=st.integers(1, 3))
    def train(self, steps):
        for _ in range(steps):
            self.trainer.step(self.x[:8], self.y[:8])
            if self.twin is not None:
                self.twin.step(self.x[:8], self.y[:8])

    @precondition(lambda self: len(self.trainer.net.groups) < 12)
    @rule(pick=st.integers(0, 100))
    def grow(self, pick):
        hidden = self.trainer.net.hidden_groups
        g = hidden[pick % len(hidden)]
        before = logits(self.trainer, self.x)
        events = self.trainer.grow(groups=[g])
        assert [e.source for e in events] == [g]
        event(f"grew {events[0].kind}-wise ({'recurrent' if self.recurrent else 'dense'})")
        np.testing.assert_allclose(logits(self.trainer, self.x), before, rtol=1e-4, atol=1e-5)
        if self.twin is not None:
            self.twin.grow(groups=[g])
            assert self.twin.net.topology() == self.trainer.net.topology()

    @precondition(lambda self: not self.recurrent)
    @rule(width=st.integers(1, 4), pick=st.integers(0, 100))
    def add_a_group(self, width, pick):
        """An edit between steps: a new group between a random group and the output."""
        net = self.trainer.net
        source = net.groups[pick % len(net.groups)]
        if source == net.output:
            return
        for trainer in filter(None, (self.trainer, self.twin)):
            trainer.net.add_group(width, inputs=[source], outputs=[trainer.net.output])
        event("added a group")
        if self.twin is not None:  # the same new weights on both
            for key, w in self.trainer.net.weights.items():
                self.twin.net.weights[key] = w.copy()
            for key, b in self.trainer.net.biases.items():
                self.twin.net.biases[key] = b.copy()

    @rule()
    def save_and_load_the_network(self):
        net = self.trainer.net
        loaded = Network.load(net.save(self.folder / "net.npz"))
        event("loaded a network")
        assert loaded.topology() == net.topology() and loaded.history == net.history
        for key, w in net.weights.items():
            np.testing.assert_array_equal(loaded.weights[key], w)
        for key, b in net.biases.items():
            np.testing.assert_array_equal(loaded.biases[key], b)
        again = Trainer(loaded, backend="serial")
        np.testing.assert_array_equal(again.logits(self.x), self.trainer.logits(self.x))

    @rule()
    def save_and_resume_the_trainer(self):
        path = self.trainer.save(self.folder / "run.ckpt")
        resumed = Trainer.load(path, backend="serial")
        event("resumed a checkpoint")
        original = Trainer.load(path, backend="serial")  # the same state, stepped alongside
        for t in (resumed, original):
            t.step(self.x[8:16], self.y[8:16])
        for key, w in original.net.weights.items():
            np.testing.assert_array_equal(resumed.net.weights[key], w)
        assert resumed.step_count == self.trainer.step_count + 1

    # ------------------------------------------------------------------ what always holds
    @invariant()
    def valid_and_finite(self):
        net = self.trainer.net
        net.validate()
        assert all(np.isfinite(w).all() for w in net.weights.values())
        assert all(np.isfinite(b).all() for b in net.biases.values())

    @invariant()
    def the_gpu_agrees(self):
        if self.twin is None:
            return
        assert self.twin.net.topology() == self.trainer.net.topology()
        np.testing.assert_allclose(logits(self.twin, self.x), logits(self.trainer, self.x), rtol=2e-3, atol=2e-4)

    def teardown(self):
        for path in self.folder.glob("*"):
            path.unlink()
        self.folder.rmdir()


UsingANetwork.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=12, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
test_using_a_network = UsingANetwork.TestCase


def test_an_error_in_a_move_changes_nothing():
    """The machine's moves raise only genlab errors for what a user can get wrong; one such."""
    trainer = Trainer(Network.mlp([4, 3, 3], seed=0), backend="serial")
    with pytest.raises(GenlabError):
        trainer.grow(groups=[99])
    assert len(trainer.net.groups) == 3
