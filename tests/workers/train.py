"""A training run in each process torchrun starts (tests/test_distributed.py): trains a small
network with growth in the given mode and writes what it ended with to OUT/rank<r>.npz.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/workers/train.py MODE BACKEND OUT [KIND]

GENLAB_TEST_EXECUTOR names the CUDA engine's executor (default: its default).
"""

import json
import os
import sys
from pathlib import Path

import numpy as np

import genlab
from genlab.distributed import World


def network(kind: str) -> genlab.Network:
    rng = np.random.default_rng(3)
    if kind == "random":  # a random DAG of mixed widths, skip edges included
        return genlab.Network.random_dag(4, 3, width=(3, 9), fan_in=(1, 3), seed=int(rng.integers(1000)),
                                         n_inputs=16, n_outputs=4)
    if kind == "recurrent":
        return genlab.Network.elman(6, [8], 3, seed=1)
    net = genlab.Network(16, 4, seed=1)
    a = net.add_group(12, [genlab.INPUT])
    b = net.add_group(6, [a])
    net.connect(b, genlab.OUTPUT)
    net.connect(a, genlab.OUTPUT)
    return net


def data(kind: str, n: int = 96):
    rng = np.random.default_rng(7)
    if kind == "recurrent":
        x = rng.normal(size=(n, 5, 6)).astype(np.float32)
        return x, ((x.sum(axis=(1, 2)) > 0).astype(np.int64) + (x[:, -1, 0] > 0)).astype(np.int64)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    return x, (np.argmax(x[:, :4] + x[:, 4:8], axis=1)).astype(np.int64)


def main(mode: str, backend: str, out: str, kind: str = "chain") -> None:
    world = World.start() if mode != "alone" else None
    policy = genlab.GrowthPolicy(threshold=1e-9, every=4, cooldown=0, max_groups=24, mode="alternate",
                                 prune=True)
    trainer = genlab.Trainer(network(kind), backend=backend, batch_size=24, seed=5, growth=policy,
                             distributed=None if world is None else mode, world=world,
                             executor=os.environ.get("GENLAB_TEST_EXECUTOR"))
    x, y = data(kind)
    trainer.fit(x, y, epochs=3, progress=False)
    net = trainer.net
    arrays = {f"W{s}_{d}": w for (s, d), w in net.weights.items()}
    arrays.update({f"b{g}": b for g, b in net.biases.items()})
    Path(out).mkdir(parents=True, exist_ok=True)
    rank = 0 if world is None else world.rank
    np.savez(Path(out) / f"rank{rank}.npz", **arrays)
    summary = {"events": len(trainer.history.events), "groups": len(net.groups), "steps": trainer.step_count,
               "losses": [s["loss"] for s in trainer.history.steps], "world": 1 if world is None else world.size,
               "grad_std": {str(g): v for g, v in trainer.history.grad_std[-1].items()},
               "accuracy": trainer.evaluate(x, y)["accuracy"],
               "nvls": os.environ.get("NCCL_NVLS_ENABLE"), "multicast": os.environ.get("TORCH_SYMM_MEM_DISABLE_MULTICAST"),
               "repartitions": getattr(trainer.engine, "repartitions", None),
               "imbalance": trainer.engine.partition.imbalance if hasattr(trainer.engine, "partition") else None,
               "parts": sorted(set(trainer.engine.partition.parts.values())) if hasattr(trainer.engine, "partition")
               else None}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(summary))
    if world is not None:
        world.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
