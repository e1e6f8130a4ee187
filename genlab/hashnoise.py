"""Counter-based noise: a value for each (seed, step, group, consumer, element), no RNG state.

Growth needs small random numbers (the symmetry-breaking term of a width-wise split, the weights
of a group initialised without function preservation) that another engine must reproduce bit
for bit, in any order and in parallel. Each number is a hash of its coordinates, computed in
uint32 arithmetic with Chris Wellons' "lowbias32" mixer; a CUDA kernel computes the same
expression. Uniform values carry 24 bits, so they are exact in float32.
"""

from __future__ import annotations

import numpy as np

_M1, _M2 = np.uint32(0x7FEB352D), np.uint32(0x846CA68B)


def lowbias32(x):
    """The lowbias32 integer mixer on uint32 arrays (wrapping multiplication)."""
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * _M1
        x = x ^ (x >> np.uint32(15))
        x = x * _M2
        x = x ^ (x >> np.uint32(16))
    return x


def hash_u32(seed: int, step: int, group: int, consumer: int, index) -> np.ndarray:
    """The uint32 hash of (seed, step, group, consumer, index), one per element index."""
    h = lowbias32(np.uint32(seed & 0xFFFFFFFF))
    for key in (step, group, consumer):
        h = lowbias32(h ^ np.uint32(key & 0xFFFFFFFF))
    return lowbias32(h ^ np.asarray(index, dtype=np.uint32))


def hash_uniform(seed: int, step: int, group: int, consumer: int, index) -> np.ndarray:
    """Uniform values in [-1, 1): the hash's top 24 bits * 2^-23 - 1."""
    h = hash_u32(seed, step, group, consumer, index)
    return (h >> np.uint32(8)).astype(np.float64) * (2.0 ** -23) - 1.0
