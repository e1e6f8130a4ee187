"""A recurrent network of dense groups through cuda/wavefront.cu: the forward and backward passes
over every step in one persistent launch that reads the recurrent network's parameters where the
engine keeps them (no unrolled copies, no zero-padded inputs), then the weight gradients summed
over time as GEMMs into the engine's gradient buffer. RecurrentCudaEngine's executor "wavefront"
(engines/cuda/recurrent.py) drives it; wavefront_plan.py says what the kernel reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import BackendError
from ...network import Network
from . import graph as graphs
from . import occupancy, runtime
from .constants import THREADS, WF_GAVE_UP, WF_SCALAR_BYTES  # the scalars' bytes, the give-up word's byte
from .memory import Memory
from .wavefront_plan import STATIC_SHARED, plan, rows_for

FILE = "wavefront.cu"


def resident(shared: int) -> int:
    """Blocks of wavefront_step the device holds at once with `shared` bytes of dynamic shared
    memory (every block of a launch must be: they wait for each other)."""
    import pycuda.driver as drv

    runtime.load(FILE)
    return occupancy.resident(runtime.functions()["wavefront_step"], runtime.kernels().device, drv, THREADS, shared)


@dataclass
class Buffers:
    """The device memory of a pass, grown to the largest shape seen (a prediction's batch does
    not make a training step's allocate again)."""

    act: object = None       # every slot's activations over time: (steps * batch) x width each
    dz: object = None        # their gradients dL/dz (the output's: dL/dlogits)
    partials: object = None  # the weight gradients' partial sums, one set of parameters a time chunk
    hmin: object = None      # each neuron's range, a partial per row block
    hmax: object = None
    zeroed: object = None    # zeroed before each pass by one memset: the scalars, the statistics, the flags
    x: object = None         # the sequences (batch, steps, n_inputs)
    labels: object = None    # (batch) or (batch, steps)
    sizes: dict = field(default_factory=dict)

    def grow(self, mem: Memory, sizes: dict[str, int]) -> bool:
        """Room for `sizes`; whether any buffer was made anew (graphs holding the old ones are stale)."""
        grown = False
        for name, nbytes in sizes.items():
            if self.sizes.get(name, -1) < nbytes:
                setattr(self, name, mem.new(nbytes, f"the wavefront's {name}"))
                self.sizes[name] = nbytes
                grown = True
        return grown


@dataclass
class Shape:
    """The launch of one shape of pass (steps, batch): rows a block, blocks of rows, staged weights,
    dynamic shared memory, the weight-gradient items and the activations' offsets on the device."""

    rows: int
    n_rb: int
    stage: bool
    chunk: int     # steps an edge's chunk buffer holds
    region: int    # floats of a block's chunk buffers
    shared: int
    items: object
    n_items: int
    chunks: int
    act_off: object
    zeroed_words: int


def _steps(name: str, value):
    """A number of steps an option names (None: the runner chooses); BackendError unless whole and >= 1."""
    if value is not None and (int(value) != value or value < 1):
        raise BackendError(f"{name} must be a whole number of steps, at least 1 (got {value!r})")
    return value


CHUNK_STEPS = 8  # the most steps of a source an edge's chunk buffer holds (fewer where shared memory is short)
SHAPES = 8  # shapes kept prepared, with their graphs (a run has a few: its batches, the last short one, validation)


class Wavefront:
    """Runs sequences of a recurrent network through the wavefront kernels on `stream`, over the
    flat parameter and gradient buffers `params` and `grads` laid out at `offsets`."""

    def __init__(self, stream, params, grads, offsets: dict, rows: int | None = None, stage: bool | None = None,
                 chunk: int | None = None, release_every: int | None = None):
        import pycuda.driver as drv

        runtime.load(FILE)
        self.drv, self.stream = drv, stream
        self.launch = runtime.Launcher(stream)
        device = runtime.kernels().device
        # the dynamic shared memory a block may ask for: all the device gives (each launch asks for its shape's)
        self.optin = device.get_attribute(drv.device_attribute.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN) - STATIC_SHARED
        self.launch.functions["wavefront_step"].set_attribute(drv.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                                             self.optin)
        self.mem = Memory(stream)
        self.params, self.grads, self.offsets = params, grads, offsets
        self.fixed_rows = rows  # None: the fewest rows that keep every block resident (rows_for)
        self.fixed_stage = stage  # None: weights staged in shared memory where they fit
        self.fixed_chunk = _steps("chunk", chunk)  # None: the most steps up to CHUNK_STEPS that fit
        # None: 1, each step as it is done; releasing several at once saved nothing measurable and
        # delays a deep stack (benchmarks/NOTES.md, recurrence v2, fourth round): a harness variant
        self.release_every = _steps("release_every", release_every) or 1
        self.plan = None
        self.shape: tuple[int, int] | None = None
        self.now: Shape | None = None  # the launch of that shape
        self.b = Buffers()
        self._host_scalars = drv.pagelocked_zeros(WF_SCALAR_BYTES, np.uint8)
        self._host_stats = None  # the statistics, read back with the scalars after a training pass
        self._trained = False    # whether the last pass trained (its statistics are worth reading)
        self.graphs: dict = {}   # training steps captured, by shape and the update's key (until a buffer grows)
        self.shapes: dict[tuple[int, int], Shape] = {}  # prepared shapes, the latest used last

    def load(self, net: Network) -> None:
        """Take `net`'s topology (its parameters stay where the engine keeps them)."""
        p = plan(net, self.offsets)
        self.plan, self.shape, self.now = p, None, None
        self.shapes.clear()
        self.graphs.clear()
        self._host_stats = self.drv.pagelocked_zeros((p.n_slots, 3), np.float64)
        self.topology = {name: self.mem.upload(getattr(p, name)) for name in (
            "width", "col_off", "bias_off", "in_ptr", "in_src", "in_delay", "in_woff", "out_ptr", "out_dst",
            "out_delay", "out_woff")}

    # ------------------------------------------------------------------ sizes
    def largest_batch(self) -> int:
        """The most rows one pass can take: every block resident at the most rows a block holds."""
        p = self.plan
        rows = self.fixed_rows or p.max_rows()
        return (resident(p.shared_bytes(rows, False)) // p.n_slots) * rows

    def prepare(self, steps: int, batch: int) -> None:
        """Launch sizes for sequences of `steps` steps in batches of `batch`; buffers grown to fit.
        A shape met before (of the last SHAPES) comes back with its graphs, unless a buffer grew."""
        if self.shape == (steps, batch):
            return
        shape = self.shapes.pop((steps, batch), None) or self._shape(steps, batch)
        self.shapes[(steps, batch)] = shape  # the latest last
        if len(self.shapes) > SHAPES:
            dropped = next(iter(self.shapes))
            del self.shapes[dropped]
            self.graphs = {k: g for k, g in self.graphs.items() if k[0] != dropped}
        p = self.plan
        sizes = {"act": 4 * p.n_cols * steps * batch, "dz": 4 * p.n_cols * steps * batch,
                 "partials": 4 * shape.chunks * p.n_params, "hmin": 4 * shape.n_rb * p.n_cols,
                 "hmax": 4 * shape.n_rb * p.n_cols, "zeroed": 4 * shape.zeroed_words,
                 "x": 4 * batch * steps * p.n_inputs, "labels": 4 * batch * steps}
        if self.b.grow(self.mem, sizes):
            self.graphs.clear()  # they hold the buffers made before
        base = int(self.b.zeroed)  # scalars, then per slot 3 doubles, then the flags (8-byte aligned)
        # plain ints: PyCUDA's copies and memsets take an int address (not a NumPy integer)
        self.scalars, self.stats = base, base + WF_SCALAR_BYTES
        self.flags = base + WF_SCALAR_BYTES + 24 * p.n_slots
        self.shape, self.now = (steps, batch), shape

    def _shape(self, steps: int, batch: int) -> Shape:
        """The launch of a new shape; BackendError where the device cannot hold it."""
        p, optin = self.plan, self.optin
        rows = self.fixed_rows or rows_for(p, batch, resident(p.shared_bytes(p.max_rows(), False)))
        if rows > p.max_rows():
            raise BackendError(f"{rows} rows a block: the wavefront kernel's blocks hold at most {p.max_rows()}")
        stage = p.shared_bytes(rows, True) <= optin if self.fixed_stage is None else self.fixed_stage
        n_rb = -(-batch // rows)
        chunk = self.fixed_chunk or self._chunk(rows, stage, min(CHUNK_STEPS, steps), p.n_slots * n_rb)
        shared = p.shared_bytes(rows, stage, chunk)
        if shared > optin:
            raise BackendError(f"the wavefront kernel needs {shared} bytes of shared memory a block for {rows} rows "
                               f"and chunks of {chunk} steps; this GPU gives {optin}")
        room = resident(shared)
        if p.n_slots * n_rb > room:
            raise BackendError(f"{p.n_slots * n_rb} blocks of the wavefront kernel cannot all be resident on "
                               f"{runtime.kernels().device.name()} ({room} at once); batches of at most "
                               f"{self.largest_batch()} rows run on it")
        if p.n_cols * steps * batch >= 2**31:
            raise BackendError(f"{p.n_cols} neurons x {steps} steps x {batch} rows of activations overflow the "
                               "wavefront kernel's 32-bit offsets; use shorter sequences or smaller batches")
        items, chunks = p.items(steps)
        return Shape(rows, n_rb, stage, chunk, p.region(rows, chunk), shared,
                     self.mem.upload(items, "the weight-gradient items"), len(items), chunks,
                     self.mem.upload(p.act_off(steps, batch)),
                     (WF_SCALAR_BYTES + 24 * p.n_slots + 8 * p.n_slots * n_rb) // 4)

    def _chunk(self, rows: int, stage: bool, most: int, blocks: int) -> int:
        """The most steps (at most `most`, halving) an edge's chunk buffer can hold with the block's
        shared memory within the device's and every one of `blocks` blocks still resident."""
        chunk = max(most, 1)
        while chunk > 1:
            shared = self.plan.shared_bytes(rows, stage, chunk)
            if shared <= self.optin and resident(shared) >= blocks:
                break
            chunk //= 2
        return chunk

    # ------------------------------------------------------------------ a step
    def put(self, x: np.ndarray, y: np.ndarray | None) -> None:
        """Sequences x (batch, steps, n_inputs) and labels y ((batch,) or (batch, steps)) onto the device."""
        self.prepare(x.shape[1], x.shape[0])
        self.drv.memcpy_htod_async(self.b.x, np.ascontiguousarray(x, np.float32), self.stream)
        if y is not None:
            self.drv.memcpy_htod_async(self.b.labels, np.ascontiguousarray(y, np.int32), self.stream)

    def train_step(self, every_step: bool, update, key: tuple) -> None:
        """The training pass on the put sequences, then `update()` (what the engine enqueues after
        it: the guarded optimizer step), replayed as one CUDA graph captured on the first use of
        (shape, every_step, key); key holds whatever changes what update() enqueues."""
        graph = self.graphs.get((self.shape, every_step, *key))
        if graph is None:
            self.stream.synchronize()
            graph = self.graphs[(self.shape, every_step, *key)] = graphs.Graph(
                self.stream, lambda: (self.enqueue(True, every_step), update()))
        graph.launch()
        self._trained = True

    def enqueue(self, train: bool, every_step: bool = False) -> None:
        """The launches of one pass (train: forward, backward and gradients) on the put sequences."""
        p, (steps, batch), t, now = self.plan, self.shape, self.topology, self.now
        self.drv.memset_d32_async(self.scalars, 0, now.zeroed_words, self.stream)
        self._trained = train
        i32 = np.int32
        self.launch.named("wavefront_step", (p.n_slots * now.n_rb, 1), t, dict(  # t: the topology by name
            act_off=now.act_off, n_slots=i32(p.n_slots), steps=i32(steps), batch=i32(batch), rows=i32(now.rows),
            n_inputs=i32(p.n_inputs), n_cols=i32(p.n_cols), every_step=i32(every_step), train=i32(train),
            stage=i32(now.stage), chunk=i32(now.chunk), region=i32(now.region), release_every=i32(self.release_every),
            x=self.b.x, labels=self.b.labels, params=self.params, act=self.b.act, dz=self.b.dz, stats=self.stats,
            hmin=self.b.hmin, hmax=self.b.hmax, scalars=self.scalars, flags=self.flags), shared=now.shared)
        if not train:
            return
        self.launch.named("wavefront_weight_grad", (now.n_items, 1), t, dict(
            items=now.items, act_off=now.act_off, n_slots=i32(p.n_slots), steps=i32(steps), batch=i32(batch),
            n_inputs=i32(p.n_inputs), n_chunks=i32(now.chunks), n_params=i32(p.n_params), every_step=i32(every_step),
            x=self.b.x, act=self.b.act, dz=self.b.dz, partials=self.b.partials))
        self.launch.flat("wavefront_reduce", p.n_params, dict(partials=self.b.partials, n_chunks=i32(now.chunks),
                                                              n_params=i32(p.n_params), grads=self.grads,
                                                              scalars=self.scalars))

    def read_scalars(self) -> tuple[float, int, float]:
        """(loss, correct predictions, sum of squared gradients) of the last pass."""
        raw = self._finished()
        return float(raw[:8].view(np.float64)[0]), int(raw[8:12].view(np.int32)[0]), float(raw[16:24].view(np.float64)[0])

    def _finished(self) -> np.ndarray:
        """The last pass's scalars (and a training pass's statistics, in the same synchronisation),
        once it and what was enqueued after it have finished; BackendError if its blocks gave up
        waiting for each other (then nothing it wrote is used)."""
        raw = self._host_scalars
        self.drv.memcpy_dtoh_async(raw, self.scalars, self.stream)
        if self._trained:
            self.drv.memcpy_dtoh_async(self._host_stats, self.stats, self.stream)
        self.stream.synchronize()
        if raw[WF_GAVE_UP:WF_GAVE_UP + 4].view(np.int32)[0]:
            raise BackendError("the wavefront kernel's blocks gave up waiting for each other (WF_WAIT_LIMIT_NS, "
                               "cuda/wavefront.cu): not all of them ran at once (another program or stream may hold "
                               "the GPU's SMs); the pass was dropped and nothing was updated; try again, or use an "
                               "unrolled executor")
        return raw

    def logits(self, every_step: bool = False) -> np.ndarray:
        """The output group of the last pass at its last step, (batch, classes), or with every_step
        at each step, (batch, steps, classes)."""
        p, (steps, batch) = self.plan, self.shape
        classes = int(p.width[-1])
        first = 0 if every_step else steps - 1
        out = np.empty((steps - first, batch, classes), np.float32)
        offset = 4 * (int(p.col_off[-1]) * steps * batch + first * batch * classes)
        self.drv.memcpy_dtoh_async(out, int(self.b.act) + offset, self.stream)
        self._finished()  # the same wait; the logits are dropped if the pass gave up
        return out.transpose(1, 0, 2).copy() if every_step else out[0]

    def sums(self) -> dict[int, np.ndarray]:
        """Per group: the sums of dL/dh, its squares and h dL/dh over every step and row of the last
        training pass."""
        return dict(zip(self.plan.groups, self._host_stats.copy()))

    def ranges(self) -> tuple[dict, dict]:
        """Per hidden group: each neuron's smallest and largest output over the last pass's steps and rows."""
        p = self.plan
        lo, hi = (np.empty((self.now.n_rb, p.n_cols), np.float32) for _ in range(2))
        self.drv.memcpy_dtoh(lo, self.b.hmin)
        self.drv.memcpy_dtoh(hi, self.b.hmax)
        lo, hi = lo.min(axis=0), hi.max(axis=0)
        columns = {g: slice(int(p.col_off[s]), int(p.col_off[s] + p.width[s])) for s, g in enumerate(p.groups[:-1])}
        return {g: lo[c].copy() for g, c in columns.items()}, {g: hi[c].copy() for g, c in columns.items()}
