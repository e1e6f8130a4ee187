"""What the lab shows: its widgets and their layout, built for a projector.

One row of compact buttons, one of settings, a status line in large type, the growth messages,
then the pictures as panels that wrap: the DAG (twice the share of width), the heatmap, the loss
and the accuracy, each at least pictures.PANEL_PX wide (or the whole width where less is left),
so that at 1024 x 768 the DAG and the heatmap sit side by side, and a wide screen puts all four
in a row. Nothing scrolls inside the page: a large DAG is scaled to its panel's width.
"""

from __future__ import annotations

from ..asynchronous.dni import decoupled
from ..policy import MODES
from . import pictures

EMPTY = "<div style='color:#555;padding:1em;font-size:16px'>No steps yet: press <b>Step</b> or <b>Run N</b>.</div>"
NO_ROWS = ("<div style='color:#555;padding:1em;font-size:16px'>The network has no hidden group yet: the heatmap "
           "shows one row per hidden group.</div>")
STATUS = "<div style='font-size:17px;line-height:1.4'>{}</div>"   # the status line
MESSAGE = "<div style='font-size:15px;line-height:1.35'>{}</div>"  # growth messages and notes


def panel(grow: int = 1):
    """A picture panel's layout: PANEL_PX wide at least (the whole width where less is left)."""
    import ipywidgets as w

    return w.Layout(flex=f"{grow} 1 {pictures.PANEL_PX}px", min_width=f"min({pictures.PANEL_PX}px, 100%)",
                    padding="0 6px 8px 0")


class Controls:
    """The lab's widgets, laid out in `widget`; `Lab` gives them their behaviour."""

    def __init__(self, trainer):
        import ipywidgets as w

        policy = trainer.growth
        button = dict(layout=w.Layout(width="auto", min_width="72px", padding="0 12px"))
        self.step_button = w.Button(description="Step", tooltip="one training step", **button)
        self.run_button = w.Button(description="Run N", tooltip="N training steps (in the background: Stop stops "
                                   "them)", button_style="primary", **button)
        self.stop_button = w.Button(description="Stop", tooltip="stop Run N after the step it is taking",
                                    disabled=True, **button)
        self.n = w.BoundedIntText(value=200, min=1, max=1_000_000, description="N", layout=w.Layout(width="130px"),
                                  style={"description_width": "20px"})
        self.grow_button = w.Button(description="Grow now", tooltip="run the growth check now", **button)
        self.preview_button = w.ToggleButton(description="Preview", tooltip="outline on the DAG the groups the next "
                                             "growth check would grow, and how", **button)
        self.reset_button = w.Button(description="Reset", tooltip="back to the starting network", **button)
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="160px"))
        wide = {"description_width": "initial"}
        # the policy's rule until the slider moves: `top` (threshold None) or its threshold; moving it
        # sets an absolute threshold
        start = 5e-3 if policy.threshold is None else max(policy.threshold, 1e-6)  # (0 is below the range)
        self.threshold = w.FloatLogSlider(value=start, base=10, min=-6, max=1,
                                          description="threshold", readout_format=".1e", style=wide,
                                          layout=w.Layout(width="300px"),
                                          tooltip="move it to grow the groups above a threshold instead of "
                                                  "the highest ones")
        self.lr = w.FloatLogSlider(value=trainer.lr, base=10, min=-5, max=0, description="learning rate",
                                   readout_format=".1e", style=wide, layout=w.Layout(width="310px"))
        self.mode = w.Dropdown(options=list(MODES), value=policy.mode, description="mode",
                               layout=w.Layout(width="170px"), style={"description_width": "40px"})
        self.status, self.message = w.HTML(), w.HTML()
        self.dag, self.dag_legend = w.HTML(layout=w.Layout(width="100%")), w.HTML()
        picture = w.Layout(width="100%", height="auto", object_fit="contain")
        self.heat, self.loss, self.accuracy = (w.Image(format="png", layout=picture) for _ in range(3))
        self._empty = (w.HTML(EMPTY), w.HTML(""), w.HTML(""))  # what the picture panels show before a step
        self._no_rows = w.HTML(NO_ROWS)
        self.dag_panel = w.VBox([self.dag, self.dag_legend], layout=panel(grow=2))
        self.heat_panel, self.loss_panel, self.accuracy_panel = (w.Box([e], layout=panel()) for e in self._empty)
        # a trainer with synthetic gradients (genlab.DNI): a panel of its modules' errors
        self.modules = w.Image(format="png", layout=picture)
        self.modules_panel = w.Box([w.HTML("")], layout=panel())
        shown = [self.modules_panel] if decoupled(trainer) else []
        self.legend = w.HTML()
        self.play = w.Play(min=0, max=0, interval=900, description="play the growth",
                           tooltip="play the growth: one frame per growth event")
        self.scrub = w.IntSlider(min=0, max=0, description="growth event", style=wide, continuous_update=True,
                                 layout=w.Layout(width="360px"))
        w.jslink((self.play, "value"), (self.scrub, "value"))
        row = w.Layout(display="flex", flex_flow="row wrap", width="100%", align_items="center")
        self.widget = w.VBox([
            w.Box([self.step_button, self.run_button, self.n, self.stop_button, self.grow_button,
                   self.preview_button, self.reset_button, self.progress], layout=row),
            w.Box([self.threshold, self.lr, self.mode], layout=row),
            self.status, self.message,
            w.Box([self.dag_panel, self.heat_panel, self.loss_panel, self.accuracy_panel, *shown],
                  layout=w.Layout(display="flex", flex_flow="row wrap", width="100%", align_items="flex-start")),
            self.legend, w.Box([self.play, self.scrub], layout=row)],
            layout=w.Layout(width="100%"))

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
