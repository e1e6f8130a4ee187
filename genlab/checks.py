"""Argument checks shared by the public API: each returns the normalised value or raises a
genlab error that names the argument, what it got and what it needs."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import ArgumentError, ArgumentTypeError, GraphError

FLOAT_DTYPES = ("float32", "float64")


def integer(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """An int (Python or NumPy, not bool) within [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ArgumentTypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if low is not None and value < low:
        raise ArgumentError(f"{name} must be at least {low}, got {value}")
    if high is not None and value > high:
        raise ArgumentError(f"{name} must be at most {high}, got {value}")
    return value


def real(value, name: str, low: float | None = None, high: float | None = None,
         low_open: bool = False) -> float:
    """A finite real number (int or float, not bool) within [low, high] ((low, high] if low_open)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise ArgumentTypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ArgumentError(f"{name} must be finite, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise ArgumentError(f"{name} must be {'above' if low_open else 'at least'} {low}, got {value}")
    if high is not None and value > high:
        raise ArgumentError(f"{name} must be at most {high}, got {value}")
    return value


def boolean(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def float_dtype(value, name: str = "dtype") -> np.dtype:
    """float32 or float64, from a name, a NumPy type or a dtype."""
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise ArgumentTypeError(f"{name} must be float32 or float64, got {value!r}") from None
    if dtype.name not in FLOAT_DTYPES:
        raise ArgumentError(f"{name} must be float32 or float64, got {dtype.name}")
    return dtype


def choice(value, name: str, options) -> str:
    if not isinstance(value, str) or value not in options:
        raise ArgumentError(f"unknown {name} {value!r}; choose one of {', '.join(map(str, options))}")
    return value


def group_id(value, name: str = "group") -> int:
    """A group id: an int (NumPy ints are normalised), not a bool."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ArgumentTypeError(f"{name}: a group id is an int, got {value!r} ({type(value).__name__})")
    return int(value)


MAX_WIDTH = 2**24  # neurons in one group: beyond it, no engine could hold a single weight block


def width(width, what: str) -> None:
    if isinstance(width, (bool, np.bool_)) or not isinstance(width, (int, np.integer)):
        raise ArgumentTypeError(f"{what} needs a positive integer width, got {width!r} ({type(width).__name__})")
    if width <= 0:
        raise GraphError(f"{what} needs a positive integer width, got {width!r}")
    if width > MAX_WIDTH:
        raise GraphError(f"{what} of {width} neurons is wider than genlab's limit of {MAX_WIDTH}")


def id_list(ids, what: str) -> list:
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise ArgumentTypeError(f"{what} must be a list of group ids, got {ids!r}")
    return list(ids)


def parameter(value, what: str, dtype=None) -> np.ndarray:
    """A parameter block given by the user: real, finite numbers (that `dtype`, the network's
    float type, can hold, where given)."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise ArgumentTypeError(f"{what} is not an array of numbers ({e})") from None
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise ArgumentTypeError(f"{what} must hold real numbers, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ArgumentError(f"{what} holds non-finite values (NaN or infinity)")
    beyond = beyond_range(array, dtype) if dtype is not None else None
    if beyond is not None:
        index = tuple(int(i) for i in np.argwhere(beyond)[0])
        raise ArgumentError(f"{what} holds {array[index]:.3g} at index {list(index)}, beyond what "
                            f"{np.dtype(dtype).name} holds (+-{np.finfo(dtype).max:.3g})")
    return array


def beyond_range(array: np.ndarray, dtype):
    """A mask of the entries of `array` that `dtype` (a float type) cannot hold, or None if none
    (at once, without a pass over the array, where its own type holds nothing larger)."""
    if array.dtype.kind != "f" or np.finfo(array.dtype).max <= np.finfo(dtype).max:
        return None
    mask = np.abs(array) > np.finfo(dtype).max
    return mask if mask.any() else None


def finite_parameters(net) -> None:
    """ArgumentError naming the first parameter block of `net` that holds a non-finite value or
    is not an array of real numbers (blocks replaced by hand are not checked on the way in)."""
    for what, blocks in (("weight", net.weights), ("bias", net.biases)):
        for key, block in blocks.items():
            array = np.asarray(block)
            if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
                raise ArgumentError(f"the {what} block {key} holds values that are not finite real numbers")
