"""The network growing: one drawing per growth event (or per growth step), as an animation shown
inline (live and in an exported page) or written as a GIF and an HTML player. Reached through genlab.viz
(which imports it; it imports nothing of genlab.viz)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from .dot import graph as _graph
from .drawing import Drawing


def events_by_step(history) -> list[tuple[int, list[dict]]]:
    """The growth events of a history grouped by the step they happened at, in step order."""
    steps = {}
    for e in history.events:
        steps.setdefault(e["step"], []).append(e)
    return sorted(steps.items())


def frames(history, stats: bool = True, each_event: bool = True) -> list[Drawing]:
    """One drawing per growth event (each_event=False: per growth step, a step's events at once),
    the first the network before any, captioned with the step, the number of groups and the
    accuracy around that step."""
    if not history.events:
        raise ValueError("the history has no growth events: nothing to animate")
    out = []

    def accuracy_at(step):
        recent = [s["accuracy"] for s in history.steps if step - 20 < s["step"] <= step]
        return float(np.mean(recent)) if recent else float("nan")

    groups = [[e] for e in history.events] if each_event else [events for _, events in events_by_step(history)]
    snapshots = [(0, history.events[0]["before"], {})] + [
        (events[0]["step"], events[-1]["after"], {e["new"]: e["kind"] for e in events if e.get("new") is not None})
        for events in groups]
    for step, topology, highlight in snapshots:
        widths = {int(k): v for k, v in topology["widths"].items()}
        levels = {int(k): v for k, v in topology["levels"].items()}
        at = history.at(step) if stats and step >= 1 else None
        grad = history.grad_std[at] if at is not None else None
        caption = f"step {step} · {len(widths)} groups" + (
            f" · accuracy {accuracy_at(step):.2f}" if step else " · before growth")
        out.append(Drawing(_graph(widths, topology["edges"], levels, grad, highlight, caption=caption,
                                  delays=topology.get("delays", ()), labels=topology.get("labels"),
                                  shapes=topology.get("shapes")), caption))
    return out


class Animation:
    """The DAG growing as an animated GIF, shown inline by Jupyter as HTML (an <img> holding the
    GIF), so that it plays live and in an exported HTML page alike."""

    def __init__(self, gif: bytes, frames: int):
        self.gif, self.frames = gif, frames

    def _repr_html_(self) -> str:
        data = base64.b64encode(self.gif).decode()
        return (f'<img src="data:image/gif;base64,{data}" style="max-width:100%" '
                f'alt="the network growing, {self.frames} frames">')

    def save(self, path) -> Path:
        path = Path(path)
        path.write_bytes(self.gif)
        return path

    def __repr__(self) -> str:
        return f"Animation({self.frames} frames)"


def _gif(drawings: list, duration_ms: int) -> bytes:
    """The drawings as the frames of one looping GIF, each centred on a white canvas of the largest."""
    from PIL import Image

    images = [Image.open(io.BytesIO(d.png())).convert("RGB") for d in drawings]
    w, h = max(i.width for i in images), max(i.height for i in images)
    padded = []
    for image in images:
        canvas = Image.new("RGB", (w, h), "white")
        canvas.paste(image, ((w - image.width) // 2, (h - image.height) // 2))
        padded.append(canvas)
    buffer = io.BytesIO()
    padded[0].save(buffer, format="GIF", save_all=True, append_images=padded[1:], duration=duration_ms, loop=0)
    return buffer.getvalue()


def animation(history, duration_ms: int = 900, each_event: bool = True) -> Animation | None:
    """The DAG growing, one frame per growth event (each_event=False: per growth step), to show in
    a notebook (writes no file; save() does). None, with one line on stderr, without Graphviz's dot."""
    drawings = frames(history, each_event=each_event)
    if any(d.svg() is None for d in drawings):
        return None
    return Animation(_gif(drawings, duration_ms), len(drawings))


def animate(history, folder=".", name: str = "growth", duration_ms: int = 900,
            each_event: bool = True) -> dict[str, Path]:
    """Write NAME.gif and NAME.html (a player with a slider) of the DAG growing, one frame per
    growth event (each_event=False: per growth step), into `folder`; return their paths. Without
    dot: the HTML shows DOT sources and no GIF is written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    drawings = frames(history, each_event=each_event)
    svgs = [d.svg() for d in drawings]
    paths = {}
    if all(s is not None for s in svgs):
        paths["gif"] = folder / f"{name}.gif"
        paths["gif"].write_bytes(_gif(drawings, duration_ms))
        bodies = [base64.b64encode(s.encode()).decode() for s in svgs]
        kind = "svg"
    else:
        bodies = [html.escape(d.source) for d in drawings]
        kind = "dot"
    paths["html"] = folder / f"{name}.html"
    paths["html"].write_text(_PLAYER.replace("__FRAMES__", json.dumps(bodies)).replace("__KIND__", kind)
                             .replace("__CAPTIONS__", json.dumps([d.caption for d in drawings]))
                             .replace("__DELAY__", str(duration_ms)))
    return paths


_PLAYER = """<!doctype html>
<html><head><meta charset="utf-8"><title>genlab: growth</title>
<style>body{font-family:Helvetica,Arial,sans-serif;margin:1em} #frame{min-height:300px}
#frame img{max-width:100%} pre{font-size:11px}</style></head>
<body><h3>genlab: the network growing</h3>
<div><button id="play">play</button> <input id="slider" type="range" min="0" value="0" style="width:60%">
<span id="caption"></span></div><div id="frame"></div>
<script>
const frames = __FRAMES__, captions = __CAPTIONS__, kind = "__KIND__";
const slider = document.getElementById("slider"), frame = document.getElementById("frame");
slider.max = frames.length - 1;
function show(i) {
  slider.value = i;
  document.getElementById("caption").textContent = captions[i] + "  (" + (i + 1) + "/" + frames.length + ")";
  frame.innerHTML = kind === "svg" ? '<img src="data:image/svg+xml;base64,' + frames[i] + '">'
                                   : "<pre>" + frames[i] + "</pre>";
}
let timer = null;
document.getElementById("play").onclick = function () {
  if (timer) { clearInterval(timer); timer = null; this.textContent = "play"; return; }
  this.textContent = "pause";
  timer = setInterval(function () { show((+slider.value + 1) % frames.length); }, __DELAY__);
};
slider.oninput = function () { show(+this.value); };
show(0);
</script></body></html>
"""
