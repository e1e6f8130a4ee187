"""Export: a genlab Network as a torch.nn.Module computing the same function (to_torch), and as an
ONNX file (to_onnx, through torch.onnx.export). PyTorch stays optional: it is imported when either
is called."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

from .errors import ArgumentError
from .network import INPUT, OUTPUT, Network


def to_torch(net: Network):
    """A torch.nn.Module computing net's logits: each group through its kind's torch_forward, in
    topological order, with the network's parameters copied (dtype kept) as named parameters
    (W_<src>_<dst>, b_<group>), in eval mode, ready to predict and to export (`.train()` before
    training it like any module); genlab's network is left as it is.
    A recurrent network's module reads sequences (batch, steps, features) and runs its groups
    step by step (zeros before a delayed edge's source exists), giving the logits of the last step.

        >>> module = genlab.to_torch(net)
        >>> logits = module(torch.from_numpy(X))
        >>> genlab.to_onnx(net, "net.onnx")   # or torch.onnx.export(module, ...) yourself
    """
    import torch

    net.validate()

    class GenlabModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.order = [g for g in net.topological_order() if g != INPUT]
            self.sources = {g: net.inputs(g) for g in self.order}
            self.kinds = {g: net.kind(g) for g in self.order}
            self.specs = {g: net.spec(g) for g in self.order}
            self.input_shape = net.input_shape
            self.weights = torch.nn.ParameterDict(
                {f"W_{s}_{d}": torch.nn.Parameter(torch.from_numpy(w.copy())) for (s, d), w in net.weights.items()})
            self.biases = torch.nn.ParameterDict(
                {f"b_{g}": torch.nn.Parameter(torch.from_numpy(b.copy())) for g, b in net.biases.items()})
            self.n_inputs, self.n_outputs = net.n_inputs, net.n_outputs
            self.delays, self.widths = dict(net.delays), dict(net.widths)

        def forward(self, x):
            if not self.delays:
                return self._step({INPUT: x.reshape(x.shape[0], *self.input_shape)}, [])[OUTPUT]
            past = []
            for t in range(x.shape[1]):
                past.append(self._step({INPUT: x[:, t]}, past))
            return past[-1][OUTPUT]

        def _step(self, h: dict, past: list) -> dict:
            """One time step: every group in order; a delayed edge reads `past` (zeros before it)."""
            for g in self.order:
                sources = self.sources[g]
                values = [self._read(h, past, s, self.delays.get((s, g), 0)) for s in sources]
                h[g] = self.kinds[g].torch_forward(self.specs[g], values, [self.weights[f"W_{s}_{g}"] for s in sources],
                                                   self.biases[f"b_{g}"])
            return h

        def _read(self, h: dict, past: list, s: int, delay: int):
            if delay == 0:
                return h[s]
            if len(past) >= delay:
                return past[-delay][s]
            x = h[INPUT]
            return x.new_zeros((x.shape[0], self.widths[s]))

        def extra_repr(self) -> str:
            return f"groups={len(self.order) + 1}, inputs={self.n_inputs}, outputs={self.n_outputs}"

    return GenlabModule().eval()


@contextlib.contextmanager
def _exporter_quiet():
    """torch's ONNX exporter's own notes, which say nothing about the network: its progress, the
    optional torchvision operators it skips, a FutureWarning about its deprecated pytree API."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def to_onnx(net: Network, path, steps: int | None = None) -> Path:
    """Write `net` as an ONNX model to exactly `path` (atomically: a failure leaves the file there
    before intact), reading a batch of any size and giving the logits; return the path. A
    recurrent network reads sequences of `steps` steps (needed: the export unrolls them).
    Needs torch, onnx and onnxscript."""
    import io

    import torch

    from .files import write_atomically

    if net.recurrent and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ArgumentError(f"a recurrent network is exported for sequences of a fixed length: pass steps= "
                            f"(a positive int), not {steps!r}")
    if not net.recurrent and steps is not None:
        raise ArgumentError("steps= is for recurrent networks; this one reads no sequence")
    module = to_torch(net)
    dtype = next(module.parameters()).dtype
    shape = (2, steps, *net.input_shape) if net.recurrent else (2, *net.input_shape)
    with _exporter_quiet():
        program = torch.onnx.export(module, (torch.zeros(shape, dtype=dtype),), verbose=False,
                                    dynamic_shapes=({0: torch.export.Dim("batch")},))
    data = io.BytesIO()
    program.save(data)
    return write_atomically(path, lambda f: f.write(data.getvalue()))
