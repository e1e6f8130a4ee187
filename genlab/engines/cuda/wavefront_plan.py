"""What cuda/wavefront.cu reads about a recurrent network: its slots (the groups but the input, in
the topological order of the edges without a delay, the output last), their in- and out-edges
with delays and weight offsets, where each slot's activations lie for a sequence, the weight-
gradient items, and how many batch rows each block owns.

Pure NumPy, so the plan is tested without a GPU: tests/test_wavefront_plan.py runs its arrays
through an emulation of the kernel and compares with backpropagation through time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import BackendError
from ...kinds import get_kind
from ...kinds.dense import Dense
from ...network import INPUT, OUTPUT, Network
from .constants import THREADS, WF_COLS, WF_EDGE, WF_ROWS, WF_TILE

ITEM_INTS = 5  # edge (-1: a bias), j0, q0, time chunk, slot: one weight-gradient item
STATIC_SHARED = 9 * 1024 + 256  # bytes of wavefront_step's own shared memory (ranges, split sums, block sums)


@dataclass
class Plan:
    groups: list[int]     # the group of each slot; the output group last
    width: np.ndarray     # int32 per slot
    col_off: np.ndarray   # per slot: its first neuron among all slots' (ranges, activation offsets)
    bias_off: np.ndarray  # per slot: its bias in the parameters
    in_ptr: np.ndarray    # CSR of in-edges: per slot, then per edge source slot (-1: input), delay, weights
    in_src: np.ndarray
    in_delay: np.ndarray
    in_woff: np.ndarray
    out_ptr: np.ndarray   # CSR of out-edges to slots: destination slot, delay, weights
    out_dst: np.ndarray
    out_delay: np.ndarray
    out_woff: np.ndarray
    n_inputs: int
    n_params: int

    @property
    def n_slots(self) -> int:
        return len(self.groups)

    @property
    def n_cols(self) -> int:
        return int(self.width.sum())

    def act_off(self, steps: int, batch: int) -> np.ndarray:
        """Where each slot's (steps * batch) x width block starts, for sequences of that shape."""
        return (self.col_off.astype(np.int64) * steps * batch).astype(np.int32)

    def max_rows(self) -> int:
        """The most batch rows a block may own: each thread keeps at most WF_ROWS rows of WF_COLS
        columns of its slot's cell (cuda/wavefront.cu's Share)."""
        per_slot = [WF_ROWS * (THREADS // w) if w <= THREADS else WF_ROWS for w in self.width.tolist()]
        return int(min(per_slot))

    def weight_floats(self) -> int:
        """Floats of the largest set of weight blocks a block stages: its in-edges' (forward) or
        its out-edges' (backward)."""
        widths = self.width.astype(np.int64)
        best = 0
        for s in range(self.n_slots):
            edges = range(self.in_ptr[s], self.in_ptr[s + 1])
            forward = sum(int(widths[s]) * (self.n_inputs if self.in_src[e] < 0 else int(widths[self.in_src[e]]))
                          for e in edges)
            backward = sum(int(widths[self.out_dst[e]]) * int(widths[s]) for e in range(self.out_ptr[s], self.out_ptr[s + 1]))
            best = max(best, forward, backward)
        return best

    def edge_widths(self) -> int:
        """The most floats a row of one step takes in a block's chunk buffers: over the slots, the
        larger of its in-edges' source widths summed and its out-edges' destination widths summed."""
        widths = self.width.astype(np.int64)
        best = 0
        for s in range(self.n_slots):
            forward = sum(self.n_inputs if self.in_src[e] < 0 else int(widths[self.in_src[e]])
                          for e in range(self.in_ptr[s], self.in_ptr[s + 1]))
            backward = sum(int(widths[self.out_dst[e]]) for e in range(self.out_ptr[s], self.out_ptr[s + 1]))
            best = max(best, forward, backward)
        return best

    def degree(self) -> int:
        """The most in- or out-edges of one slot (at least 1)."""
        return int(max(1, np.diff(self.in_ptr).max(initial=0), np.diff(self.out_ptr).max(initial=0)))

    def region(self, rows: int, chunk: int) -> int:
        """Floats of a block's chunk buffers: `chunk` steps of `rows` rows for every edge of its slot."""
        return chunk * rows * self.edge_widths()

    def shared_bytes(self, rows: int, stage: bool, chunk: int = 1) -> int:
        """wavefront_step's dynamic shared memory: its edges (WF_EDGE ints each), the block's own
        last two outputs (its WF_SELF_SMEM build), the chunk buffers and the staged weights."""
        widest = max(self.n_inputs, int(self.width.max()))
        return 4 * (WF_EDGE * self.degree() + 2 * rows * widest + self.region(rows, chunk)
                    + (self.weight_floats() if stage else 0))

    def items(self, steps: int) -> tuple[np.ndarray, int]:
        """The weight-gradient items (ITEM_INTS ints each, cuda/wavefront.cu's
        wavefront_weight_grad) and the number of time chunks: every WF_TILE x WF_TILE tile of
        every in-edge's block and of every bias, in every chunk."""
        chunks = max(1, min(steps, 8))
        rows = []
        for s in range(self.n_slots):
            w = int(self.width[s])
            for e in [*range(self.in_ptr[s], self.in_ptr[s + 1]), -1]:
                ws = 1 if e < 0 else (self.n_inputs if self.in_src[e] < 0 else int(self.width[self.in_src[e]]))
                for j0 in range(0, w, WF_TILE):
                    for q0 in range(0, ws, WF_TILE):
                        rows += [(e, j0, q0, c, s) for c in range(chunks)]
        return np.asarray(rows, np.int32).reshape(-1, ITEM_INTS), chunks


def refusal(net: Network) -> str | None:
    """Why the wavefront kernel cannot run `net`, or None: it runs recurrent networks of dense
    groups reading flat features, each group at most WF_COLS x THREADS neurons wide."""
    if len(net.input_shape) > 1:
        return "the wavefront kernel reads flat features at each step, not images"
    for g, kind in net.kinds.items():
        if g != INPUT and not isinstance(get_kind(kind), Dense):
            return f"group {g} is a {kind} group; the wavefront kernel runs dense groups only"
    widest = max((w for g, w in net.widths.items() if g != INPUT), default=0)
    if widest > WF_COLS * THREADS:
        return f"a group of {widest} neurons is wider than the wavefront kernel's {WF_COLS * THREADS}"
    return None


def plan(net: Network, offsets: dict) -> Plan:
    """The plan of `net` whose parameters lie at `offsets` ({("W", src, dst) or ("b", g): offset}
    in one flat buffer, as the recurrent CUDA engine keeps them)."""
    reason = refusal(net)
    if reason is not None:
        raise BackendError(reason)
    groups = [g for g in net.topological_order() if g not in (INPUT, OUTPUT)] + [OUTPUT]
    slot = {g: s for s, g in enumerate(groups)}
    width = np.asarray([net.widths[g] for g in groups], np.int32)
    col_off = np.concatenate([[0], np.cumsum(width)[:-1]]).astype(np.int32)
    # ready first: a cell's in-edges from the input and through a delay (their rows were there
    # before the step began) ahead of those from groups of its own step, so the block computes
    # their products while its own step's sources are still running; its out-edges through a
    # delay (done earlier in the backward sweep) ahead of those read in its own step
    ins = [sorted(((src, net.delay(src, g)) for src in net.inputs(g)), key=lambda e: e[0] != INPUT and e[1] == 0)
           for g in groups]
    outs = [sorted(((d, net.delay(g, d)) for d in net.outputs(g)), key=lambda e: e[1] == 0) for g in groups]
    n_params = sum(int(np.prod(w.shape)) for w in net.weights.values()) + sum(b.size for b in net.biases.values())
    return Plan(
        groups=groups, width=width, col_off=col_off,
        bias_off=np.asarray([offsets[("b", g)] for g in groups], np.int32),
        in_ptr=np.cumsum([0] + [len(e) for e in ins]).astype(np.int32),
        in_src=np.asarray([-1 if src == INPUT else slot[src] for edges in ins for src, _ in edges], np.int32),
        in_delay=np.asarray([k for edges in ins for _, k in edges], np.int32),
        in_woff=np.asarray([offsets[("W", src, g)] for g, edges in zip(groups, ins) for src, _ in edges], np.int32),
        out_ptr=np.cumsum([0] + [len(e) for e in outs]).astype(np.int32),
        out_dst=np.asarray([slot[d] for edges in outs for d, _ in edges], np.int32),
        out_delay=np.asarray([k for edges in outs for _, k in edges], np.int32),
        out_woff=np.asarray([offsets[("W", g, d)] for g, edges in zip(groups, outs) for d, _ in edges], np.int32),
        n_inputs=net.n_inputs, n_params=int(n_params))


def rows_for(p: Plan, batch: int, resident: int) -> int:
    """The fewest batch rows a block can own with every block of the grid (n_slots x
    ceil(batch / rows)) resident at once; BackendError if even p.max_rows() leaves too many."""
    room = resident // p.n_slots
    if room < 1:
        raise BackendError(f"the wavefront kernel needs a block per group at once: {p.n_slots} groups, and the "
                           f"GPU holds {resident} of its blocks")
    rows = -(-batch // room)
    if rows > p.max_rows():
        raise BackendError(f"a batch of {batch} over {p.n_slots} groups needs {rows} rows a block; the wavefront "
                           f"kernel's blocks hold at most {p.max_rows()} for these widths")
    return max(rows, 1)
