"""The serial engine with the network's backward cut into parts: DNI's step computed one part
after another (genlab.asynchronous.dni says what the parts and modules are)."""

from __future__ import annotations

from collections import deque

import numpy as np

from .. import shapes
from ..cuts import ERRORS, Interface, checked_width, module_entry, parts, relative_error
from ..engines.serial import SerialEngine
from ..errors import BackendError, GraphError, TrainingError
from ..network import INPUT, OUTPUT, Network
from ..optim import Adam
from ..precision import DEFAULT as FP32
from ..precision import Precision


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


def _relative(prediction: np.ndarray, truth: np.ndarray) -> float:
    return relative_error(float(np.linalg.norm(prediction - truth)), float(np.linalg.norm(truth)))
