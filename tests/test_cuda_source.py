"""The CUDA sources as genlab's loader sees them; runs without a GPU (nvcc only)."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from genlab.engines.cuda import constants, runtime
from genlab.engines.cuda.runtime import kernel_names, signature, source

ROOT = Path(__file__).resolve().parent.parent


def test_loader_source_is_one_unit_without_includes():
    src = source()
    assert not re.search(r"^\s*#\s*include", src, flags=re.M)
    assert '#line 1 "forward.cu"' in src and '#line 1 "genlab.cuh"' in src and '#line 1 "constants.cuh"' in src
    assert {"forward_level", "rows_step", "growth_init", "optimizer_update"} <= set(kernel_names(src))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_loader_source_compiles_and_errors_name_the_file(tmp_path):
    good = tmp_path / "all.cu"
    good.write_text(source())
    subprocess.run(["nvcc", "-arch=sm_90", "-cubin", "-o", str(tmp_path / "all.cubin"), str(good)], check=True)
    bad = tmp_path / "bad.cu"
    bad.write_text(source().replace("fmaxf(z, 0.f)", "fmaxf(z, 0.f) +"))
    result = subprocess.run(["nvcc", "-arch=sm_90", "-cubin", "-o", str(tmp_path / "bad.cubin"), str(bad)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "forward.cu(" in result.stderr


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("precision", ["3xtf32", "tf32", "bf16"])
def test_every_precision_build_compiles(tmp_path, precision):
    """The files built per precision (runtime.PRECISE) compile in each one, with the tensor-core
    instructions in them (the fp32 build has none)."""
    from genlab.precision import parse

    p = parse(precision)
    for name in runtime.PRECISE:
        src = source([name], p)
        assert src.startswith(f"#define PRECISION {p.code}")
        path = tmp_path / f"{name}.{precision}.cu"
        path.write_text(src)
        subprocess.run(["nvcc", "-arch=sm_90", "-ptx", "-o", str(path.with_suffix(".ptx")), str(path)], check=True)
        ptx = path.with_suffix(".ptx").read_text()
        assert "mma.sync.aligned" in ptx, name
        assert ("bf16" in ptx) == (precision == "bf16"), name
    plain = tmp_path / "forward.fp32.cu"
    plain.write_text(source(["forward.cu"]))
    subprocess.run(["nvcc", "-arch=sm_90", "-ptx", "-o", str(plain.with_suffix(".ptx")), str(plain)], check=True)
    assert "mma.sync" not in plain.with_suffix(".ptx").read_text()


def test_the_generated_header_is_in_step_with_python():
    """cuda/constants.cuh is what genlab/engines/cuda/constants.py generates (regenerate it with
    python -m genlab.engines.cuda.constants), and no .cu file defines those numbers again."""
    assert (ROOT / "cuda" / "constants.cuh").read_text() == constants.header()
    for path in (ROOT / "cuda").glob("*.cu*"):
        if path.name != "constants.cuh":
            for name in constants.SHARED:
                assert not re.search(rf"^#define {name}\b", path.read_text(), flags=re.M), (path.name, name)


def test_generated_codes_match_the_enums():
    from genlab.operations import Criterion, OpCode

    header = constants.header()
    assert f"#define OP_SPLIT {int(OpCode.SPLIT)}" in header
    assert f"#define CRITERION_TAYLOR {int(Criterion.TAYLOR)}" in header
    assert f"#define CHUNK {constants.THREADS * 16}" in header


def test_every_kernel_signature_is_derived_from_its_source():
    """Each kernel's argument types come from its parameter list; a parameter the parser cannot
    type fails here, not on a GPU."""
    src = source()
    for name in kernel_names(src):
        types = signature(src, name)
        assert types and all(t in ("P", "i", "I", "f", "d") or isinstance(t, np.dtype) for t in types), name
    assert signature(src, "optimizer_update") == list("iPPPPPiffffP")
    assert signature(src, "forward_wide") == list("PPPPPPPPPiiiPP")  # a parameter list shared through a macro
    net, *rest = signature(src, "weight_grad")  # the state as one struct, then the launch's own
    assert net.names == runtime.net_members() and rest == list("PiiP")


def test_struct_arguments_get_the_c_layout():
    """rows_step takes its arguments as one struct by value: pointers first (8 bytes each), then
    ints and floats; the record is padded to 8 bytes, as nvcc pads it."""
    (record,) = signature(source(["rows.cu"]), "rows_step")
    assert record.names[:3] == ("width", "act_off", "bias_off") and record.names[-1] == "eps"
    assert record.fields["trace"][0] == np.uint64 and record.fields["batch"][0] == np.int32
    assert record.fields["n_fwd"][1] == 8 * sum(record.fields[n][0] == np.uint64 for n in record.names)
    assert record.itemsize % 8 == 0


def test_a_kernel_behind_attribute_macros_is_found_with_its_struct():
    """cluster_step is declared `__launch_bounds__(CL_THREADS, 1) CLUSTER_SHAPE cluster_step(...)`:
    the parser skips the attribute macro and reads the ClusterStep record, which the executor
    fills field by field."""
    src = source(["cluster.cu"])
    assert "cluster_step" in kernel_names(src) and "CLUSTER_SHAPE" not in kernel_names(src)
    (record,) = signature(src, "cluster_step")
    assert record.names[:3] == ("phases", "plan", "labels") and record.names[-1] == "eps"
    assert record.fields["parts"][0] == np.uint64 and record.fields["n_parts"][0] == np.int32
    assert record.fields["lr"][0] == np.float32 and record.itemsize % 8 == 0


def test_every_kernel_python_launches_is_defined():
    """The names passed to the engine's launches (and the kinds' CUDA sides') exist in cuda/*.cu."""
    defined = set(kernel_names(source()))
    folders = [ROOT / "genlab" / folder for folder in ("engines/cuda", "kinds")]
    code = "\n".join(p.read_text() for folder in folders for p in folder.rglob("*.py"))
    launched = set(re.findall(r'launch(?:\.flat|\.named|\.keyed)?\(\s*"(\w+)"[,)]', code))
    assert {"growth_init", "scan_exclusive", "optimizer_update", "softmax_xent", "dni_keep"} <= launched
    launched |= {"forward_level", "backward_level", "weight_grad", "forward_mid", "backward_mid", "weight_mid",
                 "forward_wide", "backward_wide", "weight_wide", "dataflow_step", "rows_step", "cluster_step"}  # built names
    assert launched and launched <= defined, launched - defined


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_CACHE_DIR", str(tmp_path))
    assert runtime.cache_dir() == tmp_path / "kernels"


def test_a_launch_by_name_takes_each_parameter_by_its_name_and_refuses_what_does_not_fit():
    """Launcher.named: every kernel's parameter names come from its source, one per type of its
    signature; the arguments follow the kernel's order whatever the order they are given in; a
    parameter found nowhere, or a given name the kernel lacks, is a BackendError naming it."""
    from genlab import BackendError

    src = source()
    for name in kernel_names(src):
        assert len(runtime.parameter_names(src, name)) == len(signature(src, name)), name
    net = np.dtype([(m, np.uint64) for m in runtime.net_members()])

    def members(args):  # the struct Net of a launch's arguments, as a dict of its non-null members
        return {m: int(v) for m, v in zip(net.names, np.frombuffer(args[0], net)[0]) if v}

    assert runtime.names("bias_grad") == ("n", "tasks", "batch", "ld", "gradsq")  # the state: one struct, n
    fields = {"width": 1, "act_off": 2, "bias_off": 3, "dz": 4, "grads": 5, "wstats": 6, "params": 9, "unused": 99}
    given = {"gradsq": 10, "ld": 8, "batch": 7, "tasks": 0}
    args = runtime.by_name("bias_grad", fields, given)
    assert args[1:] == [0, 7, 8, 10] and isinstance(args[0], bytes) and len(args[0]) == net.itemsize
    assert members(args) == {"width": 1, "act_off": 2, "bias_off": 3, "dz": 4, "grads": 5, "wstats": 6, "params": 9}
    assert members(runtime.by_name("bias_grad", fields, {**given, "dz": 44}))["dz"] == 44  # a member given
    with pytest.raises(BackendError, match="kernel bias_grad's parameter gradsq is neither given nor a buffer"):
        runtime.by_name("bias_grad", fields, {"ld": 8, "batch": 7, "tasks": 0})
    with pytest.raises(BackendError, match="kernel bias_grad's Net member wstats is neither given nor a buffer"):
        runtime.by_name("bias_grad", {k: v for k, v in fields.items() if k != "wstats"}, given)
    with pytest.raises(BackendError, match="kernel bias_grad has no parameter rows"):
        runtime.by_name("bias_grad", fields, {**given, "rows": 1})
    with pytest.raises(BackendError, match="kernel bias_grad has no parameter params"):  # a member it does not read
        runtime.by_name("bias_grad", fields, {**given, "params": 1})
    every = dict(zip(runtime.names("optimizer_update"), range(12)))  # keyed: every argument given, none from the state
    assert runtime.by_name("optimizer_update", {}, dict(reversed(every.items()))) == list(range(12))
    with pytest.raises(BackendError, match="kernel optimizer_update has no parameter rows"):  # as many names, one wrong
        runtime.by_name("optimizer_update", {}, {**{k: v for k, v in every.items() if k != "n"}, "rows": 1})
    with pytest.raises(BackendError, match="kernel optimizer_update's parameter n is neither given"):
        runtime.by_name("optimizer_update", {}, {k: v for k, v in every.items() if k != "n"})
    with pytest.raises(BackendError, match="kernel no_such_kernel is not defined"):
        runtime.names("no_such_kernel")


def test_the_state_struct_holds_the_device_states_buffers_and_each_kernel_takes_it_once():
    """cuda/net.cuh's Net: pointers only (8 bytes each, no padding), each member named as a buffer
    of the device state's records (DeviceState.by_name fills it). A kernel that takes it takes it
    first, as n, and no member again as a parameter; the members it must be given are those its
    body reads; a kernel taking Net elsewhere, or reading a member Net lacks, is refused."""
    from dataclasses import fields

    from genlab import BackendError
    from genlab.engines.cuda import records

    src = source()
    net = runtime._struct_dtype(src, runtime.NET)
    assert net.names == runtime.net_members() and net.itemsize == 8 * len(net.names)
    assert all(net.fields[m][0] == np.uint64 for m in net.names)
    assert {"constant", "taylor_seen"} <= set(net.names)  # "const" is a word of C, not of a name: "constant" stays
    buffers = {f.name for r in vars(records).values()
               if isinstance(r, type) and issubclass(r, records.Record) for f in fields(r)}
    assert set(net.names) <= buffers, set(net.names) - buffers
    takers = [k for k in kernel_names(src) if runtime._plan(k).reads is not None]
    assert {"forward_level", "backward_push", "activation_range", "growth_rank"} <= set(takers)
    for k in takers:
        plan = runtime._plan(k)
        assert plan.order[0] == "n" and not set(plan.order[1:]) & set(net.names), k
        assert plan.reads and plan.reads <= set(net.names), k
    assert set().union(*(runtime._plan(k).reads for k in takers)) == set(net.names)  # no member left unread
    assert runtime._plan("backward_finish").reads == {"width", "act_off", "act", "dz", "stats"}
    head = "struct Net {\n    const int *width;\n    float* act;\n};\n"
    with pytest.raises(BackendError, match="kernel k takes the state's struct Net other than as its first"):
        runtime._plans(head + 'extern "C" __global__ void k(int a, const Net n) { }\n')
    with pytest.raises(BackendError, match="kernel k reads dz, which Net has not"):
        runtime._plans(head + 'extern "C" __global__ void k(const Net n) { n.act[0] = n.dz[0]; }\n')


def test_a_kernels_argument_struct_is_filled_by_member_name_and_refuses_what_does_not_fit():
    """runtime.pack: a persistent kernel's struct (its layout read from the CUDA source) takes each
    member from what the launch gives, else from the device state's buffers by name; a pointer may
    be an allocation (its address); a member found nowhere, or a name the struct lacks, is a
    BackendError naming it."""
    from genlab import BackendError

    class Allocation:
        def __int__(self):
            return 0xDEAD00

    dtype = runtime.record("dni.cu", "DniCut")
    fields = {name: 0x1000 + i for i, name in enumerate(dtype.names) if dtype.fields[name][0] == np.uint64}
    given = {"batch": 7, "cols": 3, "classes": 10, "conditioned": 1, "seed": 1, "stride": 99, "act": Allocation()}
    a = runtime.pack(dtype, {**fields, "unused": 5}, given)
    assert (int(a["batch"]), int(a["stride"]), int(a["act"])) == (7, 99, 0xDEAD00)
    assert int(a["params"]) == fields["params"] and int(a["dz"]) == fields["dz"]
    assert a.tobytes()[dtype.fields["cols"][1]:][:4] == np.int32(3).tobytes()  # laid out as nvcc lays it out
    with pytest.raises(BackendError, match="member stride is neither given nor a buffer"):
        runtime.pack(dtype, fields, {k: v for k, v in given.items() if k != "stride"})
    with pytest.raises(BackendError, match="struct has no member rows"):
        runtime.pack(dtype, fields, {**given, "rows": 1})


def _positional_launches() -> list[str]:
    """Calls that launch a kernel with its arguments in order: a call of something named launch
    (or `(launch or e.launch)`) with more than a kernel, a grid and one struct (launch.flat: a
    kernel, a count, the arguments by name and the state's buffers by name), or with a starred
    list; the launchers' own modules excepted."""
    import ast

    def is_launch(func) -> bool:
        if isinstance(func, ast.BoolOp):
            return any(is_launch(v) for v in func.values)
        if isinstance(func, ast.Attribute) and func.attr == "flat":  # launch.flat(name, n, args)
            return is_launch(func.value)
        return (isinstance(func, ast.Attribute) and func.attr == "launch") or \
            (isinstance(func, ast.Name) and func.id == "launch")

    found = []
    for path in sorted((ROOT / "genlab").rglob("*.py")):
        if path.name == "runtime.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            most = 4 if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "flat" else 3
            if isinstance(node, ast.Call) and is_launch(node.func) and \
                    (len(node.args) > most or any(isinstance(a, ast.Starred) for a in node.args)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_launch_passes_its_arguments_by_name_or_as_one_struct():
    """A kernel's arguments are matched to its parameters by name (Launches.named, keyed, flat), or
    are one struct whose layout is read from the kernel's source (runtime.record): none is passed
    by position, where a parameter added to a kernel would shift the others silently."""
    assert _positional_launches() == []
