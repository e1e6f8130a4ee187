"""The lab: an ipywidgets dashboard that steps training, grows the network and shows it.

    lab = genlab.Lab(trainer, data)
    lab          # in Jupyter: buttons, sliders and live pictures

Panels update in place (no flicker): the DAG (re-drawn after every growth event), the
gradient-std heatmap, the curves and a status line. A Play control and a slider scrub back
through the growth history. Long runs refresh the panels every `refresh_every` steps.
"""

from __future__ import annotations

import io

import numpy as np

from . import viz
from .growth import MODES, GrowthPolicy
from .trainer import Trainer


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


class Lab:
    """A dashboard for `trainer` on `data` (a genlab.datasets.Dataset)."""

    def __init__(self, trainer: Trainer, data, refresh_every: int = 25):
        import ipywidgets as w

        self.trainer, self.data, self.refresh_every = trainer, data, refresh_every
        self._start = (trainer.net.copy(), dict(backend=trainer.backend, optimizer=trainer.optimizer.name,
                                                lr=trainer.lr, batch_size=trainer.batch_size, seed=trainer.seed))
        self._rng = np.random.default_rng(trainer.seed)
        self._order, self._at = np.array([], int), 0
        policy = trainer.growth
        self.step_button = w.Button(description="Step", tooltip="one training step")
        self.run_button = w.Button(description="Run N", tooltip="N training steps")
        self.n = w.BoundedIntText(value=200, min=1, max=1_000_000, description="N", layout=w.Layout(width="150px"))
        self.grow_button = w.Button(description="Grow now", tooltip="run the growth check now")
        self.reset_button = w.Button(description="Reset", tooltip="back to the starting network")
        self.threshold = w.FloatLogSlider(value=max(policy.threshold, 1e-6), base=10, min=-6, max=1,
                                          description="threshold", readout_format=".1e")
        self.lr = w.FloatLogSlider(value=trainer.lr, base=10, min=-5, max=0, description="learning rate",
                                   readout_format=".1e")
        self.mode = w.ToggleButtons(options=list(MODES), value=policy.mode, description="mode")
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="300px"))
        self.status = w.HTML()
        self.dag = w.HTML()
        self.heat = w.Image(format="png")
        self.curves = w.Image(format="png")
        self.play = w.Play(min=0, max=0, interval=900, description="play the growth")
        self.scrub = w.IntSlider(min=0, max=0, description="growth", continuous_update=True)
        self._following = False
        w.jslink((self.play, "value"), (self.scrub, "value"))
        self.step_button.on_click(lambda _: self.step())
        self.run_button.on_click(lambda _: self.run(self.n.value))
        self.grow_button.on_click(lambda _: self.grow())
        self.reset_button.on_click(lambda _: self.reset())
        self.threshold.observe(lambda c: setattr(self.trainer.growth, "threshold", c["new"]), names="value")
        self.mode.observe(lambda c: setattr(self.trainer.growth, "mode", c["new"]), names="value")
        self.lr.observe(lambda c: setattr(self.trainer, "lr", c["new"]), names="value")
        self.scrub.observe(lambda c: self._show_frame(c["new"]), names="value")
        self.widget = w.VBox([
            w.HBox([self.step_button, self.run_button, self.n, self.grow_button, self.reset_button, self.progress]),
            w.HBox([self.threshold, self.lr]), self.mode, self.status, self.dag,
            w.HBox([self.heat, self.curves]), w.HBox([self.play, self.scrub])])
        self.refresh()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ actions
    def _batch(self):
        X, y = self.data.train
        if self._at >= len(self._order):
            self._order, self._at = self._rng.permutation(len(X)), 0
        idx = self._order[self._at:self._at + self.trainer.batch_size]
        self._at += len(idx)
        return X[idx], y[idx]

    def step(self) -> dict:
        """One training step on the next batch; the panels follow."""
        events = len(self.trainer.history.events)
        record = self.trainer.step(*self._batch())
        self.refresh(dag=len(self.trainer.history.events) != events)
        return record

    def run(self, n: int) -> None:
        """n training steps, refreshing the panels every refresh_every steps (and at the end)."""
        self.progress.max, self.progress.value = n, 0
        for i in range(n):
            events = len(self.trainer.history.events)
            self.trainer.step(*self._batch())
            self.progress.value = i + 1
            grew = len(self.trainer.history.events) != events
            if grew or (i + 1) % self.refresh_every == 0 or i + 1 == n:
                self.refresh(dag=grew or i + 1 == n)

    def grow(self) -> list:
        """Run the growth check now."""
        events = self.trainer.grow()
        self.refresh()
        return events

    def reset(self) -> None:
        """Back to the starting network, with a new trainer of the same settings and policy."""
        net, settings = self._start
        policy = GrowthPolicy(**{**vars(self.trainer.growth)})
        self.trainer = Trainer(net.copy(), growth=policy, **{**settings, "lr": self.lr.value})
        self._rng = np.random.default_rng(settings["seed"])
        self._order, self._at = np.array([], int), 0
        self.refresh()

    # ------------------------------------------------------------------ panels
    def refresh(self, dag: bool = True) -> None:
        """Redraw the status line, the pictures and (if `dag`) the DAG."""
        t = self.trainer
        history = t.history
        test = t.evaluate(*self.data.test)
        last = history.steps[-1] if history.steps else {"loss": float("nan"), "accuracy": float("nan")}
        self.status.value = (
            f"<b>step {t.step_count}</b> &middot; {len(t.net.groups)} groups &middot; {len(t.net.edges)} edges "
            f"&middot; {t.net.n_params} parameters &middot; loss {last['loss']:.4f} &middot; batch accuracy "
            f"{last['accuracy']:.3f} &middot; test accuracy {test['accuracy']:.3f} &middot; backend {t.backend}"
            f" &middot; {len(history.events)} growth events")
        if dag:
            stats = history.grad_std[-1] if history.grad_std else None
            svg = viz.draw(t.net, stats=stats).svg()
            self.dag.value = svg if svg is not None else "<pre>Graphviz's dot is not installed</pre>"
        if history.steps:
            self.heat.value = _png(viz.heatmap(history, t.net))
            self.curves.value = _png(viz.curves(history))
        steps = len({e["step"] for e in history.events})
        self._following = True  # the slider follows the newest growth step without redrawing
        self.play.max = self.scrub.max = steps
        self.scrub.value = steps
        self._following = False

    def _show_frame(self, k: int) -> None:
        """Show the network as it was after growth step k (0: before any)."""
        if self._following or not self.trainer.history.events:
            return
        frames = viz.frames(self.trainer.history)
        svg = frames[min(k, len(frames) - 1)].svg()
        if svg is not None:
            self.dag.value = svg
