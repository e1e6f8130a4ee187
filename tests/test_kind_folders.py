"""A group kind with kernels of its own is a folder (genlab/kinds/<name>/: reference.py, the kind;
cuda.py, its CUDA side) and a line in KINDS: the CUDA engine finds its side there and asks it, and
no engine module names the kind. Runs without a GPU (the lists and the dispatch are host code)."""

import ast
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from genlab import BackendError, Network
from genlab.engines.cuda import kind_cuda
from genlab.engines.cuda.constants import GEO_FIELDS
from genlab.engines.cuda.executors import kinds as launches
from genlab.engines.cuda.layout import Layout
from genlab.engines.cuda.runtime import Launches, kernel_names
from genlab.kinds import KINDS

ROOT = Path(__file__).resolve().parents[1]
OWN = [kind for kind in KINDS.values() if kind.own_kernels]


@pytest.mark.parametrize("kind", OWN, ids=lambda k: k.name)
def test_a_kind_with_kernels_is_a_folder_whose_cuda_side_the_engine_finds(kind):
    folder = ROOT / "genlab" / "kinds" / kind.name
    assert type(kind).__module__ == f"genlab.kinds.{kind.name}.reference"
    assert {p.name for p in folder.glob("*.py")} >= {"__init__.py", "reference.py", "cuda.py"}
    for name in ("__init__.py", "reference.py"):  # the kind never imports its CUDA side (it stands above)
        for node in ast.walk(ast.parse((folder / name).read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "cuda" not in (node.module or "") and "cuda" not in {a.name for a in node.names}, name
    hooks = kind_cuda.of(kind)
    assert isinstance(hooks, kind_cuda.KindCuda) and hooks.kind is type(kind)
    assert kind_cuda.by_code(kind.code) is hooks
    source = (ROOT / "cuda" / f"{kind.name}.cu").read_text()
    defined = set(kernel_names(source))
    assert set(kind.cuda_kernels) <= defined, set(kind.cuda_kernels) - defined


def test_no_engine_module_names_a_kind_with_kernels_of_its_own():
    """The engine reaches conv and attention only through kind_cuda (dense, which the task lists
    run, is the engine's own)."""
    names = {type(kind).__name__ for kind in OWN}
    for path in (ROOT / "genlab" / "engines").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not any(f"kinds.{k.name}" in node.module for k in OWN), (path, node.module)
                assert not names & {a.name for a in node.names}, (path, [a.name for a in node.names])


TOY = '''
from genlab.kinds.dense import Dense

class Toy(Dense):
    """A dense group run by kernels of its own (none exist: the lists and dispatch are tested)."""
    name = "toy_test"
    code = 9
    own_kernels = True
'''

TOY_CUDA = '''
from genlab.engines.cuda.kind_cuda import KindCuda
from . import Toy

CALLS = []

class ToyCuda(KindCuda):
    kind = Toy
    zero_own = True

    def geometry(self, options, row, field):
        row[field["HEADS"]] = 7

    def cache_floats(self, net, g):
        return 3 * net.widths[g]

    def forward(self, e, listed, slots, rows):
        CALLS.append(("forward", listed, list(slots), rows))

    def backward(self, e, listed, slots, rows):
        CALLS.append(("backward", listed, list(slots), rows))

    def gradients(self, e, rows):
        CALLS.append(("gradients", rows))

CUDA = ToyCuda()
'''


@pytest.fixture
def toy_kind(tmp_path, monkeypatch):
    """A kind in a folder outside genlab, registered by one line (here: monkeypatched into KINDS)."""
    package = tmp_path / "toy_kind_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(TOY))
    (package / "cuda.py").write_text(textwrap.dedent(TOY_CUDA))
    monkeypatch.syspath_prepend(str(tmp_path))
    from toy_kind_pkg import Toy

    monkeypatch.setitem(KINDS, Toy.name, Toy())
    yield Toy.name
    kind_cuda._FOUND.pop(Toy.code, None)
    for name in ("toy_kind_pkg", "toy_kind_pkg.cuda"):
        sys.modules.pop(name, None)


def test_a_new_kind_folder_and_its_registry_line_are_all_the_cuda_engine_needs(toy_kind):
    """The host lists take the toy kind's hooks (its geometry, slots by level, in-edges, own
    vectors zeroed, its cache), and the level passes' launches of other kinds call its forward,
    backward and gradients with its slots."""
    net = Network(3, 2, seed=0)
    a = net.add_group(4, inputs=[net.input], kind=toy_kind)
    b = net.add_group(5, inputs=[net.input, a], outputs=[net.output], kind=toy_kind)
    net.connect(a, net.output)
    L = Layout(net)
    k, code = L.kinds, KINDS[toy_kind].code
    geo = k.geo.reshape(-1, len(GEO_FIELDS))
    assert [int(geo[L.slot[g], GEO_FIELDS.index("HEADS")]) for g in (a, b)] == [7, 7]
    assert k.levels == {1: {code: [L.slot[a]]}, 2: {code: [L.slot[b]]}}
    assert sorted(map(tuple, k.edges[code][:, :2].tolist())) == sorted(
        [(L.slot[0], L.slot[a]), (L.slot[0], L.slot[b]), (L.slot[a], L.slot[b])])
    assert k.slots[code].tolist() == [L.slot[a], L.slot[b]]
    assert sorted(map(tuple, k.zeroed.tolist())) == sorted(
        (L.slot[g], L.offsets[("b", g)], net.biases[g].size) for g in (a, b))  # zero_own, not its edges
    assert len(k.norm_ranges) == 3 + 2  # every edge into its groups, and their own vectors
    assert k.cache_floats == 3 * (4 + 5) and {int(k.cache_off[L.slot[a]]), int(k.cache_off[L.slot[b]])} == {0, 12}
    assert int(k.task_width[L.slot[a]]) == 0  # the dense task lists skip it

    from toy_kind_pkg.cuda import CALLS

    engine = SimpleNamespace(layout=L, dev=SimpleNamespace(kinds=SimpleNamespace(
        by_level={(1, code): "list at level 1", (2, code): "list at level 2"}, norm_ranges=None)),
        launch=Recorded(CALLS))
    launches.forward(engine, 2, 64)
    launches.backward(engine, 1, 64)
    engine.dev.parameters, engine.dev.sums = SimpleNamespace(grads=0), SimpleNamespace(wstats=0)
    launches.gradients(engine, 64, 0)
    assert CALLS == [("forward", "list at level 2", [L.slot[b]], 64), ("backward", "list at level 1", [L.slot[a]], 64),
                     ("gradients", 64), ("launch", "param_norms")]


class Recorded(Launches):
    """A launcher that records the kernels it is asked to launch (their arguments checked by name)."""

    def __init__(self, calls: list):
        self.calls = calls

    def __call__(self, name, grid, *args, threads=0, shared=0):
        self.calls.append(("launch", name))


def test_a_kind_whose_cuda_side_names_another_kind_is_refused(toy_kind, monkeypatch):
    import toy_kind_pkg.cuda as module
    from genlab.kinds.dense import Dense

    monkeypatch.setattr(module.CUDA, "kind", Dense)
    kind_cuda._FOUND.pop(KINDS[toy_kind].code, None)
    with pytest.raises(BackendError, match="is not the KindCuda of Toy: the CUDA engine cannot run toy_test"):
        kind_cuda.of(KINDS[toy_kind])
    np.testing.assert_equal(kind_cuda._FOUND.get(KINDS[toy_kind].code), None)


def test_a_kind_with_kernels_of_its_own_but_no_cuda_module_is_refused_by_name(toy_kind, tmp_path):
    (tmp_path / "toy_kind_pkg" / "cuda.py").unlink()
    sys.modules.pop("toy_kind_pkg.cuda", None)
    kind_cuda._FOUND.pop(KINDS[toy_kind].code, None)
    with pytest.raises(BackendError, match="toy_test groups have kernels of their own, but toy_kind_pkg.cuda"):
        kind_cuda.of(KINDS[toy_kind])
