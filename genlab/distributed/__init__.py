"""Training over several GPUs (or CPU processes): data parallel and partitioned (genlab.partition).

    torchrun --nproc-per-node 2 -m genlab train --dataset digits --distributed data

or from Python, in each process torchrun starts:

    world = World.start()
    trainer = Trainer(net, distributed="data", world=world)

Collectives go through torch.distributed (NCCL between GPUs, gloo between CPU processes).
"""

from .modes import MODES, Alone, DataParallel, Mode
from .world import Buffer, World

__all__ = ["MODES", "Alone", "Buffer", "DataParallel", "Mode", "World"]
