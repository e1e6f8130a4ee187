"""Training without waiting for every gradient: Hogwild! workers on shared parameters
(hogwild.py; a team of them: team.py, processes.py, streams.py) and decoupled parts with
synthetic gradients (dni.py; the serial engine cut into parts: decoupled.py, pipeline.py)."""

from .dni import DNI
from .hogwild import Hogwild

__all__ = ["DNI", "Hogwild"]
