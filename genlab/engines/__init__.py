"""Engines execute a Network behind one interface, genlab.engines.Engine (engines/base.py).

The serial engine (NumPy) is the reference; the CUDA engine (engines/cuda/) runs genlab's
kernels (cuda/*.cu). genlab.backends picks one.
"""

from .base import STATISTICS, Engine, Stepwise
from .serial import SerialEngine, softmax_cross_entropy

__all__ = ["STATISTICS", "Engine", "SerialEngine", "Stepwise", "softmax_cross_entropy"]
