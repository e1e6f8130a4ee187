"""The CUDA runtime of genlab: the sources, the compile cache, the kernels and their launches.

Each cuda/*.cu file is compiled as a module of its own (nvcc runs for several at once on a cold
cache), with the files it #includes pasted in at their first #include; the cubins are cached under
~/.cache/genlab/kernels (GENLAB_CACHE_DIR moves it). A kernel's PyCUDA argument types are derived
from its parameter list in the source (a struct passed by value becomes a NumPy record type of
the same layout), never written by hand. A kernel that reads the device state takes it as one
struct, `const Net n` (cuda/net.cuh), first; a launch gives the rest of its arguments by
parameter name and the struct is filled by member name (by_name).

The files whose kernels compute the dense products (PRECISE) are compiled once more for each
precision other than fp32 a process uses (genlab.precision), with PRECISION defined; a Launcher
of that precision takes their kernels from that build and every other kernel from the fp32 one.
"""

from __future__ import annotations

import hashlib
import os
import re
from abc import ABC, abstractmethod
from collections import ChainMap
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ...errors import BackendError
from ...precision import DEFAULT as FP32
from ...precision import Precision
from .constants import THREADS

# compiled at their first use, not at load
ON_DEMAND = ("cluster.cu", "dataflow.cu", "dni.cu", "rows.cu", "wavefront.cu", "wide.cu")
PRECISE = ("backward.cu", "dataflow.cu", "forward.cu", "wide.cu")  # built per precision (their tiles' products)
# a kernel's name and parameters, after its attributes (__launch_bounds__(...), a macro naming others)
_KERNEL = re.compile(r'^extern "C" __global__ void (?:__launch_bounds__\([^)]*\) )?(?:[A-Z_]+ )*(\w+)\(([^)]*)\)', re.M)
_SCALARS = {"int": "i", "unsigned": "I", "float": "f", "double": "d"}
_DTYPES = {"int": np.int32, "unsigned": np.uint32, "float": np.float32, "double": np.float64}


def cuda_dir():
    from ... import cuda_dir as folder

    return Path(str(folder()))


def source(files: list[str] | None = None, precision: Precision = FP32) -> str:
    """cuda/*.cu (or `files`) as one translation unit: each file pasted once, in name order, with
    the files it #includes pasted at their first #include and dropped after; #line directives keep
    nvcc's messages naming the right file and line. A precision other than fp32 is defined first
    (PRECISION, genlab.cuh)."""
    folder = cuda_dir()
    done: set[str] = set()

    def paste(name: str) -> list[str]:
        if name in done:
            return []
        done.add(name)
        out = [f'#line 1 "{name}"']
        for number, line in enumerate((folder / name).read_text().splitlines(), 1):
            included = re.match(r'^#include "([\w.]+)"$', line)
            if included:
                out += paste(included.group(1)) + [f'#line {number + 1} "{name}"']
            elif line.strip() != "#pragma once":
                out.append(line)
        return out

    parts = [] if precision is FP32 else [f"#define PRECISION {precision.code}  // {precision.value}"]
    parts += paste("genlab.cuh")
    for name in files or sorted(path.name for path in folder.glob("*.cu")):
        parts += paste(name)
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------ signatures
def _struct_dtype(src: str, name: str) -> np.dtype:
    """The NumPy record type of `struct name { ... };` in src, laid out as nvcc lays it out
    (aligned fields): pointers as uint64, scalars by their C type. A declaration names one type
    and one or more fields ("int a, b;", "const int *p, *q;")."""
    body = re.search(rf"^struct {name} \{{(.*?)^\}};", src, flags=re.M | re.S)
    if body is None:
        raise BackendError(f"kernel argument struct {name} is not defined in cuda/")
    fields = []
    for declaration in re.sub(r"//[^\n]*", "", body.group(1)).split(";"):
        declarators = re.sub(r"\b(const|__restrict__)\b", "", declaration).split(",")
        if not declaration.strip():
            continue
        ctype = declarators[0].split()[0]
        for declarator in declarators:
            field = re.findall(r"\w+", declarator)[-1]
            fields.append((field, np.uint64 if "*" in declarator else _DTYPES[ctype]))
    return np.dtype(fields, align=True)


def record(file: str, name: str) -> np.dtype:
    """The NumPy record type of `struct name` defined in cuda/`file` (an array of them is a kernel's
    table: the layout is written once, in the CUDA source)."""
    return _struct_dtype(source([file]), name)


def _parameter_list(src: str, name: str) -> list[str]:
    """A kernel's parameters in src, as declared (a macro naming them, as wide.cu's, expanded)."""
    match = next((m for m in _KERNEL.finditer(src) if m.group(1) == name), None)
    if match is None:
        raise BackendError(f"kernel {name} is not defined in cuda/")
    return _declared(src, match)


def _declared(src: str, match: re.Match) -> list[str]:
    """The parameters of the kernel _KERNEL matched in src (a macro naming them expanded)."""
    params = match.group(2).strip()
    macro = re.search(rf"^#define {params}\b((?:.*\\\n)*.*)$", src, flags=re.M) if params.isidentifier() else None
    if macro:  # kernels that share a parameter list through a macro (wide.cu)
        params = macro.group(1).replace("\\\n", " ")
    return params.split(",")


def signature(src: str, name: str) -> list:
    """A kernel's PyCUDA argument types from its parameter list in src: "P" pointer, "i" int,
    "I" unsigned, "f" float, "d" double, or a record dtype for a struct passed by value."""
    types = []
    for param in _parameter_list(src, name):
        words = re.sub(r"\b(__restrict__|__grid_constant__|const)\b", "", param).split()
        if "*" in param:
            types.append("P")
        elif words[0] in _SCALARS:
            types.append(_SCALARS[words[0]])
        else:
            types.append(_struct_dtype(src, words[0]))
    return types


def kernel_names(src: str) -> list[str]:
    return [m.group(1) for m in _KERNEL.finditer(src)]


def parameter_names(src: str, name: str) -> tuple[str, ...]:
    """A kernel's parameter names in order, from its parameter list in src."""
    return tuple(map(_param_name, _parameter_list(src, name)))


def _param_name(param: str) -> str:
    """A declared parameter's name: its last word."""
    return re.findall(r"\w+", param)[-1]


NET = "Net"  # the device state's struct (cuda/net.cuh): the first parameter, `n`, of the kernels that read the state


@dataclass(frozen=True)
class _Plan:
    """How a kernel's arguments are found by name: its parameters in order, the names a launch may
    give (its parameters, and the members of its Net that its body reads), and for a kernel that
    takes the state as `const Net n`, the members its body reads (each must be found)."""

    order: tuple[str, ...]
    known: frozenset[str]
    reads: frozenset[str] | None  # None: no Net parameter


_PLANS: dict[str, _Plan] = {}  # kernel: its plan (the sources do not change under a run)


def _body(src: str, start: int) -> str:
    """The text of the block opening at the first "{" from `start` (a kernel's body)."""
    depth, i = 0, src.index("{", start)
    for j in range(i, len(src)):
        depth += {"{": 1, "}": -1}.get(src[j], 0)
        if depth == 0:
            return src[i:j + 1]
    raise BackendError("a kernel's body in cuda/ is not closed")


def _plans(src: str) -> dict[str, _Plan]:
    members = frozenset(_struct_dtype(src, NET).names)
    plans = {}
    for m in _KERNEL.finditer(src):
        name, params = m.group(1), _declared(src, m)
        order = tuple(map(_param_name, params))
        if not any(re.search(rf"\b{NET}\b", p) for p in params):
            plans[name] = _Plan(order, frozenset(order), None)
            continue
        if order[0] != "n" or NET not in params[0].split():
            raise BackendError(f"kernel {name} takes the state's struct {NET} other than as its first parameter, n")
        reads = frozenset(re.findall(r"\bn\.(\w+)", _body(src, m.end())))
        if reads - members:
            raise BackendError(f"kernel {name} reads {', '.join(sorted(reads - members))}, which {NET} has not")
        plans[name] = _Plan(order, frozenset(order[1:]) | reads, reads)
    return plans


def _plan(kernel: str) -> _Plan:
    if not _PLANS:
        _PLANS.update(_plans(source()))
    try:
        return _PLANS[kernel]
    except KeyError:
        raise BackendError(f"kernel {kernel} is not defined in cuda/") from None


def names(kernel: str) -> tuple[str, ...]:
    """The parameter names of a kernel of cuda/*.cu, in order (parsed once a process, no GPU needed)."""
    return _plan(kernel).order


@cache
def net_members() -> tuple[str, ...]:
    """The members of the state's struct Net (cuda/net.cuh), in order: all pointers."""
    return _struct_dtype((cuda_dir() / "net.cuh").read_text(), NET).names


def _found(order: tuple[str, ...], known: frozenset[str], fields, given: dict, owner: str, item: str) -> list:
    """Each name of `order` (`known`: the names that may be given) found in `given`, else in
    `fields` (the device state's buffers by field name, DeviceState.by_name); BackendError naming
    one found in neither, or a given name not in `known` (`owner` has no such `item`)."""
    if not fields and len(given) == len(order):  # every one given (Launches.keyed): all found = none unknown
        try:
            return [given[p] for p in order]
        except KeyError:
            pass  # a name unknown here in place of one of `order`'s: told below
    if not known.issuperset(given):
        raise BackendError(f"{owner} has no {item} {', '.join(sorted(given.keys() - known))}")
    get = given.get
    try:
        return [fields[p] if (v := get(p, _ABSENT)) is _ABSENT else v for p in order]
    except KeyError as missing:
        raise BackendError(f"{owner}'s {item} {missing.args[0]} is neither given nor a buffer of the device "
                           "state") from None


_ABSENT = object()  # _found: a name not in `given`


def _net(kernel: str, reads: frozenset[str], fields, given: dict) -> bytes:
    """The struct Net of one launch of `kernel`: each member given, else the state's (`fields`),
    else null; a member the kernel reads must be one of the first two."""
    values, absent = _state_members(fields)
    index = _member_index()
    if overrides := given.keys() & index.keys():
        values = values.copy()
        for m in overrides:
            values[index[m]] = int(given[m])
    for m in reads & absent:
        if m not in given:
            raise BackendError(f"kernel {kernel}'s {NET} member {m} is neither given nor a buffer of the device state")
    return _net_struct().pack(*values)


_STATES: dict[int, tuple] = {}  # id of a read-only view of a state's buffers: (the view, its members, those absent)


def _state_members(fields) -> tuple[list[int], frozenset[str]]:
    """Net's members as `fields` holds them (null where it has none) and the names it lacks; for a
    read-only view (DeviceState.by_name) worked out once, as it cannot change."""
    hit = _STATES.get(id(fields))
    if hit is not None and hit[0] is fields:
        return hit[1], hit[2]
    members = net_members()
    values = [int(fields.get(m, 0)) for m in members]
    absent = frozenset(m for m in members if m not in fields)
    if isinstance(fields, MappingProxyType):  # kept (and so its id not reused) while cached
        if len(_STATES) >= 64:
            _STATES.clear()
        _STATES[id(fields)] = (fields, values, absent)
    return values, absent


@cache
def _member_index() -> dict[str, int]:
    return {m: i for i, m in enumerate(net_members())}


@cache
def _net_struct():
    import struct

    return struct.Struct(f"<{len(net_members())}Q")  # pointers only: 8 bytes each, no padding


def by_name(kernel: str, fields, given: dict) -> list:
    """A kernel's arguments in its order, each found by its parameter name: in `given`, else in
    `fields` (the device state's buffers by field name, DeviceState.by_name); a kernel that takes
    the state as `const Net n` gets the struct's bytes first, its members found the same way.
    BackendError naming a parameter (or a member the kernel reads) found in neither, or a given
    name the kernel has no parameter (or read member) of."""
    plan = _plan(kernel)
    if plan.reads is None:
        return _found(plan.order, plan.known, fields, given, f"kernel {kernel}", "parameter")
    rest = _found(plan.order[1:], plan.known, fields, given, f"kernel {kernel}", "parameter")  # (members given: known)
    return [_net(kernel, plan.reads, fields, given), *rest]


def pack(dtype: np.dtype, fields, given: dict) -> np.ndarray:
    """A kernel's argument struct (`dtype`: its layout read from cuda/*.cu, signature or record)
    with each member found by its name as by_name finds a parameter; a pointer may be an
    allocation (its address is written)."""
    a = np.zeros((), dtype)
    found = _found(dtype.names, frozenset(dtype.names), fields, given, "the kernel's argument struct", "member")
    for name, value in zip(dtype.names, found):
        a[name] = int(value) if dtype.fields[name][0] == np.uint64 else value
    return a


# ------------------------------------------------------------------------------ compiling
def cache_dir() -> Path:
    root = os.environ.get("GENLAB_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "genlab")
    return Path(root) / "kernels"


def compile_cubin(src: str, arch: str, version: str) -> bytes:
    """The cubin for `src`, from genlab's cache or from nvcc (then cached); genlab's version is part
    of the cache key. Runs in worker threads
    while `import genlab` may be under way in the main one, so it imports nothing of genlab's
    (a thread importing a module that another is initialising waits for it: a deadlock)."""
    options = ["-O3", "-lineinfo"]
    key = hashlib.sha256("\0".join([src, arch, *options, version]).encode()).hexdigest()
    path = cache_dir() / f"{key}.cubin"
    if path.exists():
        return path.read_bytes()
    from pycuda.compiler import compile
    from pycuda.driver import CompileError

    try:
        cubin = compile(src, no_extern_c=True, arch=arch, options=options, cache_dir=False)
    except CompileError as e:
        raise BackendError(f"nvcc could not compile genlab's kernels (cuda/*.cu):\n{e.stderr or e}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(cubin)
    tmp.replace(path)
    return cubin


@dataclass
class _State:
    context: object
    device: object
    functions: dict = field(default_factory=dict)  # name: prepared PyCUDA function
    signatures: dict = field(default_factory=dict)  # name: its argument types (signature())
    files: set = field(default_factory=set)  # the .cu files loaded (a PRECISE file's other builds: (file, precision))
    variants: dict = field(default_factory=dict)  # precision: {name: function} of its PRECISE builds


_STATE: _State | None = None


def kernels() -> _State:
    """The process's CUDA state: retains and pushes the device's primary context (shared with
    PyTorch and anyone else in the process) and loads every kernel file but the ON_DEMAND ones."""
    global _STATE
    if _STATE is None:
        import atexit

        import pycuda.driver as drv

        drv.init()
        # GENLAB_DEVICE, else the local rank torchrun gives each process (one GPU each), else 0
        device = drv.Device(int(os.environ.get("GENLAB_DEVICE", os.environ.get("LOCAL_RANK", 0))))
        context = device.retain_primary_context()
        context.push()
        atexit.register(context.pop)
        _STATE = _State(context, device)
        load(*[p.name for p in sorted(cuda_dir().glob("*.cu")) if p.name not in ON_DEMAND])
    return _STATE


def loaded() -> bool:
    """Whether this process has loaded genlab's kernels (at import, on a machine with a GPU)."""
    return _STATE is not None


def load(*files: str, precision: Precision = FP32) -> None:
    """Compile (or take from the cache) and load each file not loaded yet as a module of its own;
    prepare the kernels it defines that are not loaded yet. With a precision other than fp32, the
    PRECISE files among them are built for it (their kernels go to `variants[precision]`); the
    others as always."""
    from concurrent.futures import ThreadPoolExecutor

    import pycuda.driver as drv

    import pycuda.compiler  # noqa: F401  (here, not first in a worker thread)

    from ... import __version__

    state = _STATE if _STATE is not None else kernels()
    builds = [(f, precision if precision is not FP32 and f in PRECISE else FP32) for f in files]
    builds = [(f, p) for f, p in builds if (f if p is FP32 else (f, p)) not in state.files]
    if not builds:
        return
    arch = "sm_%d%d" % state.device.compute_capability()
    sources = [source([f], p) for f, p in builds]
    with ThreadPoolExecutor(max_workers=max(1, min(len(sources), os.cpu_count() or 1))) as pool:
        cubins = list(pool.map(lambda src: compile_cubin(src, arch, __version__), sources))
    for (file, p), src, cubin in zip(builds, sources, cubins):
        module = drv.module_from_buffer(cubin)
        functions = state.functions if p is FP32 else state.variants.setdefault(p, {})
        for name in set(kernel_names(src)) - functions.keys():
            function = module.get_function(name)
            state.signatures[name] = signature(src, name)
            function.prepare(state.signatures[name])
            functions[name] = function
        state.files.add(file if p is FP32 else (file, p))


def functions(precision: Precision = FP32):
    """The kernels by name as a precision runs them: its PRECISE builds first, then the fp32 ones
    (a live view: kernels loaded later appear in it)."""
    state = kernels()
    if precision is FP32:
        return state.functions
    return ChainMap(state.variants.setdefault(precision, {}), state.functions)


class Launches(ABC):
    """The ways of launching that every launcher shares (tests/fake_cuda.py's too): by parameter
    name, and one thread an element; both call the launcher."""

    @abstractmethod
    def __call__(self, name: str, grid: tuple[int, int], *args, threads: int = THREADS, shared: int = 0) -> None:
        """Launch kernel `name` over `grid` with its arguments in order."""

    def named(self, name: str, grid: tuple[int, int], fields, given: dict, threads: int = THREADS,
              shared: int = 0) -> None:
        """Launch `name` with its arguments taken by parameter name (by_name): from `given`, else
        from `fields`; the order and the types are the kernel's, read from its source."""
        self(name, grid, *by_name(name, fields, given), threads=threads, shared=shared)

    def keyed(self, name: str, grid: tuple[int, int], args: dict, threads: int = THREADS, shared: int = 0) -> None:
        """Launch `name` with every argument given by its parameter name (nothing taken from the
        device state: a buffer whose name is not the parameter's is passed as what it is)."""
        self(name, grid, *by_name(name, {}, args), threads=threads, shared=shared)

    def flat(self, name: str, n: int, args: dict, fields=None) -> None:
        """One thread per element of n, each argument given by its parameter name (keyed), or with
        `fields` (the device state's buffers by name) what is not given taken from them (named)."""
        self.named(name, ((n + THREADS - 1) // THREADS, 1), fields or {}, args)


class Launcher(Launches):
    """Launches genlab's kernels on one stream, THREADS threads a block unless a kernel says
    otherwise, in one precision (its PRECISE kernels' build)."""

    def __init__(self, stream, precision: Precision = FP32):
        self.stream, self.precision = stream, precision
        self.functions = functions(precision)
        if precision is not FP32:
            load(*[f for f in PRECISE if f not in ON_DEMAND], precision=precision)

    def __call__(self, name: str, grid: tuple[int, int], *args, threads: int = THREADS, shared: int = 0) -> None:
        self.functions[name].prepared_async_call(grid, (threads, 1, 1), self.stream, *args, shared_size=shared)
