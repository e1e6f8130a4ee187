"""The lab: an ipywidgets dashboard that steps training, grows the network and shows it.

    lab = genlab.Lab(trainer, data)   # data: a genlab Dataset, (X, y) arrays, or a DataFrame with label=
    lab                               # in Jupyter: buttons, sliders and live pictures

Panels update in place (no flicker): the DAG (re-drawn after every growth event, scrolling inside
its panel when it is large), the gradient-std heatmap, the curves and a status line. The panels
fit the notebook's width: the heatmap and the curves side by side where there is room, stacked
where there is not, never stretched. The pictures are redrawn at most every `min_interval`
seconds while you click (the status line at every step), so that a step stays quick however long
the history; the last state is drawn as soon as the clicks pause.
"""

from __future__ import annotations

import html
import io
import time

from . import viz
from .datasets import Dataset, from_arrays, from_frame
from .errors import DataError
from .policy import MODES
from .shapes import Form
from .trainer import Trainer


def _png(fig) -> bytes:
    """The figure (genlab.figures: on its own Agg canvas, out of pyplot's reach) as PNG bytes,
    encoded with light compression: fast."""
    import numpy as np
    from PIL import Image

    fig.canvas.draw()
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def as_dataset(data, label: str | None = None) -> Dataset:
    """A Dataset from what the lab accepts: a Dataset, an (X, y) pair of arrays, or a pandas
    DataFrame whose column `label` holds the classes."""
    if isinstance(data, Dataset):
        return data
    if hasattr(data, "columns"):
        if label is None:
            raise DataError("a DataFrame needs label=: the name of the column that holds the classes")
        return from_frame(data, label)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return from_arrays(*data)
    raise DataError(f"Lab takes a genlab Dataset, an (X, y) pair or a DataFrame, not {type(data).__name__}")


def announce(events: list[dict], policy) -> str:
    """A line per growth event (as trainer.history.events records them): which group grew, how, and
    the statistic that chose it against the policy's rule ("step 350: group 7 duplicated depth-wise into group 12: grad_std 0.021 >
    threshold 0.005"); the last five, with a count of the rest."""
    name = policy.criterion if isinstance(policy.criterion, str) else "statistic"
    rule = (", the highest" if policy.threshold is None else f", z-score > {policy.threshold:g}" if policy.relative
            else f" > threshold {policy.threshold:.2g}")
    lines = [f"step {e['step']}: group {e['source']} pruned" if e["kind"] == "prune" else
             f"step {e['step']}: group {e['source']} duplicated {e['kind']}-wise into group {e['new']}: "
             f"{name} {e['statistic']:.2g}{rule}" for e in events[-5:]]
    more = [f"(and {len(events) - 5} more growth events)"] if len(events) > 5 else []
    return "<br>".join(more + lines)


EMPTY = "<div style='color:#777;padding:1em'>No steps yet: press <b>Step</b> or <b>Run N</b>.</div>"


class Lab:
    """A dashboard for `trainer` on `data` (a genlab Dataset, an (X, y) pair, or a DataFrame with
    `label` naming its class column; your own data is split and standardised like genlab's)."""

    def __init__(self, trainer: Trainer, data, refresh_every: int = 25, label: str | None = None,
                 min_interval: float = 0.5):
        import ipywidgets as w

        self.data = as_dataset(data, label)
        net = trainer.net
        if net.form is not Form.FLAT and self.data.sample_shape != net.input_shape:
            raise DataError(f"the data's samples have shape {self.data.sample_shape} but the network reads "
                            f"{net.input_shape}")
        if net.form is Form.FLAT and self.data.n_features != net.n_inputs:
            raise DataError(f"the data has {self.data.n_features} features but the network's input group has "
                            f"width {net.n_inputs}")
        self.trainer, self.refresh_every, self.min_interval = trainer, refresh_every, min_interval
        self._queue: list = []  # the rest of this epoch's batches (Trainer.batches, as fit uses)
        self._drawn_at, self._pending, self._scheduled = 0.0, False, False
        policy = trainer.growth
        wide = {"description_width": "initial"}
        self.step_button = w.Button(description="Step", tooltip="one training step")
        self.run_button = w.Button(description="Run N", tooltip="N training steps (in the background: Stop stops them)")
        self.stop_button = w.Button(description="Stop", tooltip="stop Run N after the step it is taking", disabled=True)
        self.n = w.BoundedIntText(value=200, min=1, max=1_000_000, description="N", layout=w.Layout(width="150px"))
        self.grow_button = w.Button(description="Grow now", tooltip="run the growth check now")
        self.preview_button = w.ToggleButton(description="Preview", tooltip="outline on the DAG the groups the next "
                                             "growth check would grow, and how")
        self.reset_button = w.Button(description="Reset", tooltip="back to the starting network")
        # the policy's rule until the slider moves: `top` (threshold None) or its threshold; moving it
        # sets an absolute threshold
        self.threshold = w.FloatLogSlider(value=max(policy.threshold or 5e-3, 1e-6), base=10, min=-6, max=1,
                                          description="threshold", readout_format=".1e", style=wide,
                                          tooltip="move it to grow the groups above a threshold instead of "
                                                  "the highest ones")
        self.lr = w.FloatLogSlider(value=trainer.lr, base=10, min=-5, max=0, description="learning rate",
                                   readout_format=".1e", style=wide)
        self.mode = w.ToggleButtons(options=list(MODES), value=policy.mode, description="mode")
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="200px"))
        self.status, self.message = w.HTML(), w.HTML()
        self.dag = w.HTML(layout=w.Layout(max_height="460px", overflow="auto", width="100%"))
        picture = w.Layout(width="100%", height="auto", object_fit="contain")
        self.heat, self.curves = w.Image(format="png", layout=picture), w.Image(format="png", layout=picture)
        panel = dict(flex="1 1 420px", min_width="300px")
        self._empty = (w.HTML(EMPTY), w.HTML(EMPTY))  # what the picture panels show before the first step
        self.heat_panel, self.curves_panel = (w.Box([e], layout=w.Layout(**panel)) for e in self._empty)
        self.play = w.Play(min=0, max=0, interval=900, description="play the growth")
        self.scrub = w.IntSlider(min=0, max=0, description="growth", continuous_update=True)
        self._following = False
        w.jslink((self.play, "value"), (self.scrub, "value"))
        self.step_button.on_click(lambda _: self.step())
        self.run_button.on_click(lambda _: self.start(self.n.value))
        self.stop_button.on_click(lambda _: self.stop())
        self._task, self._stopping = None, False
        self.grow_button.on_click(lambda _: self.grow())
        self.reset_button.on_click(lambda _: self.reset())
        self.preview_button.observe(lambda _: self._draw_dag(), names="value")
        self.threshold.observe(lambda c: setattr(self.trainer.growth, "threshold", c["new"]), names="value")
        self.mode.observe(lambda c: setattr(self.trainer.growth, "mode", c["new"]), names="value")
        self.lr.observe(lambda c: setattr(self.trainer, "lr", c["new"]), names="value")
        self.scrub.observe(lambda c: self._show_frame(c["new"]), names="value")
        row = w.Layout(display="flex", flex_flow="row wrap", width="100%", align_items="center")
        self.widget = w.VBox([
            w.Box([self.step_button, self.run_button, self.stop_button, self.n, self.grow_button, self.preview_button,
                   self.reset_button, self.progress], layout=row),
            w.Box([self.threshold, self.lr], layout=row), self.mode, self.status, self.message, self.dag,
            w.Box([self.heat_panel, self.curves_panel], layout=row), w.Box([self.play, self.scrub], layout=row)],
            layout=w.Layout(width="100%"))
        self.refresh()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ actions
    def _batch(self):
        X, y = self.data.train
        if not self._queue:
            self._queue = list(self.trainer.batches(len(X)))
        idx = self._queue.pop(0)
        return X[idx], y[idx]

    def step(self) -> dict:
        """One training step on the next batch (batches as fit makes them); the panels follow."""
        events = len(self.trainer.history.events)
        record = self.trainer.step(*self._batch())
        grown = self.trainer.history.events[events:]
        self.message.value = announce(grown, self.trainer.growth) if grown else ""
        self.refresh(dag=bool(grown), throttle=True)
        return record

    def run(self, n: int) -> None:
        """n training steps now, refreshing the panels every refresh_every steps (and at the end)."""
        for _ in self._steps(n):
            pass

    def start(self, n: int) -> None:
        """What Run N does: n steps as a task of the running event loop (in Jupyter the kernel's, so
        it answers other cells and the Stop button between slices of steps; Step, Grow now and Reset
        wait, disabled), or now where no loop runs (a script, a test)."""
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self.run(n)
        self._running(True)
        self._task = loop.create_task(self._run_in_background(n))

    def stop(self) -> None:
        """Stop a Run N after the step it is taking."""
        self._stopping = True

    async def _run_in_background(self, n: int) -> None:
        import asyncio

        try:
            for _ in self._steps(n):
                await asyncio.sleep(0)  # the loop's other work: clicks, cells, the pictures' redraw
        except Exception as e:  # shown where the run was asked for, not lost in a log
            self.message.value = f"Run N stopped at step {self.trainer.step_count}: {html.escape(str(e))}"
            self.refresh()
        finally:
            self._running(False)

    def _running(self, on: bool) -> None:
        for button in (self.step_button, self.run_button, self.grow_button, self.reset_button):
            button.disabled = on
        self.stop_button.disabled = not on

    def _steps(self, n: int, slice_seconds: float = 0.05):
        """n steps (fewer if stopped), yielding every slice_seconds of work."""
        self.progress.max, self.progress.value = n, 0
        self.message.value, self._stopping = "", False
        start, yielded = len(self.trainer.history.events), time.perf_counter()
        for i in range(n):
            if time.perf_counter() - yielded > slice_seconds:
                yield i
                yielded = time.perf_counter()
            if self._stopping:
                self.message.value += f"{'<br>' if self.message.value else ''}stopped after {i} of {n} steps"
                self.refresh()
                return
            events = len(self.trainer.history.events)
            self.trainer.step(*self._batch())
            self.progress.value = i + 1
            grew = len(self.trainer.history.events) != events
            if grew:  # every event of this run so far, the newest last
                self.message.value = announce(self.trainer.history.events[start:], self.trainer.growth)
            if grew or (i + 1) % self.refresh_every == 0 or i + 1 == n:
                self.refresh(dag=grew or i + 1 == n, throttle=i + 1 < n)

    def grow(self) -> list:
        """Run the growth check now; say so when no group passes the threshold."""
        events = self.trainer.grow()
        self.message.value = self._grown(events)
        self.refresh()
        return events

    def _grown(self, events: list) -> str:
        if events:
            return announce([e.to_dict() for e in events], self.trainer.growth)
        t, policy = self.trainer, self.trainer.growth
        if not t.history.steps:
            return "no growth: no step has been taken yet (the rules read a statistic of the steps)"
        criterion = policy.criterion
        values = criterion(t.engine.stats) if callable(criterion) else t.engine.stats[criterion]
        values = {g: float(v) for g, v in values.items() if g in set(t.net.hidden_groups)}
        if not values:
            return "no growth: the network has no hidden group"
        g = max(values, key=values.get)
        name = criterion if isinstance(criterion, str) else "statistic"
        if policy.threshold is None:
            full = len(t.net.groups) >= policy.max_groups
            return (f"no growth: the network holds max_groups={policy.max_groups} groups" if full else
                    f"no growth: every hidden group is cooling down (for {policy.cooldown} steps after it grew)")
        rule = "a z-score across groups" if policy.relative else "its average over about %d steps" % policy.window
        return (f"no growth: no group above {policy.threshold:.1e}; highest {name} at the last step: "
                f"{values[g]:.1e}, group {g} (the rule reads {rule})")

    def reset(self) -> None:
        """Back to the start: the trainer you passed is reset in place (Trainer.reset), every panel
        cleared; the sliders' settings stay."""
        self.trainer.reset()
        self.trainer.lr = self.lr.value
        self._queue = []
        self.progress.value = 0
        self.message.value = "reset: the starting network, no steps"
        self.refresh()

    # ------------------------------------------------------------------ panels
    def refresh(self, dag: bool = True, throttle: bool = False) -> None:
        """Redraw the status line, the pictures and (if `dag`) the DAG. throttle: the pictures
        only if min_interval has passed since they were drawn (else soon after)."""
        t = self.trainer
        history = t.history
        net = t.net
        test = t.evaluate(*self.data.test)
        loss = f"{history.steps[-1]['loss']:.4f}" if history.steps else "&mdash;"
        batch = f"{history.steps[-1]['accuracy']:.3f}" if history.steps else "&mdash;"
        self.status.value = (
            f"<b>step {t.step_count}</b> &middot; {len(net.groups)} groups &middot; {len(net.edges)} edges "
            f"&middot; {net.n_params} parameters &middot; loss {loss} &middot; batch accuracy {batch} &middot; "
            f"test accuracy {test['accuracy']:.3f} &middot; backend {t.backend} &middot; "
            f"{len(history.events)} growth events")
        if dag or self.preview_button.value:
            self._draw_dag()
        if throttle:
            self._pictures_soon()
        else:
            self._draw_pictures()
        steps = len({e["step"] for e in history.events})
        self._following = True  # the slider follows the newest growth step without redrawing
        self.play.max = self.scrub.max = steps
        self.scrub.value = steps
        self._following = False

    def _draw_dag(self) -> None:
        t = self.trainer
        stats = t.history.grad_std[-1] if t.history.grad_std else None
        highlight, caption = None, ""
        if self.preview_button.value:
            plan = t.preview_growth()
            highlight = {g: kind for g, kind, _ in plan}
            caption = ("the next growth check would grow: " + ", ".join(f"{g} ({kind}-wise)" for g, kind, _ in plan)
                       if plan else "the next growth check would grow nothing")
        svg = viz.draw(t.net, stats=stats, highlight=highlight, caption=caption, preview=highlight is not None).svg()
        self.dag.value = svg if svg is not None else "<pre>Graphviz's dot is not installed</pre>"

    def _draw_pictures(self) -> None:
        history, net = self.trainer.history, self.trainer.net
        self._pending = False
        if not history.steps:
            self.heat_panel.children, self.curves_panel.children = (self._empty[0],), (self._empty[1],)
            return
        self._drawn_at = time.perf_counter()
        self.heat.value = _png(viz.heatmap(history, net))
        self.curves.value = _png(viz.curves(history))
        self.heat_panel.children, self.curves_panel.children = (self.heat,), (self.curves,)

    def _pictures_soon(self) -> None:
        """The pictures, at most every min_interval: in Jupyter drawn from the kernel's event loop
        once the click has been answered (the step returns at once), else (a script, a test)
        drawn now if min_interval has passed, or by the next refresh."""
        import asyncio

        self._pending = True
        wait = max(0.0, self.min_interval - (time.perf_counter() - self._drawn_at))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if not wait:
                self._draw_pictures()
            return
        if not self._scheduled:
            self._scheduled = True
            loop.call_later(wait, self._draw_pending)

    def _draw_pending(self) -> None:
        self._scheduled = False
        if self._pending:
            self._draw_pictures()

    def _show_frame(self, k: int) -> None:
        """Show the network as it was after growth step k (0: before any)."""
        if self._following or not self.trainer.history.events:
            return
        frames = viz.frames(self.trainer.history)
        svg = frames[min(k, len(frames) - 1)].svg()
        if svg is not None:
            self.dag.value = svg

