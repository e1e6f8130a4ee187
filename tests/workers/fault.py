"""One process of a two-process run that goes wrong (tests/test_distributed.py): both train a
small network in MODE (data or partitioned); process 1, at its 20th step, dies (FAULT kill) or
hangs (FAULT hang). Process 0 must stop with genlab's PeerError, which it prints with how long it
took, and exit 1.

    RANK=r WORLD_SIZE=2 MASTER_ADDR=... MASTER_PORT=... python tests/workers/fault.py MODE FAULT
"""

import os
import signal
import sys
import time

import numpy as np

import genlab
from genlab.distributed import World


def main(mode: str, fault: str) -> int:
    world = World.start()
    trainer = genlab.Trainer(genlab.Network.mlp([16, 12, 8, 4], seed=1), backend="serial", batch_size=24, seed=5,
                             distributed=mode, world=world)
    x = np.random.default_rng(7).normal(size=(24, 16)).astype(np.float32)
    y = np.arange(24) % 4
    start = time.perf_counter()
    try:
        for step in range(100_000):
            if world.rank == 1 and step == 20:
                if fault == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(3600)  # hang
            trainer.step(x, y)
    except genlab.PeerError as e:
        print(f"PeerError after {time.perf_counter() - start:.1f} s at step {trainer.step_count}: {e}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
