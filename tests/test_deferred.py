"""Deferred work in one place (genlab/engines/cuda/deferred.py): every public entry point of a
CUDA engine either settles what the executor left pending (@settled) or is declared not to
(keeps_pending), and a settled one applies it before it runs. No GPU: the rule is host code."""

import inspect
from types import SimpleNamespace

import pytest

from genlab.engines.cuda import CudaEngine
from genlab.engines.cuda.decoupled import DecoupledCudaEngine
from genlab.engines.cuda.deferred import settled, settles
from genlab.engines.cuda.pipelined import PipelinedCudaEngine

ENGINES = [CudaEngine, DecoupledCudaEngine, PipelinedCudaEngine]


def _own_members(cls):
    """Public methods and properties that genlab's CUDA engine modules define, by name."""
    for name in dir(cls):
        if name.startswith("_"):
            continue
        member = inspect.getattr_static(cls, name)
        if isinstance(member, (staticmethod, classmethod)) or not (callable(member) or isinstance(member, property)):
            continue
        fn = member.fget if isinstance(member, property) else member
        if getattr(fn, "__module__", "").startswith("genlab.engines.cuda"):
            yield name, member


@pytest.mark.parametrize("cls", ENGINES, ids=lambda c: c.__name__)
def test_every_entry_point_settles_pending_work_or_says_it_keeps_it(cls):
    undecided = [name for name, m in _own_members(cls) if not settles(m) and name not in cls.keeps_pending]
    assert not undecided, f"{cls.__name__}: mark these @settled or add them to keeps_pending: {undecided}"
    both = [name for name, m in _own_members(cls) if settles(m) and name in cls.keeps_pending]
    assert not both, both
    members = {name for name, _ in _own_members(cls)}
    assert set(cls.keeps_pending) <= members, "keeps_pending names a member that is gone"


@pytest.mark.parametrize("cls", ENGINES, ids=lambda c: c.__name__)
def test_what_reads_or_replaces_parameters_settles(cls):
    for name in ("forward", "backward", "update", "params", "load", "use_executor", "apply_growth", "export_state",
                 "import_state", "measure", "share_parameters"):
        assert settles(inspect.getattr_static(cls, name)), name


def test_a_settled_call_applies_the_pending_work_first():
    order = []
    engine = SimpleNamespace(flush=lambda: order.append("flush"))

    @settled
    def read(e, x):
        order.append(("read", x))
        return x * 2

    assert read(engine, 21) == 42 and order == ["flush", ("read", 21)]
    assert settles(read) and read.__name__ == "read"
