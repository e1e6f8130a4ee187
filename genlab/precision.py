"""The arithmetic of a dense group's matrix products: Trainer(precision=...).

Every product of a dense group (forward: inputs times weights; backward: dz times weights; the
weight gradient: dz times the inputs) rounds its two operands to the precision's format and sums
the exact products in float32. Everything else (biases, activations, ReLU, the loss, the
optimizer, the statistics for growth, conv and attention groups) stays float32.

    fp32     float32 multiply-adds (the default; the engines' reference arithmetic)
    3xtf32   tensor cores, each operand split into a TF32 big part and a TF32 small part, three
             products (big x big, big x small, small x big): float32's accuracy at tensor-core speed
    tf32     tensor cores on operands rounded to TF32 (10-bit mantissa, float32's range)
    bf16     tensor cores on operands rounded to bfloat16 (7-bit mantissa, float32's range)

The serial engine rounds the same operands the same way (`Precision.round`), so a CUDA run in any
precision is tested against the serial engine in that precision; `tolerance` is how far the two
may drift apart in one step (the order of the float32 sums differs, and with it, rarely, which
way an operand rounds).
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from .errors import ArgumentError, ArgumentTypeError


class Precision(Enum):
    FP32 = "fp32"
    TF32X3 = "3xtf32"
    TF32 = "tf32"
    BF16 = "bf16"

    @property
    def code(self) -> int:
        """The kernels' PRECISION (cuda/constants.cuh: PRECISION_FP32, ...)."""
        return _CODES[self]

    @property
    def rounds(self) -> bool:
        """Whether the products see their operands rounded (tf32, bf16; 3xtf32 keeps float32's)."""
        return self in (Precision.TF32, Precision.BF16)

    @property
    def mantissa_bits(self) -> int:
        """Explicit mantissa bits of an operand as the products see it (float32's 23 unless it rounds)."""
        return {Precision.TF32: 10, Precision.BF16: 7}.get(self, 23)

    @property
    def tolerance(self) -> float:
        """Relative error (||a - b|| / ||b||) within which one step of the CUDA engine matches the
        serial engine's in this precision (the GPU tests' bound)."""
        return {Precision.TF32: 1e-4, Precision.BF16: 1e-3}.get(self, 1e-5)

    def round(self, x: np.ndarray) -> np.ndarray:
        """x's values as the products see them, in x's dtype: TF32 rounds to nearest with ties away
        from zero (the hardware's cvt.rna.tf32.f32), bfloat16 to nearest with ties to even
        (cvt.rn.bf16x2.f32); fp32 and 3xtf32 leave float32 values as they are."""
        if not self.rounds:
            return x
        x = np.asarray(x)
        bits = np.array(x, dtype=np.float32).view(np.uint32)  # a copy, rounded in place
        drop = np.uint32(23 - self.mantissa_bits)
        if self is Precision.TF32:
            bits += np.uint32(1 << (int(drop) - 1))
        else:
            lowest = (bits >> drop) & np.uint32(1)
            bits += np.uint32((1 << (int(drop) - 1)) - 1)
            bits += lowest
        bits &= np.uint32((0xFFFFFFFF << int(drop)) & 0xFFFFFFFF)
        out = bits.view(np.float32)
        nan = np.isnan(x)
        if nan.any():  # a NaN whose payload sits in the dropped bits would round to infinity
            out[nan] = np.nan
        return out.astype(x.dtype, copy=False)


class Rounded:
    """A group kind as the serial engine runs it in `precision`: the operands of its products
    rounded first. Only kinds whose products run on the CUDA engine's dense task lists
    (`own_kernels` False) are wrapped (`rounded`); the others compute in float32 everywhere."""

    def __init__(self, kind, precision: Precision):
        self.kind, self.precision = kind, precision

    def __getattr__(self, name):
        return getattr(self.kind, name)

    def forward(self, spec, inputs, weights, bias):
        r = self.precision.round
        return self.kind.forward(spec, [r(h) for h in inputs], [r(w) for w in weights], bias)

    def edge_grads(self, spec, dz, h_src, weight):
        r = self.precision.round
        return self.kind.edge_grads(spec, r(dz), r(h_src), r(weight))


def rounded(kind, precision: Precision):
    """`kind` with its products' operands rounded to `precision` where the CUDA engine rounds them."""
    if not precision.rounds or kind.own_kernels:
        return kind
    return Rounded(kind, precision)


_CODES = {p: i for i, p in enumerate(Precision)}
PRECISIONS = tuple(p.value for p in Precision)
ALL = frozenset(Precision)
DEFAULT = Precision.FP32


def parse(value, name: str = "precision") -> Precision:
    """A Precision from its name ("fp32", "3xtf32", "tf32", "bf16") or itself."""
    if isinstance(value, Precision):
        return value
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be one of {', '.join(PRECISIONS)}, got {value!r}")
    try:
        return Precision(value.lower())
    except ValueError:
        raise ArgumentError(f"unknown {name} {value!r}; choose one of {', '.join(PRECISIONS)}") from None
