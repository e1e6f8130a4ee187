"""Synthetic gradients at the partitioned engine's cut (genlab.DNI on distributed="partitioned").

In a pipeline partition every message goes to a later process. Synchronously, a process waits
for the dL/dh of what it sent before its backward (passes.backward_fused). Decoupled, it does
not wait: for each (level, reader) message a module predicts that dL/dh from the columns it sent
(and the label, conditioned), its backward runs at once on the prediction, and the true dL/dh,
received meanwhile, teaches the module after the step's update (learn). The later process
computes and sends exactly as before.

The modules are those of genlab.asynchronous.dni written in torch: linear, zero at the start,
in per-sample units (they predict the step's row count times dL/dh), trained by genlab.optim's
Adam on half the mean squared error over the step's rows (all micro-batches together).
"""

from __future__ import annotations

from collections import deque

from ..cuts import ERRORS, relative_error
from ..optim import Adam
from . import tensor_optim


class Synthetic:
    """The modules of one process's messages, and the true gradients it is waiting for."""

    def __init__(self, torch, device, dtype, classes: int, conditioned: bool, lr: float):
        self.torch, self.device, self.dtype = torch, device, dtype
        self.classes, self.conditioned = classes, conditioned
        self.adam = Adam(lr=lr)  # the serial engine's modules' optimizer: its NumPy formulas run on tensors too
        self.modules: dict = {}  # (level, reader) -> {"W", "b", ("C")} tensors, and their Adam state
        self.pending: list = []  # per micro-batch: [(key, h columns, labels, buffer the truth arrives in, its sender)]
        self.received = 0  # the micro-batches of pending whose truth has arrived
        self.errors = deque(maxlen=ERRORS)  # per step: {(level, reader): |prediction - truth| / |truth|}

    def _module(self, key, width: int) -> dict:
        m = self.modules.get(key)
        if m is None or m["W"].shape[0] != width:
            t = self.torch
            zeros = lambda *shape: t.zeros(*shape, dtype=self.dtype, device=self.device, requires_grad=True)
            m = {"W": zeros(width, width), "b": zeros(width)}
            if self.conditioned:
                m["C"] = zeros(self.classes, width)
            names = list(m)
            m["state"] = {name: [t.zeros_like(m[k]) for k in names] for name in ("t", "m", "v")}  # Adam's, per tensor
            self.modules[key] = m
        return m

    def _per_sample(self, m: dict, h, y):
        out = h @ m["W"] + m["b"]
        if "C" in m:
            out = out + m["C"][y]
        return out

    def predict(self, messages: list, n: int) -> list:
        """A micro-batch's predicted dL/dh of what it sent: messages are (key, the columns sent,
        their labels, the buffer the truth is to arrive in, its sender), in the order the
        synchronous backward receives them; the step has n rows."""
        out = []
        with self.torch.no_grad():
            for key, h, y, truth, sender in messages:
                m = self._module(key, h.shape[1])
                out.append(self._per_sample(m, h.detach(), y) / n)
        self.pending.append([(key, h.detach(), y, truth, sender) for key, h, y, truth, sender in messages])
        return out

    def receive(self, world) -> None:
        """The true gradients of the micro-batches predicted since the last call, received in the
        order they were sent: called after each micro-batch's own backward (which ran meanwhile;
        between CPU processes a receive waits for its sender)."""
        for messages in self.pending[self.received:]:
            world.wait(world.exchange([], [(truth, sender) for _, _, _, truth, sender in messages]))
        self.received = len(self.pending)

    def forget(self) -> None:
        """Drop this step's messages (a step refused before the modules learn from it)."""
        self.pending, self.received = [], 0

    def learn(self, n: int) -> None:
        """One Adam step of every module from the true gradients received (receive)."""
        t, by_key = self.torch, {}
        for messages in self.pending:
            for key, h, y, truth, _ in messages:
                by_key.setdefault(key, []).append((h, y, truth))
        self.forget()
        errors = {}
        for key, parts in by_key.items():
            m = self.modules[key]
            h, y, truth = (t.cat([p[i] for p in parts]) for i in range(3))
            target = truth * n
            prediction = self._per_sample(m, h, y)
            loss = 0.5 * ((prediction - target) ** 2).sum() / len(h)
            params = [m[k] for k in ("W", "b", "C") if k in m]
            grads = list(t.autograd.grad(loss, params))
            with t.no_grad():
                tensor_optim.update(self.adam, params, grads, m["state"])
            miss = float(t.linalg.norm(prediction.detach() - target))
            errors[key] = relative_error(miss, float(t.linalg.norm(target)))
        self.errors.append(errors)
