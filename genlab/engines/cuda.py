"""The CUDA engine: genlab's kernels (cuda/*.cu) driven through PyCUDA.

State lives on the GPU in structure-of-arrays form (see cuda/genlab.cuh): a flat parameter
buffer (every weight block, then every bias), its gradients and optimizer state in the same
layout, activations and their gradients group-major (one block per group) or batch-major (one
row of every neuron per sample), as the executor says. Topology goes up as CSR of
in-edges and out-edges plus per-level task lists, a few kilobytes rebuilt when it changes.
A training step, with the level executor, launches: forward (one launch per level), loss,
backward (one launch per level), weight and bias gradients (one launch each) and the optimizer
(one launch); with the dataflow executor, one persistent kernel does all of it (EXECUTORS lists
the variants). Either way it is captured once into a CUDA graph and replayed, and it reads back
24 bytes (loss, correct count, gradient norm) to check for divergence.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import re
from pathlib import Path

import numpy as np

from ..errors import BackendError, TrainingError
from ..network import INPUT, OUTPUT, Network
from .serial import STATISTICS

TILE = 32
CH = 16  # neurons per work item of the row executor (cuda/rows.cu)
EW = 4  # out-edges of the input group per weight item of the row executor
LAG = 2  # the row executor takes a level's weight items after the backward items LAG levels below
THREADS = 256
UPDATE_CHUNK = THREADS * 16  # parameters per update item of the persistent executors (CHUNK, optim.cu)
SPLIT = 8  # in-edges per forward task of the output group (split-K)
# The pull level executors run groups in tiers of width, each with its own task lists and kernels:
# narrower than MID on TILE x TILE tiles (forward.cu, backward.cu), MID to WIDE - 1 on MT x MT
# tiles and WIDE or more on WT x WT tiles (cuda/wide.cu, whose blocks keep 4 x 4 or 8 x 8 outputs
# a thread in registers).
MID, WIDE = 48, 256
POOLED = 1 << 20  # buffers up to this many bytes come from the engine's memory pool
MT, WT = 64, 128
_KERNELS = {  # name: PyCUDA argument signature (P pointer, i int, f float)
    "forward_level": "PPPPPPPPPiiii",
    "softmax_xent": "PPiiiPPPPi",
    "backward_level": "PPPPPPPPPiiPi",
    "backward_push": "PPPPPPPPPii",
    "backward_finish": "PPPPPiiP",
    "weight_grad": "PPPPPPPPPiiPP",
    "bias_grad": "PPPPPPiiPP",
    "forward_wide": "PPPPPPPPPiii",
    "backward_wide": "PPPPPPPPPiiP",
    "weight_wide": "PPPPPPPPPiiPP",
    "forward_mid": "PPPPPPPPPiii",
    "backward_mid": "PPPPPPPPPiiP",
    "weight_mid": "PPPPPPPPPiiPP",
    "activation_range": "PPPPPiiPPPP",
    "dataflow_step": "PPPPPPPPPPP" "PiPiPiPi" "PPPPP" "iiiiii" "PPP" "iPPPi" "ffff" "P",
    "rows_step": "PPPPPPPPPP" "PiPiP" "PPPPP" "iiiii" "PPP" "iPPPi" "ffff" "ii" "PP",
    "optimizer_update": "iPPPPPiffffP",
    "gather": "PPPi",
    "growth_observe": "PPPPiiidPPP",
    "growth_population": "PPPiP",
    "growth_mark": "PPPidiPP",
    "growth_select": "PPPiP",
    "growth_rank": "PPPiP",
    "growth_init": "PPPPPPII",
    "topo_write_edges": "PiPPPPP",
    "topo_degrees": "PPiPP",
    "scan_exclusive": "PPi",
    "topo_fill": "PPPPPiPPPPPPP",
    "topo_levels": "PPiP",
    "topo_tasks": "iPPPiiiiiiiPPPPPPPPPPP",
    "topo_weight_tasks": "iPPPiiiiPPP",
    "prune_observe": "PPPiidPPP",
    "prune_constant": "PPPPPiP",
    "prune_fold": "PiiiiPi",
}
# The executors of a training step: (schedule, backward direction, activation layout).
#   level: one launch per topological level; dataflow: one persistent launch for the whole step,
#   blocks taking ready tasks (cuda/dataflow.cu); rows: one persistent launch whose work items are
#   CH neurons of a group over the whole batch, a batch row per thread (cuda/rows.cu). pull: a group gathers dL/dh from its consumers;
#   push: consumers scatter into their sources (atomics). group: each group's activations
#   contiguous (batch x width); batch: one row of all neurons per sample.
EXECUTORS = {
    "level": ("level", "pull", "group"),
    "level_push": ("level", "push", "group"),
    "level_batch": ("level", "pull", "batch"),
    "dataflow": ("dataflow", "pull", "group"),
    "dataflow_batch": ("dataflow", "pull", "batch"),
    "dataflow_rows": ("rows", "pull", "group"),
}
PERSISTENT = {"dataflow": ("dataflow.cu", "dataflow_step"), "rows": ("rows.cu", "rows_step")}
_CRITERIA = ("grad_std", "weight_grad_norm", "taylor")  # the numbering of growth_observe
_OPS = {"copy": 0, "identity": 1, "split": 2, "he": 3, "zero_state": 4, "zero": 5}
_STATE = None  # (context, device, kernels), made once per process


def executor_parts(name: str) -> tuple[str, str, str]:
    """(schedule, backward direction, activation layout) of an executor; BackendError if unknown."""
    if name not in EXECUTORS:
        raise BackendError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name]


ON_DEMAND = ("dataflow.cu", "rows.cu", "wide.cu")  # compiled at their first use, not at load


def source(files: list[str] | None = None) -> str:
    """cuda/*.cu (or `files`) as one translation unit: each file pasted once, in name order, with
    the files it #includes (genlab.cuh, and the kernel files whose tile functions dataflow.cu
    calls) pasted at their first #include and dropped after; #line directives keep nvcc's
    messages naming the right file and line."""
    from .. import cuda_dir

    folder = Path(str(cuda_dir()))
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

    parts = paste("genlab.cuh")
    for name in files or sorted(path.name for path in folder.glob("*.cu")):
        parts += paste(name)
    return "\n".join(parts) + "\n"


def _cache_dir() -> Path:
    root = os.environ.get("GENLAB_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "genlab")
    return Path(root) / "kernels"


def _compile(src: str, arch: str) -> bytes:
    """The cubin for `src`, from genlab's cache or from nvcc (then cached)."""
    from .. import __version__

    options = ["-O3", "-lineinfo"]
    key = hashlib.sha256("\0".join([src, arch, *options, __version__]).encode()).hexdigest()
    path = _cache_dir() / f"{key}.cubin"
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


def kernels():
    """(context, device, {name: prepared function}): retains and pushes the device's primary
    context (shared with PyTorch and anyone else in the process) and loads the kernels."""
    global _STATE
    if _STATE is None:
        import pycuda.driver as drv

        drv.init()
        device = drv.Device(int(os.environ.get("GENLAB_DEVICE", 0)))
        context = device.retain_primary_context()
        context.push()
        import atexit

        atexit.register(context.pop)
        from .. import cuda_dir

        folder = Path(str(cuda_dir()))
        _STATE = (context, device, {})
        # a module per file: nvcc compiles them side by side on a cold cache
        _load_module(*[[p.name] for p in sorted(folder.glob("*.cu")) if p.name not in ON_DEMAND])
    return _STATE


def _load_module(*modules: list[str]) -> None:
    """Compile (or take from the cache; nvcc runs for several modules at once) and load each
    list of files as one module; prepare the kernels they define that are not loaded yet."""
    from concurrent.futures import ThreadPoolExecutor

    import pycuda.driver as drv

    _, device, functions = _STATE
    arch = "sm_%d%d" % device.compute_capability()
    sources = [source(files) for files in modules]
    with ThreadPoolExecutor(max_workers=max(1, min(len(sources), os.cpu_count() or 1))) as pool:
        cubins = list(pool.map(lambda src: _compile(src, arch), sources))
    for src, cubin in zip(sources, cubins):
        module = drv.module_from_buffer(cubin)
        defined = set(re.findall(r'^extern "C" __global__ void (?:__launch_bounds__\([^)]*\) )?(\w+)\(', src,
                                 flags=re.M))
        for name in defined - functions.keys():
            functions[name] = module.get_function(name)
            functions[name].prepare(_KERNELS[name])


def wide_kernels() -> None:
    """Load cuda/wide.cu (the level executor's kernels for groups of MID neurons or more) if it
    is not loaded yet: compiled at the first network that has such a group."""
    if "forward_wide" not in kernels()[2]:
        _load_module(["wide.cu"])


def persistent_kernel(schedule: str = "dataflow"):
    """The persistent kernel of a schedule ("dataflow" or "rows", PERSISTENT): compiled on first
    use (its module inlines the tile functions, so nvcc takes a few seconds the first time;
    cached after)."""
    functions = kernels()[2]
    file, name = PERSISTENT[schedule]
    if name not in functions:
        _load_module([file])
    return functions[name]


class _Index:
    """The host's bookkeeping of the device layout: slots, parameter offsets, edge numbers.

    A fresh index puts the groups in topological order and the parameters in in-edge order.
    grown() extends it for a grown network without moving anything: old slots, parameters (and
    so their optimizer state) and edges stay where they were, a moved edge keeps its block, new
    groups, parameters and edges are appended. `records` lists the edges to write on the GPU
    (edge, src slot, dst slot, weight offset, input position, output position), from which the
    GPU builds the CSR, the levels and the task lists (cuda/topology.cu).
    """

    def __init__(self, net: Network):
        order = net.topological_order()
        self.groups, self.slot = list(order), {g: s for s, g in enumerate(order)}
        self.offsets, self.shapes, self.edges, self.fresh, self.records = {}, {}, {}, [], []
        self.n_params = 0
        self.width, self.group_id, self.hidden = (np.zeros(0, np.int32) for _ in range(3))
        self._add_groups(net, order)
        for g in order:
            for s in net.inputs(g):
                self._add_param(("W", s, g), net)
        for g in order[1:]:
            self._add_param(("b", g), net)
        for g in order:
            for s in net.inputs(g):
                self._add_edge(s, g, net)
        self._finish(net)

    def _add_groups(self, net: Network, groups) -> None:
        widths = np.array([net.widths[g] for g in groups], np.int32)
        self.width = np.concatenate([self.width, widths])
        self.group_id = np.concatenate([self.group_id, np.array(list(groups), np.int32)])
        self.hidden = np.concatenate([self.hidden, np.array([g not in (INPUT, OUTPUT) for g in groups], np.int32)])

    def _add_param(self, key: tuple, net: Network) -> None:
        shape = net.weights[key[1:]].shape if key[0] == "W" else net.biases[key[1]].shape
        self.offsets[key], self.shapes[key] = self.n_params, shape
        self.fresh.append(key)
        self.n_params += math.prod(shape)

    def _add_edge(self, s: int, d: int, net: Network, number: int | None = None) -> None:
        e = len(self.edges) if number is None else number
        self.edges[(s, d)] = e
        self.records.append((e, self.slot[s], self.slot[d], self.offsets[("W", s, d)],
                             net.inputs(d).index(s), net.outputs(s).index(d)))

    def _finish(self, net: Network) -> None:
        self.col_off = np.concatenate([[0], np.cumsum(self.width)[:-1]]).astype(np.int32)
        self.n_cols = int(self.width.sum())
        self.bias_off = np.array([self.offsets.get(("b", g), 0) for g in self.groups], np.int32)
        self.output_slot, self.input_slot = self.slot[OUTPUT], self.slot[INPUT]
        self.n_edges = len(self.edges)
        order = sorted((g, s) for s, g in enumerate(self.groups) if g != INPUT)  # grad_std's order
        self.std_ids, self.std_slots = [g for g, _ in order], np.array([s for _, s in order], np.intp)
        self.split_output = len(net.inputs(OUTPUT)) > SPLIT

    def grown(self, net: Network, log: list) -> "_Index":
        """The index of `net`, grown from this one's network by the operations in `log`."""
        new = copy.copy(self)
        new.slot, new.groups = dict(self.slot), list(self.groups)
        new.offsets, new.shapes, new.edges = dict(self.offsets), dict(self.shapes), dict(self.edges)
        new.fresh, new.records = [], []
        added = sorted(g for g in net.widths if g not in self.slot)
        for g in added:
            new.slot[g] = len(new.groups)
            new.groups.append(g)
        new._add_groups(net, added)
        moved = {op[1]: op[2] for op in log if op[0] == "move"}
        for key, old in moved.items():  # the block and the edge change owner; the state starts afresh
            new.offsets[key], new.shapes[key] = new.offsets.pop(old), new.shapes.pop(old)
            new.fresh.append(key)
            new._add_edge(key[1], key[2], net, number=new.edges.pop(old[1:]))
        for g in added:
            for key in [("W", s, g) for s in net.inputs(g)] + [("W", g, d) for d in net.outputs(g)] + [("b", g)]:
                if key not in new.offsets:
                    new._add_param(key, net)
            for s, d in [(s, g) for s in net.inputs(g)] + [(g, d) for d in net.outputs(g)]:
                if (s, d) not in new.edges:
                    new._add_edge(s, d, net)
        new._finish(net)
        return new


class CudaEngine:
    """Runs a Network on an NVIDIA GPU with genlab's CUDA kernels (float32).

    executor: how a training step is scheduled (a key of EXECUTORS); every one computes the same
    step. forward(), backward() and update() called one by one use the level kernels."""

    name = "cuda"
    grows_in_place = True  # growth initialises new parameters on the GPU (apply_growth)

    def __init__(self, net: Network, optimizer, dtype="float32", executor: str = "level"):
        if np.dtype(dtype) != np.float32:
            raise BackendError(f"the CUDA engine runs in float32, not {np.dtype(dtype)}; use the serial "
                               "engine for float64")
        self.executor = executor
        self.schedule, self.direction, self.activations = executor_parts(executor)
        import pycuda.driver as drv

        self._drv = drv
        self.context, self.device, self.k = kernels()
        self.dtype = np.dtype(np.float32)
        self.optimizer = optimizer
        self.pruning = (False, None)  # (track activation ranges, Taylor alpha or None), see growth.Grower
        self.layout: _Index | None = None
        self._buffers: dict[str, object] = {}
        self._batch_cap = 0
        self._batch = 0
        self._stats_cache = None
        self.stream = drv.Stream()
        from pycuda.tools import DeviceMemoryPool

        self._pool = DeviceMemoryPool()
        self._host_scalars = drv.pagelocked_zeros(24, np.uint8)
        self._graphs: dict[tuple, object] = {}
        self._param_cap = 0
        self.growth_criterion = None  # (statistic, alpha): smoothed at every step (see growth.Grower)
        # the row executor leaves each step's optimizer update to the next step's forward items
        # (cuda/rows.cu, update_item_params): the update's arguments (_optimizer_args) while one is
        # pending, else None
        self._pending = None
        self.defer_update = True  # False: the update runs as the kernel's last items (for comparisons)
        self._finite = None  # a guard that always passes (optim.cu), for _flush
        self._chunk = CH if self.schedule == "rows" else TILE  # neurons per forward / backward task
        # (list prefix, kernel suffix, lowest width, neurons a task): the pull level executors' tiers;
        # the persistent kernels and the push pass take every group as tasks of self._chunk neurons
        self._tiers = [("", "", 0, self._chunk)]
        if (self.schedule, self.direction) == ("level", "pull"):
            self._tiers = [("", "", 0, TILE), ("mid_", "_mid", MID, MT), ("wide_", "_wide", WIDE, WT)]
        self._grid = self._resident_blocks() if self.schedule in PERSISTENT else 0
        self.load(net)

    def _resident_blocks(self) -> int:
        """How many blocks of the dataflow kernel the device holds at once: its grid (limited by
        registers, shared memory and threads per multiprocessor). A larger grid would still be
        correct, the extra blocks starting as others leave; a smaller one would leave SMs idle."""
        drv, f = self._drv, persistent_kernel(self.schedule)
        fa, da = drv.function_attribute, drv.device_attribute
        get = self.device.get_attribute
        regs = max(1, f.get_attribute(fa.NUM_REGS)) * THREADS
        smem = f.get_attribute(fa.SHARED_SIZE_BYTES) + 1024  # the driver reserves 1 KiB per block
        per_sm = min(get(da.MAX_REGISTERS_PER_MULTIPROCESSOR) // regs,
                     get(da.MAX_SHARED_MEMORY_PER_MULTIPROCESSOR) // smem,
                     get(da.MAX_THREADS_PER_MULTIPROCESSOR) // THREADS)
        return max(1, per_sm) * get(da.MULTIPROCESSOR_COUNT)

    # ------------------------------------------------------------------ memory
    def _new(self, nbytes: int, what: str):
        drv, nbytes = self._drv, max(int(nbytes), 4)
        try:
            # small buffers (topology, task lists, scores: dozens at every growth step) come from a
            # pool, so that a growth step neither allocates from nor frees to the driver (a free
            # waits for the whole device)
            return self._pool.allocate(nbytes) if nbytes <= POOLED else drv.mem_alloc(nbytes)
        except drv.MemoryError:
            free, total = drv.mem_get_info()
            raise BackendError(f"out of GPU memory allocating {nbytes / 2**20:.1f} MiB for {what} "
                               f"({free / 2**20:.0f} of {total / 2**20:.0f} MiB free); the network on the "
                               "host is unchanged") from None

    def _check_room(self, nbytes: int, what: str) -> None:
        free, total = self._drv.mem_get_info()
        if nbytes > free:
            raise BackendError(f"out of GPU memory: {what} needs {nbytes / 2**20:.1f} MiB and the device has "
                               f"{free / 2**20:.0f} of {total / 2**20:.0f} MiB free; the network on the host "
                               "is unchanged")

    def _ensure_batch(self, batch: int) -> None:
        """Activation and gradient blocks with room for `batch` rows (capacity doubles)."""
        if batch <= self._batch_cap:
            return
        L = self.layout
        cap = max(batch, 2 * self._batch_cap)
        if L.n_cols * cap >= 2**31:
            cap = batch
        if L.n_cols * cap >= 2**31:
            raise BackendError(f"activations of {L.n_cols} neurons x {batch} rows exceed 2^31 elements")
        self._check_room(8 * L.n_cols * cap, f"activations for a batch of {cap}")
        new = self._batch_buffers(L, cap)
        self.stream.synchronize()
        self._buffers.update(new)
        self._batch_cap = cap
        self._graphs.clear()

    def _batch_buffers(self, ix: "_Index", cap: int) -> dict:
        """Activations, their gradients, the labels and the dataflow counters for `cap` rows."""
        offsets = ix.col_off.astype(np.int64) * self._block_scale(cap)
        new = {"act": self._new(4 * ix.n_cols * cap, "activations"), "dz": self._new(4 * ix.n_cols * cap, "gradients"),
               "labels": self._new(4 * cap, "labels"), "act_off": self._upload_new(offsets.astype(np.int32))}
        if self.schedule in PERSISTENT:
            new["counters"] = self._new(4 * self._counter_words(len(ix.groups), cap), "dependency counters")
        return new

    def _block_scale(self, cap: int) -> int:
        """act_off[s] = col_off[s] * this: a group's block holds `cap` rows (group-major), or
        its neurons start at its column of one long row per sample (batch-major)."""
        return cap if self.activations == "group" else 1

    def _counter_words(self, n_slots: int, batch: int) -> int:
        """Size of the persistent kernel's counters: next item, gradients done, then fdone, fready,
        bdone and bready per (slot, batch tile) and gready per slot (cuda/dataflow.cu); the row
        executor's items cover the whole batch, so one of each per slot (cuda/rows.cu)."""
        tiles = 1 if self.schedule == "rows" else (batch + TILE - 1) // TILE
        return 2 + (4 * tiles + 1) * n_slots

    def _upload_new(self, array: np.ndarray):
        array = np.ascontiguousarray(array)
        buf = self._new(array.nbytes, "topology")
        if array.nbytes:
            self._drv.memcpy_htod(buf, array)
        return buf

    # ------------------------------------------------------------------ topology
    _SLOT_ARRAYS = ("width", "col_off", "bias_off", "group_id", "hidden")
    _EDGE_ARRAYS = ("e_src", "e_dst", "e_woff", "e_inpos", "e_outpos")

    def _state_names(self) -> list[str]:
        return {"sgd": ["vel"], "adam": ["m", "v", "t"]}[self.optimizer.name]

    def _build(self, ix: _Index, cap: int, edges: dict | None = None) -> dict:
        """New buffers for everything that follows from the topology (all but parameters,
        optimizer state and growth scores): the edge list (`edges`: the current one, extended;
        None: a new one) receives ix.records, then the GPU builds the CSR both ways, the
        levels and the task lists (cuda/topology.cu)."""
        drv, n, E = self._drv, len(ix.groups), ix.n_edges
        new = {name: self._upload_new(getattr(ix, name)) for name in self._SLOT_ARRAYS}
        for name in self._EDGE_ARRAYS:  # a copy, so that a failure leaves the current list intact
            new[name] = self._new(4 * E, "edges")
            if edges is not None:
                drv.memcpy_dtod_async(new[name], edges[name], 4 * self.layout.n_edges, self.stream)
        if ix.records:
            self._launch_flat("topo_write_edges", len(ix.records), self._upload_new(np.array(ix.records, np.int32)),
                              np.int32(len(ix.records)), *[new[name] for name in self._EDGE_ARRAYS])
        # a pass per tier of widths that has a group (the first always): its lists named with its prefix
        bounds = [lo for _, _, lo, _ in self._tiers[1:]] + [2**31 - 1]
        passes = [(pre, lo, hi, chunk) for (pre, _, lo, chunk), hi in zip(self._tiers, bounds)
                  if not lo or ((ix.width >= lo) & (ix.width < hi)).any()]
        if len(passes) > 1:
            wide_kernels()
        sizes = [("in_deg", n), ("out_deg", n), ("in_ptr", n + 1), ("out_ptr", n + 1), ("level", n),
                 ("in_src", E), ("in_dst", E), ("in_woff", E), ("out_dst", E), ("out_woff", E),
                 ("bias_count", n + 1), ("bias_ptr", n + 2)]
        for pre, *_ in passes:
            sizes += [(pre + "fwd_count", n + 1), (pre + "bwd_count", n + 1), (pre + "fwd_ptr", n + 2),
                      (pre + "bwd_ptr", n + 2), (pre + "fwd_cursor", n + 1), (pre + "bwd_cursor", n + 1),
                      (pre + "weight_count", E), (pre + "weight_ptr", E + 1)]
        for name, count in sizes:
            new[name] = self._new(4 * count, "topology")
        zeroed = ["in_deg", "out_deg", "bias_count"] + [pre + name for pre, *_ in passes for name in
                                                        ("fwd_count", "bwd_count", "fwd_cursor", "bwd_cursor")]
        for name in zeroed:
            drv.memset_d32_async(new[name], 0, n + (name not in ("in_deg", "out_deg")), self.stream)
        edge_args = [new[name] for name in self._EDGE_ARRAYS]
        self._launch_flat("topo_degrees", E, new["e_src"], new["e_dst"], np.int32(E), new["in_deg"], new["out_deg"])
        self._launch("scan_exclusive", (1, 1), new["in_deg"], new["in_ptr"], np.int32(n))
        self._launch("scan_exclusive", (1, 1), new["out_deg"], new["out_ptr"], np.int32(n))
        self._launch_flat("topo_fill", E, *edge_args, np.int32(E), new["in_ptr"], new["out_ptr"], new["in_src"],
                          new["in_dst"], new["in_woff"], new["out_dst"], new["out_woff"])
        self._launch("topo_levels", (1, 1), new["in_ptr"], new["in_src"], np.int32(n), new["level"])

        def tasks(mode, pre, lo, hi, chunk):
            fill = [new[pre + "forward_tasks"], new[pre + "backward_tasks"], new["bias_tasks"]] if mode else \
                [new[pre + "fwd_count"], new[pre + "bwd_count"], new["bias_count"]]  # unused when counting
            self._launch_flat("topo_tasks", n, np.int32(mode), new["width"], new["level"], new["in_ptr"], np.int32(n),
                              np.int32(ix.input_slot), np.int32(ix.output_slot), np.int32(SPLIT if not lo else E + 1),
                              np.int32(chunk), np.int32(lo), np.int32(hi), new[pre + "fwd_count"],
                              new[pre + "bwd_count"], new["bias_count"], new[pre + "fwd_ptr"], new[pre + "bwd_ptr"],
                              new["bias_ptr"], new[pre + "fwd_cursor"], new[pre + "bwd_cursor"], *fill)
            self._launch_flat("topo_weight_tasks", E, np.int32(mode), new["in_src"], new["in_dst"], new["width"],
                              np.int32(E), np.int32(lo), np.int32(hi), np.int32(TILE if not lo else chunk),
                              new[pre + "weight_count"], new[pre + "weight_ptr"],
                              new[pre + "weight_tasks"] if mode else new[pre + "weight_count"])

        for pre, lo, hi, chunk in passes:
            tasks(0, pre, lo, hi, chunk)
            for count, ptr, size in (("fwd_count", "fwd_ptr", n + 1), ("bwd_count", "bwd_ptr", n + 1),
                                     ("weight_count", "weight_ptr", E)):
                self._launch("scan_exclusive", (1, 1), new[pre + count], new[pre + ptr], np.int32(size))
        self._launch("scan_exclusive", (1, 1), new["bias_count"], new["bias_ptr"], np.int32(n + 1))
        depth = np.empty(1, np.int32)
        drv.memcpy_dtoh_async(depth, int(new["level"]) + 4 * ix.output_slot, self.stream)
        spans = {}
        for name, size in [("bias_ptr", n + 2)] + [(pre + name, size) for pre, *_ in passes for name, size in
                                                   (("fwd_ptr", n + 2), ("bwd_ptr", n + 2), ("weight_ptr", E + 1))]:
            spans[name] = np.empty(size, np.int32)
            drv.memcpy_dtoh_async(spans[name], new[name], self.stream)
        self.stream.synchronize()
        depth = int(depth[0])
        new["bias_tasks"] = self._new(8 * int(spans["bias_ptr"][n + 1]), "tasks")
        ix.n_bias_tasks = int(spans["bias_ptr"][n + 1])
        ix.tiers = {}  # prefix: (forward levels, backward levels, weight tasks), each level (start, count)
        for number, (pre, lo, hi, chunk) in enumerate(passes):
            fwd, bwd = spans[pre + "fwd_ptr"], spans[pre + "bwd_ptr"]
            new[pre + "forward_tasks"] = self._new(16 * int(fwd[n + 1]), "tasks")
            new[pre + "backward_tasks"] = self._new(8 * int(bwd[n + 1]), "tasks")
            new[pre + "weight_tasks"] = self._new(12 * int(spans[pre + "weight_ptr"][E]), "tasks")
            tasks(1, pre, lo, hi, chunk)
            # forward from level 1; backward deepest first: the output group's (push only), then the
            # hidden levels (pull: the output group's dz comes from the loss)
            forward = [(int(fwd[lv]), int(fwd[lv + 1] - fwd[lv])) for lv in range(1, depth + 1)]
            push = [(int(bwd[k]), int(bwd[k + 1] - bwd[k])) for k in range(depth)]
            ix.tiers[pre] = (forward, push[1:], int(spans[pre + "weight_ptr"][E]))
            if not number:
                ix.forward_levels, ix.backward_levels, ix.n_weight_tasks = ix.tiers[pre]
                ix.push_levels = push
                ix.n_forward_tasks = int(fwd[n + 1])
                ix.backward_start, ix.n_backward_tasks = int(bwd[1]), int(bwd[depth] - bwd[1])  # as one list
        if self.schedule == "rows":
            new["bwd_order"] = self._upload_new(self._backward_order(ix))
        for name, nbytes in (("stats", 24 * n), ("wstats", 8 * n), ("scalars", 24), ("population", 16),
                             ("eligible", 4 * n), ("marked", 4 * n), ("keep", 4 * n), ("rank", 4 * n),
                             ("constant", 4 * n), ("range_min", 4 * ix.n_cols), ("range_max", 4 * ix.n_cols),
                             ("run_lo", 4 * ix.n_cols), ("run_hi", 4 * ix.n_cols), ("run_const", 4 * ix.n_cols)):
            new[name] = self._new(nbytes, name)
        new.update(self._batch_buffers(ix, cap))
        self._reset_ranges(new, ix.n_cols)
        return new

    @staticmethod
    def _backward_order(ix: "_Index") -> np.ndarray:
        """The row executor's order of backward items (2t) and weight items (2t + 1) of backward
        task t: level by level from the deepest, each level's weight items after the backward
        items of the level LAG below it (cuda/rows.cu). Every item still waits only for items
        before it: a weight item needs its consumers' dz, from deeper levels."""
        levels = [(start - ix.backward_start, count) for start, count in ix.backward_levels]
        order: list[int] = []
        for i, (start, count) in enumerate(levels):
            order += range(2 * start, 2 * (start + count), 2)
            if i >= LAG:
                start, count = levels[i - LAG]
                order += range(2 * start + 1, 2 * (start + count), 2)
        for start, count in levels[max(0, len(levels) - LAG):]:
            order += range(2 * start + 1, 2 * (start + count), 2)
        return np.array(order or [0], np.int32)

    # per group, carried by group id through re-layouts: growth score, Taylor score, and whether seen
    _GROUP_STATE = (("ema", np.float64), ("seen", np.int32), ("taylor", np.float64), ("taylor_seen", np.int32))

    def _group_state(self, L: _Index, inherit: dict | None = None) -> dict:
        """New buffers of the per-group scores for index L, from the current ones by group id; a new
        group in `inherit` (new: source) starts with its source's growth score."""
        old, drv, inherit = self.layout, self._drv, inherit or {}
        new = {}
        for name, dtype in self._GROUP_STATE:
            values = np.zeros(len(L.groups), dtype)
            if old is not None:
                current = np.empty(len(old.groups), dtype)
                drv.memcpy_dtoh(current, self._buffers[name])
                for s, g in enumerate(L.groups):
                    g = inherit.get(g, g) if name in ("ema", "seen") else g
                    if g in old.slot:
                        values[s] = current[old.slot[g]]
            new[name] = self._upload_new(values)
        return new

    def _param_maps(self, L: _Index, moved: dict) -> tuple[np.ndarray, np.ndarray]:
        """Where each parameter of L comes from in the current layout (-1: nowhere): values come
        from the same key or, for a moved edge, its old key; optimizer state from the same key."""
        old = self.layout
        values, state = np.full(L.n_params, -1, np.int32), np.full(L.n_params, -1, np.int32)
        for key, off in L.offsets.items():
            size = math.prod(L.shapes[key])
            if key in old.offsets and old.shapes[key] == L.shapes[key]:
                values[off:off + size] = state[off:off + size] = np.arange(old.offsets[key], old.offsets[key] + size)
            elif key in moved:
                values[off:off + size] = np.arange(old.offsets[moved[key]], old.offsets[moved[key]] + size)
        return values, state

    def _gather(self, dst, src, source: np.ndarray) -> None:
        self._launch_flat("gather", len(source), dst, src, self._upload_new(source), np.int32(len(source)))

    def load(self, net: Network) -> None:
        """Take the network's topology and parameters (a full upload); keep the optimizer state
        of unchanged parameters and the scores of remaining groups.

        Everything is allocated anew before anything is replaced, so a failure (out of memory)
        leaves the engine as it was."""
        self._flush()
        L = _Index(net)
        if L.n_params >= 2**31:
            raise BackendError(f"{L.n_params} parameters exceed the engine's 2^31 limit")
        host = np.empty(L.n_params, np.float32)
        for key, off in L.offsets.items():
            value = net.weights[key[1:]] if key[0] == "W" else net.biases[key[1]]
            host[off:off + value.size] = value.ravel()
        states = self._state_names()
        cap = max(self._batch_cap, 1)
        self._check_room(4 * L.n_params * (2 + len(states)) + 8 * L.n_cols * cap,
                         f"a network of {L.n_params} parameters and {L.n_cols} neurons")
        new = {**self._build(L, cap), **self._group_state(L)}
        new["params"], new["grads"] = self._upload_new(host), self._new(4 * L.n_params, "gradients")
        carried = self._param_maps(L, {})[1] if self.layout is not None else None
        for name in states:
            buf = new[f"state_{name}"] = self._new(4 * L.n_params, "optimizer state")
            if carried is not None and (carried >= 0).any():
                self._gather(buf, self._buffers[f"state_{name}"], carried)
            else:
                self._drv.memset_d32(buf, 0, max(L.n_params, 1))
        self.stream.synchronize()
        self._commit(new, L, cap, L.n_params)

    def _commit(self, new: dict, L: _Index, cap: int, param_cap: int) -> None:
        self._buffers.update(new)
        self.layout, self._batch_cap, self._param_cap, self._stats_cache = L, cap, param_cap, None
        self._graphs.clear()  # they hold the old buffers' addresses

    def apply_growth(self, net: Network, log: list) -> None:
        """Take the network as growth (and pruning) left it, replaying the log of growth.py's
        parameter operations on the GPU; nothing goes up from the host but topology records.

        Growth alone keeps everything in place: new groups, parameters and edges are appended,
        the operations run in one launch, the GPU rebuilds CSR, levels and tasks. When groups
        were removed, the folds run first (in the log's order), then the layout is rebuilt by
        gathering parameters, optimizer state and scores by key on the GPU."""
        self._flush()
        old, states, cap = self.layout, self._state_names(), self._batch_cap
        moved = {op[1]: op[2] for op in log if op[0] == "move"}
        inherit = {op[1]: op[2] for op in log if op[0] == "inherit"}  # new groups start with their source's score
        if set(old.groups) - set(net.widths):
            for op in log:
                if op[0] == "fold":
                    self._fold(*op[1:])
            L = _Index(net)
            self._check_room(4 * L.n_params * (2 + len(states)), f"{L.n_params} parameters")
            new = {**self._build(L, cap), **self._group_state(L, inherit)}
            values, state = self._param_maps(L, moved)
            new["params"], new["grads"] = self._new(4 * L.n_params, "parameters"), self._new(4 * L.n_params, "gradients")
            self._gather(new["params"], self._buffers["params"], values)
            for name in states:
                new[f"state_{name}"] = self._new(4 * L.n_params, "optimizer state")
                self._gather(new[f"state_{name}"], self._buffers[f"state_{name}"], state)
            param_cap, fresh = L.n_params, []
        else:
            L = old.grown(net, log)
            if L.n_params >= 2**31:
                raise BackendError(f"{L.n_params} parameters exceed the engine's 2^31 limit")
            new = {**self._build(L, cap, self._buffers), **self._group_state(L, inherit)}
            param_cap = self._param_cap
            if L.n_params > param_cap:  # grow geometrically, copying what is there
                param_cap = max(L.n_params, int(1.5 * param_cap))
                self._check_room(4 * param_cap * (2 + len(states)), f"{param_cap} parameters")
                for name in ["params", "grads"] + [f"state_{s}" for s in states]:
                    new[name] = self._new(4 * param_cap, name)
                    if name != "grads":
                        self._drv.memcpy_dtod_async(new[name], self._buffers[name], 4 * old.n_params, self.stream)
            fresh = L.fresh
        self._replay(L, {**self._buffers, **new}, log, fresh)
        self.stream.synchronize()
        self._commit(new, L, cap, param_cap)

    def _fold(self, g: int, d: int, source: str) -> None:
        """b_d += W_gd c on the current layout; c: g's constant output at the last check, or relu(b_g)."""
        L = self.layout
        c = (self._ptr("run_const", 4 * int(L.col_off[L.slot[g]])) if source == "range"
             else self._ptr("params", 4 * L.offsets[("b", g)]))
        self._launch("prune_fold", (1, 1), self._buffers["params"], np.int32(L.offsets[("W", g, d)]),
                     np.int32(L.width[L.slot[d]]), np.int32(L.width[L.slot[g]]), np.int32(L.offsets[("b", d)]), c,
                     np.int32(source == "relu_bias"))

    def _replay(self, L: _Index, b: dict, log: list, fresh: list) -> None:
        """The growth operations of `log` (and zeroed optimizer state for `fresh` parameters), in one launch."""
        ops, fparams, seed, step = [], [], 0, 0
        size = lambda k: math.prod(L.shapes[k])
        for op in log:
            kind = op[0]
            if kind == "hash":
                seed, step = op[1], op[2]
            elif kind == "identity":
                ops.append((_OPS["identity"], L.offsets[op[1]], 0, size(op[1]), op[2], 0, 0)); fparams.append(0.0)
            elif kind == "copy":
                ops.append((_OPS["copy"], L.offsets[op[1]], L.offsets[op[2]], size(op[1]), 0, 0, 0)); fparams.append(0.0)
            elif kind == "split":
                ops.append((_OPS["split"], L.offsets[op[2]], L.offsets[op[1]], size(op[1]), 0, op[4], op[5]))
                fparams.append(float(op[3]))
            elif kind == "he":
                ops.append((_OPS["he"], L.offsets[op[1]], 0, size(op[1]), 0, op[3], op[4])); fparams.append(float(op[2]))
            elif kind == "zero":
                ops.append((_OPS["zero"], L.offsets[op[1]], 0, size(op[1]), 0, 0, 0)); fparams.append(0.0)
        for key in fresh:
            ops.append((_OPS["zero_state"], L.offsets[key], 0, size(key), 0, 0, 0)); fparams.append(0.0)
        if not ops:
            return
        state = [b[f"state_{name}"] for name in self._state_names()]
        state += [np.intp(0)] * (3 - len(state))
        self.k["growth_init"].prepared_async_call(
            (len(ops), 1), (THREADS, 1, 1), self.stream, self._upload_new(np.array(ops, np.int32)),
            self._upload_new(np.array(fparams, np.float64)), b["params"], *state,
            np.uint32(seed & 0xFFFFFFFF), np.uint32(step & 0xFFFFFFFF))

    def choose_growth(self, eligible: set[int], threshold: float, relative: bool) -> list[tuple[int, float]]:
        """Mark, select and rank on the GPU (cuda/growth.cu); return the groups to grow in budget
        order with their smoothed scores."""
        L, b = self.layout, self._buffers
        n = len(L.groups)
        self._drv.memcpy_htod(b["eligible"], np.array([g in eligible for g in L.groups], np.int32))
        if relative:
            self._launch("growth_population", (1, 1), b["ema"], b["seen"], b["hidden"], np.int32(n), b["population"])
        self._launch_flat("growth_mark", n, b["ema"], b["seen"], b["eligible"], np.int32(n), np.float64(threshold),
                          np.int32(bool(relative)), b["population"], b["marked"])
        self._launch_flat("growth_select", n, b["marked"], b["in_ptr"], b["in_src"], np.int32(n), b["keep"])
        self._launch_flat("growth_rank", n, b["keep"], b["ema"], b["group_id"], np.int32(n), b["rank"])
        rank, ema = np.empty(n, np.int32), np.empty(n, np.float64)
        self._drv.memcpy_dtoh_async(rank, b["rank"], self.stream)
        self._drv.memcpy_dtoh_async(ema, b["ema"], self.stream)
        self.stream.synchronize()
        chosen = sorted((r, s) for s, r in enumerate(rank) if r >= 0)
        return [(L.groups[s], float(ema[s])) for _, s in chosen]

    def prune_report(self) -> tuple[dict, dict]:
        """Constant groups since the last check, with their output, and smoothed Taylor scores;
        the ranges start afresh (their values at this check stay for the folds)."""
        L, b, drv = self.layout, self._buffers, self._drv
        n = len(L.groups)
        self._launch_flat("prune_constant", n, b["run_lo"], b["run_hi"], b["col_off"], b["width"], b["hidden"],
                          np.int32(n), b["constant"])
        constant, lo = np.empty(n, np.int32), np.empty(L.n_cols, np.float32)
        taylor, seen = np.empty(n, np.float64), np.empty(n, np.int32)
        for host, name in ((constant, "constant"), (lo, "run_lo"), (taylor, "taylor"), (seen, "taylor_seen")):
            drv.memcpy_dtoh_async(host, b[name], self.stream)
        drv.memcpy_dtod_async(b["run_const"], b["run_lo"], 4 * L.n_cols, self.stream)
        self._reset_ranges(b, L.n_cols)
        self.stream.synchronize()
        columns = lambda s: slice(int(L.col_off[s]), int(L.col_off[s] + L.width[s]))
        return ({g: lo[columns(s)].astype(np.float64) for s, g in enumerate(L.groups) if constant[s]},
                {g: float(taylor[s]) for s, g in enumerate(L.groups) if seen[s] and L.hidden[s]})

    def _reset_ranges(self, b: dict, n_cols: int) -> None:
        for name, pattern in (("run_lo", 0x7F800000), ("run_hi", 0xFF800000)):  # +inf, -inf
            self._drv.memset_d32_async(b[name], pattern, n_cols, self.stream)

    # ------------------------------------------------------------------ launches
    # Everything is enqueued on self.stream; a training step is captured once per (batch size,
    # optimizer settings) into a CUDA graph and replayed.
    def _launch(self, name: str, grid, *args) -> None:
        self.k[name].prepared_async_call(grid, (THREADS, 1, 1), self.stream, *args)

    def _launch_flat(self, name: str, n: int, *args) -> None:
        self._launch(name, ((n + THREADS - 1) // THREADS, 1), *args)

    def _ptr(self, name: str, offset_bytes: int = 0):
        return int(self._buffers[name]) + offset_bytes

    def _block(self, slot: int) -> int:
        """Byte offset of a group's activations (row 0, neuron 0)."""
        return 4 * int(self.layout.col_off[slot]) * self._block_scale(self._batch_cap)

    @property
    def _ld(self) -> int:
        """The kernels' `ld`: 0 for group-major activations, else the length of a row (genlab.cuh)."""
        return 0 if self.activations == "group" else self.layout.n_cols

    def _rows(self, slot: int, batch: int, host: np.ndarray, to_device: bool = True) -> None:
        """Copy `batch` rows of a group's activations from `host` to the device, or back into it.
        Batch-major rows are strided: a 2-D copy on the default stream, which waits for ours."""
        L, drv = self.layout, self._drv
        width, device = int(L.width[slot]), self._ptr("act", self._block(slot))
        if self.activations == "group":
            if to_device:
                drv.memcpy_htod_async(device, host, self.stream)
            else:
                drv.memcpy_dtoh_async(host, device, self.stream)
            return
        copy = drv.Memcpy2D()
        (copy.set_src_host if to_device else copy.set_dst_host)(host)
        (copy.set_dst_device if to_device else copy.set_src_device)(device)
        copy.width_in_bytes, copy.height = 4 * width, batch
        if to_device:
            copy.src_pitch, copy.dst_pitch = 4 * width, 4 * L.n_cols
        else:
            copy.src_pitch, copy.dst_pitch = 4 * L.n_cols, 4 * width
        copy(True)  # synchronous (aligned: both pitches are multiples of 4 bytes)

    def _zero_rows(self, slot: int, batch: int) -> None:
        L, drv = self.layout, self._drv
        width, device = int(L.width[slot]), self._ptr("act", self._block(slot))
        if self.activations == "group":
            drv.memset_d32_async(device, 0, batch * width, self.stream)
        else:
            drv.memset_d2d32_async(device, 4 * L.n_cols, 0, width, batch, self.stream)

    def _put_batch(self, x: np.ndarray, y: np.ndarray | None = None) -> int:
        L, batch = self.layout, len(x)
        self._ensure_batch(batch)
        self._batch = batch
        self._rows(L.slot[INPUT], batch, np.ascontiguousarray(x, np.float32))
        if y is not None:
            self._put_labels(y)
        return batch

    def _put_labels(self, y: np.ndarray) -> None:
        y = np.ascontiguousarray(y, np.int32)
        if len(y) != self._batch:
            raise ValueError(f"{len(y)} labels for a batch of {self._batch} rows")
        self._drv.memcpy_htod_async(self._buffers["labels"], y, self.stream)

    def _enqueue_forward(self, batch: int) -> None:
        L, b = self.layout, self._buffers
        if L.split_output:
            self._zero_rows(L.output_slot, batch)
        for level in range(len(L.forward_levels)):
            for pre, suffix, rows, extra in self._tier_launches(batch):
                start, count = L.tiers[pre][0][level]
                if count:
                    self._launch("forward" + (suffix or "_level"), (count, rows), self._ptr(pre + "forward_tasks", 16 * start),
                                 b["width"], b["act_off"], b["bias_off"], b["in_ptr"], b["in_src"], b["in_woff"],
                                 b["params"], b["act"], np.int32(batch), np.int32(self._ld), np.int32(L.output_slot),
                                 *extra)

    def _tier_launches(self, batch: int) -> list:
        """(list prefix, kernel suffix, batch tiles, extra kernel arguments) of each tier of widths
        that has lists: the first's kernels (forward_level, backward_level, weight_grad) take the
        task size, the others' (forward_mid, ..., weight_wide) have it built in."""
        return [(pre, suffix, (batch + (size if lo else TILE) - 1) // (size if lo else TILE),
                 () if lo else (np.int32(self._chunk),)) for pre, suffix, lo, size in self._tiers
                if pre in self.layout.tiers]

    def _zero_step_sums(self) -> None:
        L, b, drv = self.layout, self._buffers, self._drv
        drv.memset_d32_async(b["stats"], 0, 6 * len(L.groups), self.stream)
        drv.memset_d32_async(b["wstats"], 0, 2 * len(L.groups), self.stream)
        drv.memset_d32_async(b["scalars"], 0, 6, self.stream)

    def _enqueue_backward(self, batch: int) -> None:
        L, b, drv = self.layout, self._buffers, self._drv
        ld, rows = np.int32(self._ld), (batch + TILE - 1) // TILE
        self._zero_step_sums()
        if self.direction == "push":  # every dz block gathers atomically from its consumers
            drv.memset_d32_async(b["dz"], 0, L.n_cols * self._batch_cap, self.stream)
        out = L.output_slot
        self._launch("softmax_xent", ((batch + THREADS - 1) // THREADS, 1), self._ptr("act", self._block(out)),
                     b["labels"], np.int32(batch), np.int32(L.width[out]), np.int32(self._ld),
                     self._ptr("dz", self._block(out)), b["scalars"], self._ptr("scalars", 8), b["stats"],
                     np.int32(out))
        if self.direction == "pull":
            for level in range(len(L.backward_levels)):
                for pre, suffix, tiles, extra in self._tier_launches(batch):
                    start, count = L.tiers[pre][1][level]
                    if count:
                        self._launch("backward" + (suffix or "_level"), (count, tiles),
                                     self._ptr(pre + "backward_tasks", 8 * start), b["width"], b["act_off"],
                                     b["out_ptr"], b["out_dst"], b["out_woff"], b["params"], b["act"], b["dz"],
                                     np.int32(batch), ld, b["stats"], *extra)
        else:
            for number, (start, count) in enumerate(L.push_levels):
                if not count:
                    continue
                tasks = self._ptr("backward_tasks", 8 * start)
                if number:  # all consumers of this level have pushed: mask and statistics
                    self._launch("backward_finish", (count, rows), tasks, b["width"], b["act_off"], b["act"],
                                 b["dz"], np.int32(batch), ld, b["stats"])
                self._launch("backward_push", (count, rows), tasks, b["width"], b["act_off"], b["in_ptr"],
                             b["in_src"], b["in_woff"], b["hidden"], b["params"], b["dz"], np.int32(batch), ld)
        gradsq = self._ptr("scalars", 16)
        for pre, suffix, _, _ in self._tier_launches(batch):
            count = L.tiers[pre][2]
            if count:
                self._launch("weight" + (suffix or "_grad"), (count, 1), b[pre + "weight_tasks"], b["in_src"],
                             b["in_dst"], b["in_woff"], b["width"], b["act_off"], b["act"], b["dz"], b["grads"],
                             np.int32(batch), ld, b["wstats"], gradsq)
        self._launch("bias_grad", (L.n_bias_tasks, 1), b["bias_tasks"], b["width"], b["act_off"], b["bias_off"],
                     b["dz"], b["grads"], np.int32(batch), ld, b["wstats"], gradsq)
        self._enqueue_ranges(batch)

    def _enqueue_ranges(self, batch: int) -> None:
        L, b = self.layout, self._buffers
        if self.pruning[0]:
            self._launch("activation_range", (L.n_bias_tasks, 1), b["bias_tasks"], b["width"], b["act_off"],
                         b["col_off"], b["act"], np.int32(batch), np.int32(self._ld), b["range_min"],
                         b["range_max"], b["run_lo"], b["run_hi"])

    def _persistent_setup(self, batch: int) -> list:
        """Zero what a persistent kernel's step accumulates (sums, counters, a split output block);
        return its optimizer arguments: the kind, three state buffers, n_params, lr, three hyper-
        parameters."""
        L, b = self.layout, self._buffers
        self._zero_step_sums()
        self._drv.memset_d32_async(b["counters"], 0, self._counter_words(len(L.groups), batch), self.stream)
        if L.split_output:
            self._zero_rows(L.output_slot, batch)
        return self._optimizer_args()

    def _optimizer_args(self) -> list:
        """The update's arguments (optim.cu): the kind (0 SGD, 1 Adam), three state buffers,
        n_params, lr, three hyper-parameters."""
        L, b, opt = self.layout, self._buffers, self.optimizer
        if opt.name == "sgd":
            state, hyper = [b["state_vel"], np.intp(0), np.intp(0)], (opt.momentum, 0.0, 0.0)
        else:
            state, hyper = [b["state_m"], b["state_v"], b["state_t"]], (opt.beta1, opt.beta2, opt.eps)
        return [np.int32(opt.name != "sgd"), *state, np.int32(L.n_params), np.float32(opt.lr),
                *[np.float32(h) for h in hyper]]

    def _enqueue_dataflow(self, batch: int) -> None:
        """The whole step (forward to update) as one launch of the persistent kernel."""
        L, b = self.layout, self._buffers
        optimizer = self._persistent_setup(batch)
        self._launch("dataflow_step", (self._grid, 1), b["width"], b["act_off"], b["bias_off"], b["in_ptr"],
                     b["in_src"], b["in_dst"], b["in_woff"], b["out_ptr"], b["out_dst"], b["out_woff"], b["hidden"],
                     b["forward_tasks"], np.int32(L.n_forward_tasks), self._ptr("backward_tasks", 8 * L.backward_start),
                     np.int32(L.n_backward_tasks), b["weight_tasks"], np.int32(L.n_weight_tasks), b["bias_tasks"],
                     np.int32(L.n_bias_tasks), b["params"], b["grads"], b["act"], b["dz"], b["labels"],
                     np.int32(batch), np.int32(self._ld), np.int32(len(L.groups)), np.int32(L.input_slot),
                     np.int32(L.output_slot), np.int32(SPLIT), b["stats"], b["wstats"], b["scalars"], *optimizer,
                     b["counters"])
        self._enqueue_ranges(batch)

    def _enqueue_rows(self, batch: int, trace=None, pending: bool = False) -> None:
        """The whole step as one launch of the row executor's persistent kernel (cuda/rows.cu).
        The step's own update is left pending; `pending`: the forward items first apply the
        previous step's (made with the same optimizer arguments)."""
        L, b = self.layout, self._buffers
        optimizer = self._persistent_setup(batch)
        self._launch("rows_step", (self._grid, 1), b["width"], b["act_off"], b["bias_off"], b["in_ptr"],
                     b["in_src"], b["in_woff"], b["out_ptr"], b["out_dst"], b["out_woff"], b["hidden"],
                     b["forward_tasks"], np.int32(L.n_forward_tasks), self._ptr("backward_tasks", 8 * L.backward_start),
                     np.int32(L.n_backward_tasks), b["bwd_order"], b["params"], b["grads"], b["act"], b["dz"],
                     b["labels"], np.int32(batch), np.int32(len(L.groups)), np.int32(L.input_slot), np.int32(L.output_slot),
                     np.int32(SPLIT), b["stats"], b["wstats"], b["scalars"], *optimizer, np.int32(pending),
                     np.int32(self.defer_update), b["counters"], np.intp(int(trace) if trace is not None else 0))
        self._enqueue_ranges(batch)

    def _enqueue_update(self, args: list | None = None, guard=None) -> None:
        kind, s0, s1, s2, n, *hyper = args or self._optimizer_args()
        self._launch("optimizer_update", ((int(n) + 4 * THREADS - 1) // (4 * THREADS), 1), kind, self._buffers["params"],
                     self._buffers["grads"], s0, s1, s2, n, *hyper, guard if guard is not None else self._buffers["scalars"])

    @staticmethod
    def _update_key(args: list) -> tuple:
        return tuple(float(a) if isinstance(a, np.floating) else int(a) for a in args)

    def _flush(self) -> None:
        """Apply the update the row executor's last step left pending (before anything reads or
        replaces the parameters, or runs a forward pass outside a step)."""
        if self._pending is None:
            return
        if self._finite is None:
            self._finite = self._new(24, "guard")
            self._drv.memset_d32(self._finite, 0, 6)  # loss and gradient 0: finite
        self._enqueue_update(self._pending, self._finite)
        self._pending = None
        self.stream.synchronize()

    def _before_rows_step(self) -> list:
        """The row executor's step is about to apply the pending update with this step's optimizer
        arguments: apply it now if it was made with others (a new learning rate). Returns them."""
        args = self._optimizer_args()
        if self._pending is not None and self._update_key(self._pending) != self._update_key(args):
            self._flush()
        return args

    def _after_rows_step(self, args: list, finite: bool) -> None:
        """The pending update was applied by the step; the step's own is pending unless refused."""
        self._pending = args if finite and self.defer_update else None

    def _enqueue_growth_observe(self, batch: int) -> None:
        b, n = self._buffers, len(self.layout.groups)
        if self.growth_criterion is not None:
            name, alpha = self.growth_criterion
            self._launch_flat("growth_observe", n, b["stats"], b["wstats"], b["width"], b["hidden"], np.int32(n),
                              np.int32(batch), np.int32(_CRITERIA.index(name)), np.float64(alpha), b["ema"],
                              b["seen"], b["scalars"])
        if self.pruning[1] is not None:
            self._launch_flat("prune_observe", n, b["stats"], b["width"], b["hidden"], np.int32(n), np.int32(batch),
                              np.float64(self.pruning[1]), b["taylor"], b["taylor_seen"], b["scalars"])

    def _read_scalars(self) -> tuple[float, int, float]:
        """(loss, correct predictions, sum of squared gradients) of the last backward."""
        self._drv.memcpy_dtoh_async(self._host_scalars, self._buffers["scalars"], self.stream)
        self.stream.synchronize()
        raw = self._host_scalars
        return (float(raw[:8].view(np.float64)[0]), int(raw[8:12].view(np.int32)[0]),
                float(raw[16:24].view(np.float64)[0]))

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits for a batch x (copied to the host)."""
        self._flush()
        L = self.layout
        batch = self._put_batch(x)
        self._enqueue_forward(batch)
        out = np.empty((batch, int(L.width[L.output_slot])), np.float32)
        self._rows(L.output_slot, batch, out, to_device=False)
        self.stream.synchronize()
        return out

    def backward(self, y: np.ndarray) -> float:
        """Loss of the last forward against labels y; fills gradients and statistics."""
        self._flush()
        self._put_labels(y)
        self._enqueue_backward(self._batch)
        self._stats_cache = None
        return self._read_scalars()[0]

    def update(self) -> None:
        """One optimizer step with the gradients of the last backward (refused on device if they
        or the loss are not finite)."""
        self._flush()
        self._enqueue_update()
        self.stream.synchronize()

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """Forward, backward and update on one batch as one CUDA graph; return (loss, correct).

        A non-finite loss or gradient makes the update kernels do nothing and raises TrainingError.
        The row executor applies the update in the next step's forward items, or at the first
        call that reads the parameters (_flush): the same update, at the same values."""
        batch = self._put_batch(x, y)
        rows = self.schedule == "rows"
        if rows:
            args = self._before_rows_step()
        self._launch_step(batch)
        loss, correct, gradsq = self._read_scalars()
        self._stats_cache = None
        finite = np.isfinite(loss) and np.isfinite(gradsq)
        if rows:
            self._after_rows_step(args, finite)
        if not finite:
            raise TrainingError(f"the loss or its gradients became {loss} on this batch; the step was "
                                "not applied (try a lower learning rate)")
        return loss, correct

    def trace_step(self, x: np.ndarray, y: np.ndarray) -> dict:
        """One training step of the row executor (dataflow_rows) with the timeline of its work
        items: per item (in the order they were taken) its kind ("input", "forward", "loss",
        "backward", "weight", "input_weight", "update"), group slot (-1 where none), SM, and the times
        (microseconds from the step's first item) it was taken, its inputs were complete and it
        was done. The step is applied, as step() would."""
        if self.schedule != "rows":
            raise BackendError(f"trace_step follows the dataflow_rows executor's items, not {self.executor!r}")
        L, drv = self.layout, self._drv
        args = self._before_rows_step()
        batch = self._put_batch(x, y)
        in_edges = sum(1 for (src, _d) in L.edges if L.slot[src] == L.input_slot)
        n_inw = -(-int(L.width[L.input_slot]) // CH) * -(-in_edges // EW)
        counts = [("input", 1), ("forward", L.n_forward_tasks), ("loss", 1), ("backward", 2 * L.n_backward_tasks),
                  ("input_weight", n_inw)]  # rows_step's items
        if not self.defer_update:
            counts.append(("update", -(-L.n_params // UPDATE_CHUNK)))
        total = sum(c for _, c in counts)
        buf = self._new(32 * total, "trace")
        drv.memset_d32_async(buf, 0, 8 * total, self.stream)
        self._enqueue_rows(batch, trace=buf, pending=self._pending is not None)
        self._enqueue_growth_observe(batch)
        raw = np.empty((total, 4), np.uint64)
        drv.memcpy_dtoh_async(raw, buf, self.stream)
        loss, _, gradsq = self._read_scalars()  # synchronises
        self._after_rows_step(args, np.isfinite(loss) and np.isfinite(gradsq))
        buf.free()
        self._stats_cache = None
        kinds = np.concatenate([[k] * c for k, c in counts])
        slots = np.full(total, -1)
        fwd = np.empty((L.n_forward_tasks, 4), np.int32)
        drv.memcpy_dtoh(fwd, self._buffers["forward_tasks"])
        bwd = np.empty((L.n_backward_tasks, 2), np.int32)
        drv.memcpy_dtoh(bwd, self._ptr("backward_tasks", 8 * L.backward_start))
        order = self._backward_order(L)  # backward and weight items, interleaved
        slots[1:1 + len(fwd)] = fwd[:, 0]
        slots[2 + len(fwd):2 + len(fwd) + len(order)] = bwd[order >> 1, 0]
        kinds[2 + len(fwd):2 + len(fwd) + len(order)] = np.where(order & 1, "weight", "backward")
        item = (raw[:, 0] & 0xFFFFFFFF).astype(np.int64)
        if not np.array_equal(np.sort(item), np.arange(total)):
            raise BackendError("the trace is incomplete")
        t0 = raw[:, 1].min()
        us = lambda col: (raw[:, col] - t0).astype(np.float64) / 1e3
        taken = np.argsort(raw[:, 1], kind="stable")
        return {"kind": kinds[item][taken], "slot": slots[item][taken], "item": item[taken],
                "sm": (raw[:, 0] >> np.uint64(32)).astype(np.int64)[taken],
                "taken": us(1)[taken], "ready": us(2)[taken], "done": us(3)[taken]}

    def _launch_step(self, batch: int) -> None:
        """Replay (capturing on first use) the graph of a whole training step for this batch size."""
        from .cuda_graph import Graph

        opt = self.optimizer
        key = (batch, self.pruning, self.growth_criterion, opt.name, *[getattr(opt, a) for a in ("lr", "momentum", "beta1", "beta2",
                                                                              "eps") if hasattr(opt, a)])
        pending = self.schedule == "rows" and self._pending is not None
        key += (pending, self.defer_update)
        graph = self._graphs.get(key)
        if graph is None:
            def enqueue():
                if self.schedule == "dataflow":
                    self._enqueue_dataflow(batch)
                elif self.schedule == "rows":
                    self._enqueue_rows(batch, pending=pending)
                else:
                    self._enqueue_forward(batch)
                    self._enqueue_backward(batch)
                    self._enqueue_update()
                self._enqueue_growth_observe(batch)
            self.stream.synchronize()
            graph = self._graphs[key] = Graph(self.stream, enqueue)
        graph.launch()

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    # ------------------------------------------------------------------ reading back
    @property
    def params(self) -> dict[tuple, np.ndarray]:
        """Every parameter, copied to the host, keyed as the serial engine keys them."""
        return self._unflatten("params")

    @property
    def grads(self) -> dict[tuple, np.ndarray]:
        return self._unflatten("grads")

    def _unflatten(self, name: str) -> dict[tuple, np.ndarray]:
        if name != "grads":
            self._flush()
        L = self.layout
        flat = np.empty(L.n_params, np.float32)
        self._drv.memcpy_dtoh(flat, self._buffers[name])
        return {k: flat[off:off + math.prod(L.shapes[k])].reshape(L.shapes[k]).copy()
                for k, off in L.offsets.items()}

    @property
    def stats(self) -> dict[str, dict]:
        """Per-group statistics of the last backward, as the serial engine reports them."""
        if self._stats_cache is None:
            L, drv = self.layout, self._drv
            sums, count, std = self._sums_and_std()
            wsq = np.empty(len(L.groups), np.float64)
            drv.memcpy_dtoh(wsq, self._buffers["wstats"])
            stats = {name: {} for name in STATISTICS}
            if self.pruning[0]:
                lo, hi = np.empty(L.n_cols, np.float32), np.empty(L.n_cols, np.float32)
                drv.memcpy_dtoh(lo, self._buffers["range_min"])
                drv.memcpy_dtoh(hi, self._buffers["range_max"])
            for s, g in enumerate(L.groups):
                if g == INPUT:
                    continue
                stats["grad_std"][g] = float(std[s])
                stats["weight_grad_norm"][g] = float(np.sqrt(wsq[s]))
                stats["taylor"][g] = float(abs(sums[s, 2] / count[s]))
                if self.pruning[0]:
                    c0, w = int(L.col_off[s]), int(L.width[s])
                    stats["h_min"][g], stats["h_max"][g] = lo[c0:c0 + w].copy(), hi[c0:c0 + w].copy()
            self._stats_cache = stats
        return self._stats_cache

    def _sums_and_std(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per slot: the sums of dL/dh, its squares and h dL/dh; the element counts; the std of dL/dh."""
        L = self.layout
        sums = np.empty((len(L.groups), 3), np.float64)
        self._drv.memcpy_dtoh(sums, self._buffers["stats"])
        count = self._batch * L.width.astype(np.float64)
        mean, meansq = sums[:, 0] / count, sums[:, 1] / count
        return sums, count, np.sqrt(np.maximum(meansq - mean * mean, 0.0))

    @property
    def grad_std(self) -> dict[int, float]:
        """The std of dL/dh per group but the input, in ascending group id: read at every training
        step, so it fetches only the sums and orders them through an index made with the layout."""
        if self._stats_cache is not None:
            return dict(sorted(self._stats_cache["grad_std"].items()))
        L = self.layout
        return dict(zip(L.std_ids, self._sums_and_std()[2][L.std_slots].tolist()))

    def write_back(self, net: Network) -> None:
        """Copy the trained parameters into the network (in the network's dtype)."""
        for key, value in self.params.items():
            if key[0] == "W":
                net.weights[key[1:]] = value.astype(net.dtype)
            else:
                net.biases[key[1]] = value.astype(net.dtype)
