"""Training without waiting for every gradient: Hogwild! workers on shared parameters
(hogwild.py)."""

from .hogwild import Hogwild

__all__ = ["Hogwild"]
