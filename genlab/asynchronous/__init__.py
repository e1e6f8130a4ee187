"""Training without waiting for every gradient: Hogwild! workers on shared parameters
(hogwild.py) and decoupled parts with synthetic gradients (dni.py)."""

from .dni import DNI
from .hogwild import Hogwild

__all__ = ["DNI", "Hogwild"]
