"""Decoupled neural interfaces with synthetic gradients (Jaderberg et al. 2017).

Trainer(net, decouple=genlab.DNI(cuts=[a, b])) cuts the network after groups a and b: part 0 is
a and every group it depends on, part 1 what b adds to that, part 2 the rest. Where an edge
leaves a part for a later one, the group it leaves from is a *boundary* group, and a small module
M (linear in h; with conditioned=True also in the label, cDNI) predicts the share of dL/dh that
the later parts send back. The earlier part's backward uses the prediction instead of waiting
for the true share; the true share, when the later part has computed it, is the module's target
(its loss: half the mean squared error, per sample). A later part's own backward may itself use
synthetic gradients from further up: the targets bootstrap, as in the paper.

Here the parts run one after another on the serial engine (decoupled.py; the parts and modules
themselves: genlab.cuts), so the step computes exactly what a
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

from dataclasses import dataclass

from .. import checks
from ..backends import Backend, resolve
from ..distributed.modes import Alone
from ..errors import ArgumentError, ArgumentTypeError, BackendError
from ..precision import DEFAULT as FP32
from .decoupled import DecoupledEngine
from .pipeline import PipelinedEngine


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
        from ..engines.cuda.executors import AUTO

        d = self.dni
        if resolve(backend) is Backend.CUDA:  # its step on the GPU (engines/cuda/decoupled.py, pipelined.py)
            if d.pipelined:
                from ..engines.cuda.pipelined import PipelinedCudaEngine as engine
            else:
                from ..engines.cuda.decoupled import DecoupledCudaEngine as engine

            return engine(net, optimizer, dtype, d.cuts, d.conditioned, d.lr, executor, precision)
        if executor not in (None, AUTO) and backend == Backend.SERIAL:
            raise BackendError(f"executor {executor!r} is a schedule of the CUDA engine; the serial engine runs one "
                               "group after another (leave executor unset, or use backend='cuda')")
        if d.pipelined:
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
