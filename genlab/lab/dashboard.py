"""The lab's behaviour: the buttons and sliders of genlab.lab.controls wired to a Trainer.

Steps, Run N (a background task: the kernel stays responsive, Stop stops it), growth checks on
demand, a reset; after each, the status line at once and the pictures at most every
`min_interval` seconds (a frame rate), the DAG coloured live on the heatmap's scale.
"""

from __future__ import annotations

import html
import math
import time

from .. import notices, viz
from ..asynchronous.dni import decoupled
from ..datasets import Dataset, from_arrays, from_frame
from ..errors import DataError
from ..shapes import Form
from ..trainer import Trainer
from . import legends, messages, pictures
from .controls import MESSAGE, STATUS, Controls


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


class Lab(Controls):
    """A dashboard for `trainer` on `data` (a genlab Dataset, an (X, y) pair, or a DataFrame with
    `label` naming its class column; your own data is split and standardised like genlab's).
    Shown by Jupyter; `step`, `run`, `start`, `stop`, `grow` and `reset` do what its buttons do."""

    def __init__(self, trainer: Trainer, data, refresh_every: int = 25, label: str | None = None,
                 min_interval: float = 0.5):
        self.data = as_dataset(data, label)
        net = trainer.net
        if net.form is not Form.FLAT and self.data.sample_shape != net.input_shape:
            raise DataError(f"the data's samples have shape {self.data.sample_shape} but the network reads "
                            f"{net.input_shape}")
        if net.form is Form.FLAT and self.data.n_features != net.n_inputs:
            raise DataError(f"the data has {self.data.n_features} features but the network's input group has "
                            f"width {net.n_inputs}")
        super().__init__(trainer)
        self.trainer, self.refresh_every, self.min_interval = trainer, refresh_every, min_interval
        self._queue: list = []  # the rest of this epoch's batches (Trainer.batches, as fit uses)
        # never drawn: -inf, not 0.0 (perf_counter counts from boot, so a machine up for less than
        # min_interval would hold the first pictures back)
        self._drawn_at, self._pending, self._scheduled = -math.inf, False, False
        self._task, self._stopping, self._following = None, False, False
        self._lines: list[str] = []  # the message: growth announcements, then the library's notes
        self._test: tuple[float, int] | None = None  # (test accuracy, the step it was measured at)
        self._notes: list[str] = []
        self._heatmap = pictures.Heatmap()
        self._curves = (pictures.Curve("loss", log_scale=True), pictures.Curve("accuracy"))
        self._modules = pictures.ModuleErrors()
        self.step_button.on_click(lambda _: self.step())
        self.run_button.on_click(lambda _: self.start(self.n.value))
        self.stop_button.on_click(lambda _: self.stop())
        self.grow_button.on_click(lambda _: self.grow())
        self.reset_button.on_click(lambda _: self.reset())
        self.preview_button.observe(lambda _: self._draw_dag(), names="value")
        self.threshold.observe(self._threshold_moved, names="value")
        self.mode.observe(lambda c: setattr(self.trainer.growth, "mode", c["new"]), names="value")
        self.lr.observe(lambda c: setattr(self.trainer, "lr", c["new"]), names="value")
        self.scrub.observe(lambda c: self._show_frame(c["new"]), names="value")
        self.refresh()

    def _threshold_moved(self, change) -> None:
        """The slider moved: its value is the growth threshold from now on. A change of less than
        half a step of the slider is the browser snapping the value it was shown to the slider's
        grid and sending it back, not a move: taken, it turned the policy's `top` rule, or a
        threshold below the slider's range, into the slider's starting value."""
        if abs(math.log10(change["new"] / change["old"])) >= self.threshold.step / 2:
            self.trainer.growth.threshold = change["new"]

    # ------------------------------------------------------------------ actions
    def _batch(self):
        X, y = self.data.train
        if not self._queue:
            self._queue = list(self.trainer.batches(len(X)))
        idx = self._queue.pop(0)
        return X[idx], y[idx]

    def _train_step(self) -> dict:
        with notices.redirected(self._note):
            return self.trainer.step(*self._batch())

    def step(self) -> dict:
        """One training step on the next batch (batches as fit makes them); the panels follow."""
        events = len(self.trainer.history.events)
        self._notes = []
        record = self._train_step()
        grown = self.trainer.history.events[events:]
        self._say(messages.announce(grown, self.trainer.growth) if grown else "")
        self.refresh(throttle=True)
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
            self._say(f"Run N stopped at step {self.trainer.step_count}: {html.escape(str(e))}")
            self.refresh()
        finally:
            self._running(False)

    def _running(self, on: bool) -> None:
        for button in (self.step_button, self.run_button, self.grow_button, self.reset_button):
            button.disabled = on
        self.stop_button.disabled = not on
        # the kernel itself shows Idle (it is free for other cells): the lab says that it is running
        self.progress.description, self.progress.bar_style = ("running", "info") if on else ("", "")

    def _steps(self, n: int, slice_seconds: float = 0.05):
        """n steps (fewer if stopped), yielding every slice_seconds of work."""
        self.progress.max, self.progress.value = n, 0
        self._notes, self._stopping = [], False
        self._say("")
        start, yielded = len(self.trainer.history.events), time.perf_counter()
        for i in range(n):
            if time.perf_counter() - yielded > slice_seconds:
                yield i
                yielded = time.perf_counter()
            if self._stopping:
                self._say(*self._lines, f"stopped after {i} of {n} steps")
                self.refresh()
                return
            events = len(self.trainer.history.events)
            self._train_step()
            self.progress.value = i + 1
            if len(self.trainer.history.events) != events:  # every event of this run so far, the newest last
                self._say(messages.announce(self.trainer.history.events[start:], self.trainer.growth))
            if len(self.trainer.history.events) != events or (i + 1) % self.refresh_every == 0 or i + 1 == n:
                self.refresh(throttle=i + 1 < n)

    def grow(self) -> list:
        """Run the growth check now; say what grew, or why nothing did."""
        self._notes = []
        with notices.redirected(self._note):
            events = self.trainer.grow()
        self._say(messages.announce([e.to_dict() for e in events], self.trainer.growth) if events
                  else messages.nothing_grew(self.trainer))
        self.refresh()
        return events

    def reset(self) -> None:
        """Back to the start: the trainer you passed is reset in place (Trainer.reset), every panel
        cleared; the sliders' settings stay."""
        self.trainer.reset()
        self.trainer.lr = self.lr.value
        self._queue, self._notes = [], []
        self.progress.value = 0
        self._say("reset: the starting network, no steps")
        self.refresh()

    # ------------------------------------------------------------------ words
    def _say(self, *lines: str) -> None:
        self._lines = [line for line in lines if line]
        shown = self._lines + [messages.note(n) for n in self._notes]
        self.message.value = MESSAGE.format("<br>".join(shown)) if shown else ""

    def _note(self, line: str) -> None:
        """A note of the library's (genlab.notices) during one of the lab's actions: in its message."""
        self._notes.append(line)
        self._say(*self._lines)

    def _status(self) -> str:
        t, data = self.trainer, self.data
        steps, net = t.history.steps, t.net
        shape = (f"{data.n_features} features" if len(data.sample_shape) == 1
                 else "samples of " + "&times;".join(map(str, data.sample_shape)))
        loss = f"{steps[-1]['loss']:.4f}" if steps else "&mdash;"
        batch = f"{steps[-1]['accuracy']:.3f}" if steps else "&mdash;"
        test = f"{self._test[0]:.3f}" if self._test else "&mdash;"
        if self._test and self._test[1] != t.step_count:
            test += f" (step {self._test[1]})"  # measured with the pictures, at most every min_interval
        classes = f"{data.n_classes} classes" + (f" ({', '.join(map(str, data.classes))})"
                                                  if data.classes and len(data.classes) <= 12 else "")
        return STATUS.format(
            f"<b>step {t.step_count}</b> &middot; {len(net.groups)} groups &middot; {len(net.edges)} edges "
            f"&middot; {net.n_params} parameters &middot; loss {loss} &middot; batch accuracy {batch} &middot; "
            f"<b>test accuracy {test}</b> &middot; {len(t.history.events)} growth events<br>"
            f"<span style='font-size:15px;color:#444'>data {html.escape(data.name)}: {len(data.X_train)} training "
            f"samples, {shape}, {html.escape(classes)} &middot; backend {t.backend}{self._cuts()}</span>")

    def _cuts(self) -> str:
        """The status line's word on synthetic gradients, where the trainer runs them."""
        if not decoupled(self.trainer):
            return ""
        e = self.trainer.engine
        return (f" &middot; synthetic gradients at the cuts after groups {', '.join(map(str, e.cuts))} "
                f"({len(e.crossing)} edges{', with the label' if e.conditioned else ''}"
                f"{', pipelined: each part on its own batch' if self.trainer.decouple.pipelined else ''})")

    # ------------------------------------------------------------------ panels
    def refresh(self, throttle: bool = False) -> None:
        """The status line now; the pictures (the DAG, the heatmap, the curves) now, or with
        throttle at most every min_interval seconds (soon after, if not now)."""
        self._following = True  # the slider follows the newest growth event without redrawing
        self.play.max = self.scrub.max = len(self.trainer.history.events)
        self.scrub.value = self.scrub.max
        self._following = False
        if throttle:
            self.status.value = self._status()
            self._pictures_soon()
        else:
            self._draw_pictures()  # (the status line with them)

    def _draw_dag(self) -> None:
        t = self.trainer
        stats = t.history.grad_std[-1] if t.history.grad_std else None
        highlight, caption = None, ""
        if self.preview_button.value:
            plan = t.preview_growth()
            highlight = {g: kind for g, kind, _ in plan}
            caption = ("the next growth check would grow: " + ", ".join(f"{g} ({kind}-wise)" for g, kind, _ in plan)
                       if plan else "the next growth check would grow nothing")
        scale = self._heatmap.scale if stats else None
        if highlight is None:
            highlight = {g: k for g, k in viz.last_event_groups(t.net.history).items() if g in t.net.widths}
        cut = t.engine.crossing if decoupled(t) else None
        drawing = viz.draw(t.net, stats=stats, highlight=highlight, preview=self.preview_button.value, scale=scale,
                           fontsize=14, legend=False, cut=cut)
        self._show_svg(drawing.svg())
        self.dag_legend.value = MESSAGE.format((f"<b>{caption}</b><br>" if caption else "") + legends.dag(
            scale, highlight, self.preview_button.value, bool(t.net.delays), len(t.net.delays) > viz.BUNDLE_OVER,
            cut=bool(cut)))

    def _show_svg(self, svg: str | None) -> None:
        """An SVG of Graphviz's in the DAG panel, scaled down to its width where wider (no scrolling)."""
        self.dag.value = ("<pre>Graphviz's dot is not installed</pre>" if svg is None else
                          svg.replace("<svg ", "<svg style='max-width:100%;height:auto' ", 1))

    def _draw_pictures(self) -> None:
        history, net = self.trainer.history, self.trainer.net
        self._pending = False
        # the test set's accuracy, measured with the pictures: a click does not wait for it
        self._test = (self.trainer.evaluate(*self.data.test)["accuracy"], self.trainer.step_count)
        self.status.value = self._status()
        if not history.steps:
            self.heat_panel.children, self.loss_panel.children, self.accuracy_panel.children = (
                (e,) for e in self._empty)
            self.legend.value = ""
            self._heatmap.scale = pictures.Heatmap().scale
        else:
            self._drawn_at = time.perf_counter()  # (the empty state does not hold the first pictures back)
            heat = self._heatmap.draw(history, net)
            if heat is not None:
                self.heat.value = heat
            self.loss.value, self.accuracy.value = (curve.draw(history) for curve in self._curves)
            self.heat_panel.children, self.loss_panel.children, self.accuracy_panel.children = (
                (self.heat,) if heat is not None else (self._no_rows,), (self.loss,), (self.accuracy,))
            validation = bool(history.epochs) and "val_loss" in history.epochs[0]
            self.legend.value = MESSAGE.format(legends.pictures(validation))
        if decoupled(self.trainer):
            modules = self._modules.draw(self.trainer.engine.errors, self.trainer.step_count)
            if modules is not None:
                self.modules.value = modules
            self.modules_panel.children = (self.modules,) if modules is not None else (self._empty[1],)
        self._draw_dag()  # coloured on the heatmap's scale, as it stands now

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
        """Show the network as it was after growth event k (0: before any)."""
        if self._following or not self.trainer.history.events:
            return
        frames = viz.frames(self.trainer.history)
        self._show_svg(frames[min(k, len(frames) - 1)].svg())
