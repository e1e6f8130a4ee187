"""A network cut into parts for synthetic gradients (genlab.DNI), as every decoupled engine sees
it: the parts of the cut groups, the synthetic-gradient module of a boundary group (Interface),
a module as a checkpoint keeps it, a module's relative error, and the stages of a pipelined run.
The serial (asynchronous/dni.py, pipeline.py), CUDA (engines/cuda/decoupled.py, pipelined.py)
and partitioned (distributed/synthetic.py) engines build on it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import GraphError
from .network import INPUT, Network

ERRORS = 100_000  # steps whose modules' errors are kept (the latest)


def parts(net: Network, cuts: tuple[int, ...]) -> dict[int, int]:
    """{group: its part}: the first i whose cut group depends on it (or is it), else len(cuts)."""
    part = {g: len(cuts) for g in net.groups}
    for i in reversed(range(len(cuts))):
        stack, seen = [cuts[i]], {cuts[i]}
        while stack:
            g = stack.pop()
            part[g] = i
            for s in net.inputs(g):
                if s not in seen:
                    seen.add(s)
                    stack.append(s)
    return part


class Interface:
    """The synthetic-gradient module of one boundary group: per-sample dL/dh ~ h W (+ onehot(y) C) + b."""

    def __init__(self, width: int, classes: int, conditioned: bool, dtype):
        self.width, self.conditioned = width, conditioned
        self.params = {"W": np.zeros((width, width), dtype), "b": np.zeros(width, dtype)}
        if conditioned:
            self.params["C"] = np.zeros((classes, width), dtype)
        self.state: dict[str, dict] = {name: {} for name in self.params}

    def features(self, h: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        flat = h.reshape(len(h), -1)
        if not self.conditioned:
            return flat, None
        onehot = np.zeros((len(h), self.params["C"].shape[0]), flat.dtype)
        onehot[np.arange(len(h)), y] = 1
        return flat, onehot

    def predict(self, h: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The predicted per-sample dL/dh, shaped as h."""
        return self._predict(*self.features(h, y)).reshape(h.shape)

    def _predict(self, flat: np.ndarray, onehot: np.ndarray | None) -> np.ndarray:
        out = flat @ self.params["W"] + self.params["b"]
        return out if onehot is None else out + onehot @ self.params["C"]

    def loss_and_grads(self, h: np.ndarray, y: np.ndarray, target: np.ndarray,
                       prediction: np.ndarray | None = None) -> tuple[float, dict]:
        """Half the mean over samples of |predict - target|^2, and its gradients (prediction: the
        module's predict(h, y), where already made)."""
        flat, onehot = self.features(h, y)
        n = len(h)
        if prediction is None:
            prediction = self._predict(flat, onehot)
        error = prediction.reshape(n, -1) - target.reshape(n, -1)
        grads = {"W": flat.T @ error / n, "b": error.sum(axis=0) / n}
        if onehot is not None:
            grads["C"] = onehot.T @ error / n
        return float(0.5 * np.sum(error.astype(np.float64) ** 2) / n), grads


def module_entry(params: dict, state: dict) -> dict[str, np.ndarray]:
    """A module as a checkpoint keeps it: each parameter by name (W, b, C), and where its Adam has
    stepped, the moments m_<name>, v_<name> and the step count t_<name>."""
    entry = {name: np.asarray(value) for name, value in params.items()}
    for name, st in state.items():
        if st:
            entry[f"m_{name}"], entry[f"v_{name}"] = np.asarray(st["m"]), np.asarray(st["v"])
            entry[f"t_{name}"] = np.asarray(st["t"], np.int64)
    return entry


def checked_width(entry: dict, g: int, boundary: set, columns: dict, conditioned: bool, classes: int) -> int:
    """The width of group g's saved module, which must fit the network: GraphError otherwise."""
    if g not in boundary:
        raise GraphError(f"a saved synthetic-gradient module sits at group {g}, not at a boundary group of the network")
    w = columns[g]
    wanted = {"W": (w, w), "b": (w,), **({"C": (classes, w)} if conditioned else {})}
    for name, shape in wanted.items():
        value = entry.get(name)
        if value is None or value.shape != shape:
            raise GraphError(f"the saved synthetic-gradient module of group {g} has no {name} of shape {shape}")
        for state in ("m", "v"):
            if int(entry.get(f"t_{name}", 0)) and np.shape(entry.get(f"{state}_{name}")) != shape:
                raise GraphError(f"the saved module of group {g} has no Adam {state} for {name} of shape {shape}")
    return w


def relative_error(miss: float, scale: float) -> float:
    """A module's error |prediction - truth| relative to |truth| (the miss itself where the truth is 0)."""
    return miss / scale if scale > 0 else miss


@dataclass(frozen=True)
class Stages:
    """Where the pipeline's stages meet: `stage` {group (INPUT too): its stage}, `delay`
    {group read by a later stage: how many stages on its furthest reader is}, `reader`
    {boundary group: the one stage that reads it}, `depth`: the last stage."""

    stage: dict
    delay: dict
    reader: dict
    depth: int

    @classmethod
    def of(cls, net: Network, part: dict) -> "Stages":
        rank = {p: i for i, p in enumerate(sorted(set(part.values())))}
        stage = {g: rank[p] for g, p in part.items()}
        delay, reader = {}, {}
        for g in net.groups:
            for s in net.inputs(g):
                ahead = stage[g] - stage[s]
                if ahead <= 0:
                    continue
                delay[s] = max(delay.get(s, 0), ahead)
                if s != INPUT and reader.setdefault(s, stage[g]) != stage[g]:
                    raise GraphError(f"pipelined DNI: group {s} is read by two later parts (stages {reader[s]} "
                                     f"and {stage[g]}); its module learns from one (cut so that it feeds one part, "
                                     "or leave pipelined off)")
        return cls(stage, delay, reader, max(stage.values()))

    def seen(self, s: int, g: int) -> int:
        """How many steps old what group g reads of s is (0: this step's)."""
        return max(self.stage[g] - self.stage[s], 0)
