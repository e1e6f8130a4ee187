"""How many blocks of a kernel a GPU holds at once: the occupancy calculator's rules, since PyCUDA
does not expose the driver's (cuOccupancyMaxActiveBlocksPerMultiprocessor).

A persistent kernel whose blocks wait for each other (the wavefront's) deadlocks if its grid is
larger than this, so the count rounds as the hardware allocates: registers a warp at a time in
units of 256 (a thread's count rounded up to a multiple of 8), shared memory in units of 128
bytes plus the driver's reserve a block, and at most so many blocks and threads an SM.
"""

from __future__ import annotations

from dataclasses import dataclass

WARP = 32
REGISTER_UNIT = 256  # registers are allocated a warp at a time, in units of this many
SHARED_UNIT = 128    # bytes of shared memory are allocated in units of this many (sm_80 and later)


@dataclass(frozen=True)
class Limits:
    """One SM's budget and the GPU's number of SMs."""

    registers: int = 65536
    shared: int = 233472
    threads: int = 2048
    blocks: int = 32
    reserved_shared: int = 1024  # the driver's a block
    sms: int = 132


def _ceil(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def blocks_per_sm(registers: int, static_shared: int, dynamic_shared: int, threads: int, limits: Limits) -> int:
    """Blocks of `threads` threads, each thread using `registers` registers and each block
    static + dynamic bytes of shared memory, that one SM holds at once (0: none fits)."""
    warps = -(-threads // WARP)
    per_warp = _ceil(max(registers, 1) * WARP, REGISTER_UNIT)
    by_registers = limits.registers // (per_warp * warps)
    shared = _ceil(static_shared + dynamic_shared + limits.reserved_shared, SHARED_UNIT)
    by_shared = limits.shared // shared
    by_threads = limits.threads // (warps * WARP)
    return max(0, min(by_registers, by_shared, by_threads, limits.blocks))


def limits_of(device, drv) -> Limits:
    """The Limits of a PyCUDA device (attributes an older driver lacks keep Limits' defaults)."""
    da, get, base = drv.device_attribute, device.get_attribute, Limits()

    def attribute(name: str, default: int) -> int:
        return get(getattr(da, name)) if hasattr(da, name) else default

    return Limits(registers=attribute("MAX_REGISTERS_PER_MULTIPROCESSOR", base.registers),
                  shared=attribute("MAX_SHARED_MEMORY_PER_MULTIPROCESSOR", base.shared),
                  threads=attribute("MAX_THREADS_PER_MULTIPROCESSOR", base.threads),
                  blocks=attribute("MAX_BLOCKS_PER_MULTIPROCESSOR", base.blocks),
                  reserved_shared=attribute("RESERVED_SHARED_MEMORY_PER_BLOCK", base.reserved_shared),
                  sms=attribute("MULTIPROCESSOR_COUNT", base.sms))


def resident(function, device, drv, threads: int, dynamic_shared: int = 0) -> int:
    """Blocks of the PyCUDA `function` the whole device holds at once."""
    fa = drv.function_attribute
    limits = limits_of(device, drv)
    per_sm = blocks_per_sm(function.get_attribute(fa.NUM_REGS), function.get_attribute(fa.SHARED_SIZE_BYTES),
                           dynamic_shared, threads, limits)
    return per_sm * limits.sms
