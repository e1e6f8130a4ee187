"""The benchmark's workloads, its implementations and the cost of a step."""

from __future__ import annotations

import numpy as np

from ..engines.cuda.executors import EXECUTORS
from ..network import Network

WORKLOADS = {  # name: (description, network builder, batch)
    "W1": ("wide: L=16 W=128 n=16 k=4", lambda: Network.random_dag(16, 128, 16, 4, seed=0), 256),
    "W2": ("deep and narrow: L=64 W=32 n=8 k=4", lambda: Network.random_dag(64, 32, 8, 4, seed=0), 256),
    "W3": ("middle: L=8 W=64 n=64 k=4", lambda: Network.random_dag(8, 64, 64, 4, seed=0), 256),
    "W4": ("traditional: a chain of 9 groups of 4096", lambda: Network.mlp([64] + [4096] * 9 + [10], seed=0), 1024),
}

GENLAB = tuple(f"genlab_{name}" for name in EXECUTORS)  # genlab_level, genlab_dataflow, ...
AUTO = "genlab_auto"  # executor="auto": the engine's own choice (engines/cuda/choice.py)

IMPLEMENTATIONS = (*GENLAB, AUTO, "serial", "torch_eager_group", "torch_level", "torch_level_graph", "torch_compile")


def batch_of(net: Network, batch: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(batch, net.n_inputs)).astype(np.float32), rng.integers(0, net.n_outputs, batch))


def step_cost(net: Network, batch: int) -> tuple[float, float]:
    """(FLOPs, fewest bytes) of one training step: 2 FLOPs per weight and row forward, 4 backward;
    each activation and its gradient written and read once, each parameter, its gradient and
    Adam's two moments read and written once."""
    weights = sum(w.size for w in net.weights.values())
    columns = sum(net.widths.values())
    return 6.0 * batch * weights, 4.0 * (4 * batch * columns + 7 * net.n_params)
