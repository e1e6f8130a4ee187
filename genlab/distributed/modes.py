"""How a trainer spreads its steps over the processes of a World: `MODES` names the modes for
Trainer(distributed=...) and the command line (mode.py: the interface, one process and data
parallel; partitioned.py: the network cut across the processes)."""

from __future__ import annotations

from .mode import Alone, DataParallel, Mode
from .partitioned import Partitioned

# Trainer(distributed=name): how the processes share the work
MODES: dict[str, type[Mode]] = {"data": DataParallel, "partitioned": Partitioned}

__all__ = ["MODES", "Alone", "DataParallel", "Mode", "Partitioned"]
