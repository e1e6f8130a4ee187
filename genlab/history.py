"""The history of a run: per-step and per-epoch metrics, the gradient std of every group at each
recorded step, and the growth events. Plain lists of dicts, ready for JSON and for the pictures.

Bounded: a run of any length keeps at most LIMIT per-step records and VALUES gradient-std values
(records x groups), so that its memory stays flat and its checkpoint stays loadable. Past either,
the history keeps one step in `stride`: stride doubles, the records of the steps it no longer
keeps are dropped, and later steps are recorded at the new stride, so the records stay evenly
spaced (the pictures' columns are `stride` steps apart). Epochs and events are kept whole.
"""

from __future__ import annotations

import bisect

LIMIT = 20_000       # per-step records kept at most
VALUES = 2_000_000   # gradient-std values kept at most: the checkpoint's JSON stays under ~50 MB


class History:
    """What happened during training (see the module's text)."""

    def __init__(self):
        self.steps: list[dict] = []     # {"step", "loss", "accuracy"}, one per recorded step
        self.epochs: list[dict] = []    # {"epoch", "step", "loss", "accuracy", "val_loss", "val_accuracy"}
        self.grad_std: list[dict] = []  # {group: std of dL/dh}, one per recorded step (as steps)
        self.events: list[dict] = []    # growth events (genlab.growth)
        self.stride = 1                 # the steps recorded: those whose number stride divides
        self._values = 0

    def wants(self, step: int) -> bool:
        """Whether step number `step` is recorded (its number is a multiple of the stride)."""
        return step % self.stride == 0

    def record(self, step: dict, grad_std: dict) -> None:
        """Keep a recorded step's metrics and gradient stds; thin the history when it is full."""
        self.steps.append(step)
        self.grad_std.append(grad_std)
        self._values += len(grad_std)
        while len(self.steps) > LIMIT or self._values > VALUES:
            self._thin()

    def forget(self, step: int) -> None:
        """Drop the records of the steps after step number `step` (steps that were undone)."""
        self._keep(lambda number: number <= step)

    def _thin(self) -> None:
        self.stride *= 2
        self._keep(lambda number: number % self.stride == 0)

    def _keep(self, wanted) -> None:
        """Keep the records whose step number is wanted."""
        keep = [i for i, s in enumerate(self.steps) if wanted(s["step"])]
        self.steps = [self.steps[i] for i in keep]
        self.grad_std = [self.grad_std[i] for i in keep]
        self._values = sum(map(len, self.grad_std))

    def at(self, step: int) -> int | None:
        """The index of the last record at or before step number `step` (None: none is)."""
        i = bisect.bisect_right(self.steps, step, key=lambda s: s["step"]) - 1
        return i if i >= 0 else None

    def to_dict(self) -> dict:
        return {"steps": self.steps, "epochs": self.epochs, "events": self.events, "stride": self.stride,
                "grad_std": [{str(g): s for g, s in d.items()} for d in self.grad_std]}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """The history to_dict() describes; ValueError if it is not well-formed."""
        for name in ("steps", "epochs", "events", "grad_std"):
            if not isinstance(d[name], list) or not all(isinstance(x, dict) for x in d[name]):
                raise ValueError(f"history {name} must be a list of records")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for step in d["grad_std"] for v in step.values()):
            raise ValueError("history grad_std must hold numbers")
        stride = d.get("stride", 1)  # (histories written before it was bounded: every step)
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1 or stride & (stride - 1):
            raise ValueError(f"history stride must be a power of 2, got {stride!r}")
        h = cls()
        h.steps, h.epochs, h.stride = list(d["steps"]), list(d["epochs"]), stride
        h.events = [{**e, **{side: topology(e[side]) for side in ("before", "after") if side in e}}
                    for e in d["events"]]
        h.grad_std = [{int(g): s for g, s in step.items()} for step in d["grad_std"]]
        h._values = sum(map(len, h.grad_std))
        return h

    def __repr__(self) -> str:
        return f"History(steps={len(self.steps)}, epochs={len(self.epochs)}, events={len(self.events)})"


def topology(t: dict) -> dict:
    """A topology (Network.topology) read back from JSON, its group ids ints again."""
    return {"widths": {int(g): w for g, w in t["widths"].items()}, "edges": [tuple(e) for e in t["edges"]],
            "levels": {int(g): v for g, v in t["levels"].items()}, "delays": [list(x) for x in t.get("delays", [])],
            **{part: {int(g): v for g, v in t.get(part, {}).items()} for part in ("labels", "shapes")}}
