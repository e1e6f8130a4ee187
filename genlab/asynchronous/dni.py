"""Decoupled neural interfaces with synthetic gradients (Jaderberg et al. 2017).

Trainer(net, decouple=genlab.DNI(cuts=[a, b])) cuts the network after groups a and b: part 0 is
a and every group it depends on, part 1 what b adds to that, part 2 the rest. Where an edge
leaves a part for a later one, the group it leaves from is a *boundary* group, and a small module
M (linear in h; with conditioned=True also in the label, cDNI) predicts the share of dL/dh that
the later parts send back. The earlier part's backward uses the prediction instead of waiting
for the true share; the true share, when the later part has computed it, is the module's target
(its loss: half the mean squared error, per sample). A later part's own backward may itself use
synthetic gradients from further up: the targets bootstrap, as in the paper.

Here the parts run one after another on the serial engine, so the step computes exactly what a
decoupled run computes (the lower part updates from the prediction, the module from the truth);
the CUDA engine computes the same step on the GPU (genlab.engines.cuda.decoupled).
The parts run side by side on the partitioned engine (Trainer(distributed="partitioned",
decouple=DNI()), genlab.distributed.synthetic), which computes the same to float32 rounding. Modules start at
zero (the first steps train the lower parts on their own groups' gradients only). The modules
live in per-sample units: M predicts batch * dL/dh (the gradient of a sample's loss), so its
scale does not depend on the batch size. Growth is followed: after any change to the network
the parts are found again from the same cut groups, modules kept where their group still
crosses with the same width.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .. import checks, shapes
from ..distributed.modes import Alone
from ..engines.serial import SerialEngine
from ..errors import ArgumentError, ArgumentTypeError, BackendError, GraphError, TrainingError
from ..network import INPUT, OUTPUT, Network
from ..optim import Adam
from ..precision import DEFAULT as FP32
from ..precision import Precision


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


class DecoupledEngine(SerialEngine):
    """The serial engine with the network's backward cut into parts (module text)."""

    def __init__(self, net: Network, optimizer, dtype, cuts: tuple[int, ...], conditioned: bool, lr: float = 1e-3,
                 precision: Precision = FP32):
        self.cuts, self.conditioned = cuts, conditioned
        self.pinned = frozenset(cuts)  # pruning keeps the cut groups
        self.module_optimizer = Adam(lr=lr)  # the modules' own: Adam meets their per-sample scale whatever the network's
        self.interfaces: dict[int, Interface] = {}
        self.errors = deque(maxlen=ERRORS)  # per step: {boundary group: |M - truth| / |truth|}
        self._pending: dict = {}
        super().__init__(net, optimizer, dtype, precision)

    def load(self, net: Network) -> None:
        if net.recurrent:
            raise BackendError("DNI cuts a feed-forward network; this one has edges with a delay")
        for c in self.cuts:
            if c not in net.widths or c in (INPUT, OUTPUT):
                raise GraphError(f"DNI cut group {c} is not a hidden group of the network")
        super().load(net)
        self.part = parts(net, self.cuts)
        self.crossing = {(s, g) for g in self.order for s in self.inputs[g]
                         if s != INPUT and self.part[g] > self.part[s]}
        self.boundary = {s for s, _ in self.crossing}
        self.columns = {g: shapes.columns(net, g) for g in self.boundary}
        self.interfaces = {g: m for g, m in self.interfaces.items() if g in self.boundary}  # made at first use
        self.classes = net.n_outputs

    # the backward's two hooks (SerialEngine.backward)
    def send(self, dh, s, g, share):
        if (s, g) in self.crossing:  # the later part's share: the module's target, not the backward's input
            self._true[s] = self._true[s] + share if s in self._true else share
        else:
            super().send(dh, s, g, share)

    def received(self, g, grad_out, h, y):
        if g not in self.boundary:
            return grad_out
        module = self.module(g, h[0].size)
        predicted = module.predict(h, y)  # per sample; the module's error and update read it too
        self._pending[g] = (h, y, self._true.pop(g) * len(h), predicted)
        synthetic = predicted / len(h)
        return synthetic if grad_out is None else grad_out + synthetic

    def module(self, g: int, size: int) -> Interface:
        """Boundary group g's module, made (at zero) for a new boundary group or one growth made wider."""
        module = self.interfaces.get(g)
        if module is None or module.width != size:
            module = self.interfaces[g] = Interface(size, self.classes, self.conditioned, self.dtype)
        return module

    def export_modules(self) -> dict[int, dict[str, np.ndarray]]:
        """{boundary group: its module} for a checkpoint (module_entry's form)."""
        return {g: module_entry(m.params, m.state) for g, m in self.interfaces.items()}

    def import_modules(self, saved: dict[int, dict[str, np.ndarray]]) -> None:
        """Take modules from a checkpoint (module_entry's form) where their group is a boundary
        group of this width; GraphError where one is not."""
        for g, entry in saved.items():
            module = Interface(checked_width(entry, g, self.boundary, self.columns, self.conditioned, self.classes),
                               self.classes, self.conditioned, self.dtype)
            for name in module.params:
                module.params[name][...] = entry[name]
                if int(entry.get(f"t_{name}", 0)):
                    module.state[name] = {"t": int(entry[f"t_{name}"]), "m": entry[f"m_{name}"].astype(self.dtype),
                                          "v": entry[f"v_{name}"].astype(self.dtype)}
            self.interfaces[g] = module

    def backward(self, y):
        self._true, self._pending = {}, {}
        loss = super().backward(y)
        self.errors.append({g: _relative(predicted, t) for g, (_, _, t, predicted) in self._pending.items()})
        return loss

    def update(self) -> None:
        """The modules' update first (refused whole if it would make one non-finite), then the network's."""
        backup = {g: {k: v.copy() for k, v in m.params.items()} for g, m in self.interfaces.items()}
        with np.errstate(over="ignore", invalid="ignore"):
            for g, (h, y, target, predicted) in self._pending.items():
                module = self.interfaces[g]
                _, grads = module.loss_and_grads(h, y, target, predicted)
                for name, grad in grads.items():
                    self.module_optimizer.update(module.params[name], grad, module.state[name])
        if not all(np.isfinite(v).all() for m in self.interfaces.values() for v in m.params.values()):
            for g, saved in backup.items():
                self.interfaces[g].params.update(saved)
            raise TrainingError("this step would have made a synthetic-gradient module non-finite; it was not applied "
                                "(lower the learning rate)")
        super().update()


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


def _relative(prediction: np.ndarray, truth: np.ndarray) -> float:
    return relative_error(float(np.linalg.norm(prediction - truth)), float(np.linalg.norm(truth)))


def decoupled(trainer) -> bool:
    """Whether the trainer runs synthetic gradients in one process (the serial or the CUDA engine's
    cut: its engine has modules, errors and crossing edges)."""
    return isinstance(trainer.mode, Decoupled)


class Decoupled(Alone):
    """The trainer's mode under DNI: one process, the decoupled serial or CUDA engine."""

    def __init__(self, dni: "DNI"):
        super().__init__(None)
        self.dni = dni

    def engine(self, backend, net, optimizer, dtype, executor, precision=FP32):
        from ..backends import resolve

        d = self.dni
        if resolve(backend) == "cuda":  # its step on the GPU (engines/cuda/decoupled.py, pipelined.py)
            if d.pipelined:
                from ..engines.cuda.pipelined import PipelinedCudaEngine as engine
            else:
                from ..engines.cuda.decoupled import DecoupledCudaEngine as engine

            return engine(net, optimizer, dtype, d.cuts, d.conditioned, d.lr, executor, precision)
        if executor not in (None, "auto") and backend == "serial":
            raise BackendError(f"executor {executor!r} is a schedule of the CUDA engine; the serial engine runs one "
                               "group after another (leave executor unset, or use backend='cuda')")
        if d.pipelined:
            from .pipeline import PipelinedEngine

            return PipelinedEngine(net, optimizer, dtype, d.cuts, d.conditioned, d.lr, precision)
        return DecoupledEngine(net, optimizer, dtype, d.cuts, d.conditioned, d.lr, precision)


@dataclass(frozen=True)
class DNI:
    """Trainer(decouple=DNI(cuts=[group, ...], conditioned=False, lr=1e-3, pipelined=False)):
    synthetic gradients at each cut (module text). cuts: hidden groups, each the top of a part
    (None, with distributed="partitioned": the partition's cut, genlab.distributed.synthetic);
    conditioned: the modules read the label too (cDNI); lr: the modules' Adam learning rate;
    pipelined: each part works on its own batch, the later parts on earlier batches, so no part
    waits for another's forward either (genlab.asynchronous.pipeline)."""

    cuts: tuple | None = None
    conditioned: bool = False
    lr: float = 1e-3
    pipelined: bool = False

    def __post_init__(self):
        if self.cuts is not None:
            cuts = tuple(checks.group_id(c, "DNI cut") for c in checks.id_list(self.cuts, "DNI cuts"))
            if not cuts:
                raise ArgumentError("DNI needs at least one cut group")
            if len(set(cuts)) != len(cuts):
                raise ArgumentError(f"DNI cuts repeat a group: {list(cuts)}")
            object.__setattr__(self, "cuts", cuts)
        checks.boolean(self.conditioned, "DNI conditioned")
        checks.boolean(self.pipelined, "DNI pipelined")
        checks.real(self.lr, "DNI lr", 0.0, None, low_open=True)

    def mode(self) -> Decoupled:
        return Decoupled(self)


def mode_of(decouple, mode):
    """Trainer(decouple=...)'s mode, from the one distributed= gave: one process (the decoupled
    serial engine at the given cuts) or partitioned (synthetic gradients at the partition's cut);
    ArgumentTypeError or ArgumentError for what it cannot be."""
    from ..distributed.partitioned import Partitioned

    if not isinstance(decouple, DNI):
        raise ArgumentTypeError(f"decouple must be a genlab.DNI or None, got {type(decouple).__name__}")
    if isinstance(mode, Partitioned):
        if decouple.cuts is not None:
            raise ArgumentError("with distributed='partitioned' the cut is the partition's: leave DNI's cuts unset")
        if decouple.pipelined:
            raise ArgumentError("DNI(pipelined=True) pipelines the parts in one process; with "
                                "distributed='partitioned' they already run side by side (leave pipelined off)")
        mode.decouple = decouple
        return mode
    if mode.world is not None:
        raise ArgumentError("decouple=DNI(...) runs in one process or with distributed='partitioned'")
    if decouple.cuts is None:
        raise ArgumentError("DNI needs cuts=[group, ...] (without them it cuts where distributed='partitioned' "
                            "does)")
    return decouple.mode()
