"""The seams other work builds on: the engine interface, typed growth operations, the executor
registry and group kinds. None of this needs a GPU."""

import ast
import inspect
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from genlab import BackendError, FileFormatError, GraphError, GrowthPolicy, Network
from genlab import operations as op
from genlab.engines import Engine, SerialEngine
from genlab.engines.cuda import CudaEngine
from genlab.engines.cuda.executors import EXECUTORS, Executor, executor_class
from genlab.growth import Grower
from genlab.kinds import KINDS, get_kind
from genlab.kinds.dense import Dense
from genlab.optim import SGD

ROOT = Path(__file__).resolve().parent.parent


def test_both_engines_implement_the_interface_explicitly():
    with pytest.raises(TypeError):
        Engine()  # abstract
    for engine in (SerialEngine, CudaEngine):
        assert issubclass(engine, Engine) and not inspect.isabstract(engine), engine
        assert isinstance(engine.has_executors, bool)
        assert set(engine.dtypes) <= {"float32", "float64"}
    assert SerialEngine.grows_in_place is False
    assert isinstance(CudaEngine.grows_in_place, property)  # it depends on the loaded network's kinds
    assert (SerialEngine.has_executors, CudaEngine.has_executors) == (False, True)


def test_growth_logs_typed_operations():
    net = Network.mlp([4, 6, 6, 3], seed=0)
    engine = SerialEngine(net, SGD())
    grower = Grower(GrowthPolicy(threshold=-1.0, every=None, mode="alternate", cooldown=0, max_groups=20), seed=3)
    grower.attach(engine)
    rng = np.random.default_rng(0)
    engine.step(rng.normal(size=(8, 4)).astype(np.float32), rng.integers(0, 3, 8))
    work = net.copy(deep=False)
    events, log = grower.check(work, 1, engine)
    assert events and log[0] == op.Noise(3, 1)
    assert all(isinstance(o, (op.Noise, op.ParamOp, op.Move, op.Inherit, op.Fold)) for o in log)
    assert {type(o) for o in log} >= {op.Identity, op.Zero, op.Move, op.Inherit}
    engine.apply_growth(work, log)  # the serial engine takes the typed log as it is


def test_operation_records_carry_their_codes():
    offset = {("W", 2, 5): 100, ("W", 5, 1): 300, ("b", 5): 7}.__getitem__
    size = lambda key: 12
    ints, f = op.Split(("W", 2, 5), ("W", 5, 1), 0.5, 2, 1).record(offset, size)
    assert ints == (op.OpCode.SPLIT, 300, 100, 12, 0, 2, 1) and f == 0.5 and len(ints) == op.OP_INTS
    assert op.Identity(("W", 2, 5), 3).record(offset, size)[0][:5] == (op.OpCode.IDENTITY, 100, 0, 12, 3)
    assert op.ZeroState(40, 9).record(offset, size)[0][:4] == (op.OpCode.ZERO_STATE, 40, 0, 9)
    assert len({o.code for o in (op.Copy, op.Identity, op.Split, op.HeUniform, op.ZeroState, op.Zero)}) == 6


def test_the_executor_registry_is_the_one_list():
    assert list(EXECUTORS)[0] == "level"
    for name, cls in EXECUTORS.items():
        assert issubclass(cls, Executor) and cls.name == name and cls.chunk > 0
    with pytest.raises(BackendError, match=r"unknown executor 'fast'; choose 'auto', 'wavefront' \(recurrent networks\) or one of level, level_push"):
        executor_class("fast")


class _Linear(Dense):
    """A kind made for this test: a dense group without the ReLU."""

    name = "linear_test"

    def forward(self, spec, inputs, weights, bias):
        return super().forward(dataclasses.replace(spec, output=True), inputs, weights, bias)

    def backward(self, spec, grad_out, h, cache, bias):
        return grad_out, grad_out.sum(axis=0)


@pytest.fixture
def linear_kind(monkeypatch):
    monkeypatch.setitem(KINDS, _Linear.name, _Linear())
    return _Linear.name


def test_a_new_kind_is_its_own_file_and_a_registry_line(linear_kind):
    """Registered, a kind is usable by add_group, runs on the serial engine through its own
    forward and backward, is saved and loaded, and is refused by name by executors that do not
    list it."""
    net = Network(3, 2, seed=0)
    g = net.add_group(4, inputs=[net.input], outputs=[net.output], kind=linear_kind)
    assert net.kinds[g] == linear_kind and net.kind(g).name == linear_kind
    x = np.random.default_rng(0).normal(size=(5, 3))
    engine = SerialEngine(net, SGD(), dtype="float64")
    w1, w2, b1, b2 = net.weights[(0, g)], net.weights[(g, 1)], net.biases[g], net.biases[1]
    np.testing.assert_allclose(engine.forward(x), (x @ w1.T + b1) @ w2.T + b2, rtol=1e-6)  # no ReLU
    executor = Executor.__new__(executor_class("level"))
    with pytest.raises(BackendError, match="the level executor cannot run groups of kind linear_test"):
        executor.check_kinds({"dense", linear_kind})


def test_kinds_are_saved_and_old_files_load_as_dense(tmp_path, linear_kind):
    net = Network.mlp([3, 4, 2], seed=0)
    g = net.add_group(5, inputs=[net.input], outputs=[net.output], kind=linear_kind)
    assert Network.load(net.save(tmp_path / "a.npz")).kinds == net.kinds == {1: "dense", 2: "dense", g: linear_kind}
    path = Network.mlp([3, 4, 2], seed=0).save(tmp_path / "old.npz")
    with np.load(path) as f:  # a file from before kinds: its metadata has none
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    del meta["kinds"]
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    assert Network.load(path).kinds == {1: "dense", 2: "dense"}
    meta["kinds"] = {"2": "hexagonal"}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(FileFormatError, match="unknown group kind 'hexagonal'"):
        Network.load(path)


def test_an_unknown_kind_is_refused_and_changes_nothing():
    net = Network.mlp([3, 4, 2], seed=0)
    before = (dict(net.widths), dict(net.kinds), net.edges)
    with pytest.raises(GraphError, match="unknown group kind 'hexagonal'; choose one of dense, conv, attention"):
        net.add_group(4, inputs=[net.input], kind="hexagonal")
    with pytest.raises(GraphError, match="a conv group runs in a network of image inputs"):
        net.add_group(4, inputs=[net.input], kind="conv")
    with pytest.raises(GraphError, match="a dense group takes no options; got kernel"):
        net.add_group(4, inputs=[net.input], kernel=3)
    assert (dict(net.widths), dict(net.kinds), net.edges) == before
    assert get_kind("dense").edge_shape(net.spec(2), 5) == (4, 5)


def test_growth_copies_keep_their_source_kind(linear_kind):
    from genlab.growth import duplicate_depth, duplicate_width

    net = Network(3, 2, seed=0)
    g = net.add_group(4, inputs=[net.input], outputs=[net.output], kind=linear_kind)
    deep = duplicate_depth(net, g, 1, 0)
    wide = duplicate_width(net, g, 2, 0)
    assert net.kinds[deep] == net.kinds[wide] == linear_kind


def _engine_classes():
    from genlab.asynchronous.decoupled import DecoupledEngine
    from genlab.asynchronous.pipeline import PipelinedEngine
    from genlab.distributed.partitioned import PartitionedEngine
    from genlab.engines.cuda.decoupled import DecoupledCudaEngine
    from genlab.engines.cuda.pipelined import PipelinedCudaEngine
    from genlab.engines.cuda.recurrent import RecurrentCudaEngine
    from genlab.engines.cuda.recurrent_wavefront import WavefrontCudaEngine

    return [SerialEngine, CudaEngine, RecurrentCudaEngine, WavefrontCudaEngine, DecoupledCudaEngine,
            PipelinedCudaEngine, DecoupledEngine, PipelinedEngine, PartitionedEngine]


def test_engines_declare_what_they_can_do_instead_of_raising():
    """Taking a step in parts is the Stepwise capability: the partitioned engine, which runs whole
    steps, lacks it (no backward or update that only raises); no engine method anywhere is a lone
    raise."""
    from genlab.distributed.partitioned import PartitionedEngine
    from genlab.engines import Stepwise

    engines = _engine_classes()
    assert [cls.__name__ for cls in engines if not issubclass(cls, Stepwise)] == ["PartitionedEngine"]
    assert issubclass(PartitionedEngine, Engine) and not hasattr(PartitionedEngine, "backward")
    for cls in engines:
        for name, member in vars(cls).items():
            if not inspect.isfunction(member):
                continue
            body = ast.parse(inspect.cleandoc("\n" + inspect.getsource(member))).body[0].body
            body = [b for b in body if not (isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant))]
            assert not (len(body) == 1 and isinstance(body[0], ast.Raise)), f"{cls.__name__}.{name} only raises"


def test_the_checkpoint_reads_trainers_and_networks_through_their_public_accessors():
    """checkpoint.py builds and reads trainers and networks it does not own: no private attribute
    of another object (trainer._net, net._rng, ...), so either may change inside freely."""
    tree = ast.parse((ROOT / "genlab" / "checkpoint.py").read_text())
    private = sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                      and node.attr.startswith("_") and not node.attr.startswith("__")})
    assert private == []


def test_no_module_outside_the_network_package_touches_a_networks_private_fields():
    """A Network's private fields (those its __init__ sets with a leading underscore) are read and
    written only inside genlab/network/: growth's unchecked edits live there (duplication.py), and
    the trainer and checkpoint use its public members."""
    core = (ROOT / "genlab" / "network" / "core.py").read_text()
    private = set(re.findall(r"self\.(_[a-z]\w*)\s*(?::[^=]*)?=", core))
    assert {"_weights", "_biases", "_in", "_out", "_rng", "_next_id"} <= private
    found = []
    for path in sorted((ROOT / "genlab").rglob("*.py")):
        if (ROOT / "genlab" / "network") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in private and not (
                    isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert found == []


def _members(protocol) -> set[str]:
    """The names a Protocol declares, its bases' included."""
    return {n for cls in protocol.__mro__[:-1] if cls.__module__ == protocol.__module__
            for n in vars(cls) if not n.startswith("_")}


def _not_on_the_engine(members: set[str]) -> list[str]:
    """The members a CUDA engine (on the stand-in GPU) does not provide."""
    from genlab.optim import Adam

    engine = CudaEngine(Network.mlp([4, 6, 3], seed=0), Adam())
    return [m for m in sorted(members) if not hasattr(engine, m)]


def _context_reads(path: Path):
    """(line, protocol, attribute) for every attribute read of a parameter annotated with a context
    protocol of engines/cuda/context.py, and (line, "CudaEngine", name) for a parameter that takes
    the whole engine."""
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        typed = {a.arg: a.annotation.value for a in fn.args.args + fn.args.kwonlyargs
                 if isinstance(a.annotation, ast.Constant) and isinstance(a.annotation.value, str)}
        for name, protocol in typed.items():
            if protocol == "CudaEngine":
                yield fn.lineno, protocol, name
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and typed.get(
                    node.value.id) in ("PassContext", "KindContext"):
                yield node.lineno, typed[node.value.id], node.attr


def test_the_passes_and_the_kinds_hooks_read_only_their_context_of_the_engine(fake_gpu):
    """The level passes see a PassContext of the engine and a kind's CUDA hooks a KindContext
    (engines/cuda/context.py): no parameter there takes the whole engine, no read goes past the
    interface, and the CUDA engine provides every member of both."""
    from genlab.engines.cuda.context import KindContext, PassContext

    allowed = {"PassContext": _members(PassContext), "KindContext": _members(KindContext)}
    assert allowed["KindContext"] == {"layout", "dev", "launch", "batch_cap", "block"}
    assert allowed["PassContext"] > allowed["KindContext"]
    cuda = ROOT / "genlab" / "engines" / "cuda"
    modules = [cuda / "kind_cuda.py", *[cuda / "executors" / f"{m}.py" for m in ("passes", "kinds", "output_parts",
                                                                                     "split")],
               *sorted((ROOT / "genlab" / "kinds").glob("*/cuda.py"))]
    reads, beyond = set(), []
    for path in modules:
        for line, protocol, attr in _context_reads(path):
            reads.add((protocol, attr))
            if attr not in allowed.get(protocol, ()):
                beyond.append(f"{path.relative_to(ROOT)}:{line} {protocol} .{attr}")
    assert beyond == []
    assert {("PassContext", "executor"), ("PassContext", "layout"), ("KindContext", "launch")} <= reads
    assert _not_on_the_engine(allowed["PassContext"]) == []


def _is_self_engine(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "engine" and isinstance(node.value, ast.Name)
            and node.value.id == "self")


def _executor_reads(path: Path):
    """(line, attribute) for every read of the engine in an executor module: `self.engine.X`,
    `e.X` where `e = self.engine` (or `e, ... = self.engine, ...`), and `engine.X` where a method
    takes the engine as `engine`."""
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        names = {a.arg for a in fn.args.args if a.arg == "engine"}
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                t, v = node.targets[0], node.value
                pairs = (zip(t.elts, v.elts) if isinstance(t, ast.Tuple) and isinstance(v, ast.Tuple)
                         else [(t, v)])
                names |= {a.id for a, b in pairs if isinstance(a, ast.Name) and _is_self_engine(b)}
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and (_is_self_engine(node.value) or (
                    isinstance(node.value, ast.Name) and node.value.id in names)):
                yield node.lineno, node.attr


def test_the_executors_read_only_their_context_of_the_engine(fake_gpu):
    """An executor sees an ExecutorContext of the engine (engines/cuda/context.py): no read of the
    engine in the executors' modules goes past it, and the CUDA engine provides every member.
    (The pipelined and decoupled engines' own executors are written for their engine.)"""
    from genlab.engines.cuda.context import ExecutorContext, PassContext

    allowed = _members(ExecutorContext)
    assert allowed > _members(PassContext) and {"drv", "stream", "put_batch"} <= allowed
    folder = ROOT / "genlab" / "engines" / "cuda" / "executors"
    reads, beyond = set(), []
    for path in sorted(folder.glob("*.py")):
        for line, attr in _executor_reads(path):
            reads.add(attr)
            if attr not in allowed:
                beyond.append(f"{path.relative_to(ROOT)}:{line} .{attr}")
    assert beyond == []
    assert {"layout", "dev", "mem", "drv", "device", "launch", "put_batch", "read_scalars"} <= reads
    assert _not_on_the_engine(allowed) == []


def test_the_scores_record_types_each_of_its_fields():
    from genlab.engines.cuda.growth import GROUP_STATE
    from genlab.engines.cuda.records import Scores

    assert list(Scores.TYPES) == list(Scores.names()) == [name for name, _ in GROUP_STATE]


def test_functions_stay_short():
    """No function of genlab over 80 lines. A module's length is left to judgement: it holds one
    idea (ARCHITECTURE.md), and the import graph test keeps the floors one-way; a cap on lines
    only made modules split where the idea did not."""
    for path in (ROOT / "genlab").rglob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno < 80, (path, node.name)


def test_closed_sets_take_a_name_or_a_member_and_refuse_others():
    from genlab import ArgumentError
    from genlab.backends import Backend, resolve
    from genlab.policy import GrowthMode, Sibling

    assert GrowthPolicy(mode="depth").mode is GrowthMode.DEPTH
    assert GrowthPolicy(mode=GrowthMode.WIDTH, sibling="split").sibling is Sibling.SPLIT
    with pytest.raises(ArgumentError, match="unknown growth mode 'sideways'; choose one of depth, width"):
        GrowthPolicy(mode="sideways")
    assert resolve("serial") is Backend.SERIAL and resolve(Backend.SERIAL) is Backend.SERIAL
    with pytest.raises(BackendError, match="unknown backend 'gpu'; choose one of auto, serial, cuda"):
        resolve("gpu")


def test_growth_events_are_typed_and_saved_by_name(tmp_path):
    from genlab import Trainer
    from genlab.operations import Change

    net = Network.mlp([4, 6, 3], seed=0)
    trainer = Trainer(net, backend="serial", seed=0, growth=GrowthPolicy(every=None, mode="alternate"))
    events = trainer.grow([2]) + trainer.grow([2])
    assert [e.kind for e in events] == [Change.DEPTH, Change.WIDTH]
    path = trainer.net.save(tmp_path / "grown.npz")
    text = json.dumps(Network.load(path).history)
    assert '"kind": "depth"' in text and '"kind": "width"' in text  # the file holds names, not members


def test_the_command_line_offers_what_the_registries_hold():
    from genlab.checks import FLOAT_DTYPES
    from genlab.cli import build_parser
    from genlab.distributed.modes import MODES
    from genlab.optim import OPTIMIZERS
    from genlab.starts import BUILDERS, STARTS

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    offered = {a.dest: list(a.choices) for a in train._actions if a.choices}
    assert offered["kind"] == list(BUILDERS) and offered["start"] == list(STARTS)
    assert offered["optimizer"] == list(OPTIMIZERS) and offered["dtype"] == list(FLOAT_DTYPES)
    assert offered["distributed"] == list(MODES)
