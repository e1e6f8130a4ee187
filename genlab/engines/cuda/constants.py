"""The numbers genlab's Python and its CUDA kernels must agree on, defined once, here.

cuda/constants.cuh is generated from this module (python -m genlab.engines.cuda.constants) and
committed, so that nvcc compiles cuda/*.cu on its own; a test fails if the two differ.
"""

from __future__ import annotations

import sys
from enum import IntEnum
from pathlib import Path

from ...guard import GRAD_LIMIT
from ...kinds import KINDS
from ...operations import OP_INTS, Criterion, FoldSource, OpCode
from ...optim import OptimizerCode
from ...precision import Precision

THREADS = 256  # threads of every block
TILE = 32  # the level kernels' output tiles are TILE x TILE (forward.cu, backward.cu)
MT, WT = 64, 128  # wide.cu's tiles: MT x MT for groups of MID to WIDE - 1 neurons, WT x WT from WIDE
# wide.cu's split-K (executors/split.py): an MT-tier tile's edges are cut into parts of about
# SPLIT_TILES x MT values of k, at most SPLIT_PARTS of them (a task a part: topology.cu)
SPLIT_TILES, SPLIT_PARTS = 4, 4
CH = 16  # neurons per work item of the row executor (rows.cu)
EW = 4  # out-edges of the input group per weight item of the row executor
CHUNK = THREADS * 16  # parameters per update item of the persistent executors (optim.cu)
CLUSTER = 8  # blocks of the cluster executor's one launch (a thread-block cluster: at most 8 portably)
CLUSTER_THREADS = 512  # threads of each of its blocks: a warp works on 32 batch rows
CLUSTER_WARP_FLOATS = 3072  # floats of shared memory each of its warps stages inputs in
CLUSTER_CHUNK = 4  # neurons of a group a warp of the cluster executor computes
CLUSTER_RECORD = 64  # ints of one of its work records (18 edges inline)


class Phase(IntEnum):
    """What the cluster executor's blocks do between two of its barriers (cuda/cluster.cu)."""

    FORWARD = 0    # the forward tasks of one level
    LOSS = 1       # softmax cross-entropy, the output group's dz
    BACKWARD = 2   # the backward tasks of one hidden level
    GRADIENTS = 3  # every weight task, then every bias task
    UPDATE = 4     # the optimizer over every parameter, guarded
# each slot's geometry for the kernels of other kinds (conv.cu, attention.cu): GEO_INTS ints a slot
GEO_FIELDS = ("KIND", "C", "H", "W", "K", "STRIDE", "HEADS", "TOKENS", "POSITIONS")
ATT_SHARED = 8192  # floats of shared memory an attention block holds (10 T d + 2 heads T^2 must fit)
# floats of dynamic shared memory an attention block may take to stage its weights (or sum its
# gradients) beside that: 46 KiB, with the kernels' static shared memory under the 48 KiB a block
# gets without opting in
ATT_STAGED = 11776
CONV_CH = 8  # output channels a conv thread accumulates at once (registers), conv.cu
CONV_POS = 4  # (sample, position) pairs a conv forward thread computes with the same weights in registers
CONV_WG = 8  # output channels of a conv weight-gradient warp's tile (times K x K weights; a quarter for K = 5)
CONV_SAMPLES = 16  # samples a conv weight-gradient block sums (its partial sums are added atomically)
CONV_SHARED = 8192  # floats of shared memory the engine lets conv_forward_staged use for a group's weights and
# one sample's input channels with their halo, and conv_backward_staged for a sample's dL/dh of the group, a
# consumer's weights and dz channels (kinds/conv/cuda.py checks; conv.cu's CONV_BUFFERED holds two samples)
WF_ROWS, WF_COLS = 8, 4  # the wavefront kernel's accumulators a thread: rows x column strides (wavefront.cu)
WF_TILE = 32  # its weight-gradient kernel's output tiles (WF_TILE x WF_TILE, split over time chunks)
WF_EDGE = 6  # ints of shared memory per edge of a wavefront block (other end, delay, weights, width, chunk's steps)
# its scalars: loss (double), correct (int at byte 8), sum of squared gradients (double at byte 16),
# and the int at byte WF_GAVE_UP that wavefront_step's blocks set where they gave up waiting for each other
WF_SCALAR_BYTES, WF_GAVE_UP = 48, 32
DNI_ROWS = 32  # batch rows whose share of a synthetic-gradient module's gradient one dni_grads thread sums (dni.cu)

# Python's alone (passed to the kernels as arguments where they need them)
MID, WIDE = 48, 256  # the pull level executors' tiers of widths (executors/level.py)
SPLIT = 8  # in-edges per forward task of the output group (split-K)
LAG = 2  # the row executor takes a level's weight items after the backward items LAG levels below

SHARED = {
    "THREADS": THREADS, "TILE": TILE, "HALF": TILE // 2, "MT": MT, "WT": WT,
    "SPLIT_TILES": SPLIT_TILES, "SPLIT_PARTS": SPLIT_PARTS, "CH": CH, "EW": EW, "CHUNK": CHUNK,
    "CLUSTER": CLUSTER, "CLUSTER_THREADS": CLUSTER_THREADS,
    "CLUSTER_WARP_FLOATS": CLUSTER_WARP_FLOATS, "CLUSTER_CHUNK": CLUSTER_CHUNK,
    "CLUSTER_RECORD": CLUSTER_RECORD,
    **{f"PHASE_{p.name}": int(p) for p in Phase},
    "OP_INTS": OP_INTS, "GEO_INTS": len(GEO_FIELDS), "ATT_SHARED": ATT_SHARED,
    "ATT_STAGED": ATT_STAGED,
    "WF_ROWS": WF_ROWS, "WF_COLS": WF_COLS, "WF_TILE": WF_TILE, "WF_EDGE": WF_EDGE, "WF_SCALAR_BYTES": WF_SCALAR_BYTES,
    "WF_GAVE_UP": WF_GAVE_UP, "DNI_ROWS": DNI_ROWS,
    "CONV_CH": CONV_CH, "CONV_POS": CONV_POS, "CONV_WG": CONV_WG, "CONV_SAMPLES": CONV_SAMPLES, "CONV_SHARED": CONV_SHARED,
    **{f"GEO_{name}": i for i, name in enumerate(GEO_FIELDS)},
    **{f"KIND_{name.upper()}": kind.code for name, kind in KINDS.items()}, "GRAD_LIMIT_SQ": f"{GRAD_LIMIT * GRAD_LIMIT!r}",
    **{f"OP_{code.name}": int(code) for code in OpCode},
    **{f"CRITERION_{c.name}": int(c) for c in Criterion},
    **{f"FOLD_{f.name}": int(f) for f in FoldSource},
    **{f"OPTIMIZER_{o.name}": int(o) for o in OptimizerCode},
    **{f"PRECISION_{p.name}": p.code for p in Precision},
}


def header() -> str:
    """The text of cuda/constants.cuh."""
    lines = ["// constants.cuh: GENERATED from genlab/engines/cuda/constants.py (and the enums it names) by",
             "// `python -m genlab.engines.cuda.constants`; do not edit (a test compares the two).",
             "#pragma once", ""]
    lines += [f"#define {name} {value}" for name, value in SHARED.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write cuda/constants.cuh of a checkout (or the path given)."""
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else Path(__file__).resolve().parents[3] / "cuda" / "constants.cuh"
    path.write_text(header())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
