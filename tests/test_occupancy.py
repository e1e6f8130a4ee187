"""The occupancy count a persistent kernel's grid is sized by (genlab/engines/cuda/occupancy.py),
against figures worked out from NVIDIA's occupancy calculator for an H100/H200 (sm_90: 65536
registers, 228 KiB of shared memory, 2048 threads and 32 blocks an SM)."""

import types

import pytest

from genlab.engines.cuda.occupancy import Limits, blocks_per_sm, limits_of, resident

H200 = Limits()


@pytest.mark.parametrize("registers, threads, expected", [
    (175, 256, 1),   # the wavefront kernel's build: 176 x 256 = 45056 registers a block
    (128, 256, 2),   # __launch_bounds__(256, 2)'s budget, exactly
    (84, 256, 2),    # 84 rounds up to 88 a thread: 22528 a block, 2 (counted unrounded: 3, a deadlock)
    (81, 256, 2),
    (80, 256, 3),
    (32, 256, 8),    # the thread limit, 2048 an SM
    (16, 32, 32),    # the block limit
    (255, 1024, 0),  # 255 -> 256 x 1024 registers do not fit an SM
])
def test_registers_are_counted_as_the_hardware_allocates_them(registers, threads, expected):
    assert blocks_per_sm(registers, 0, 0, threads, H200) == expected


@pytest.mark.parametrize("static, dynamic, expected", [
    (0, 0, 8),                   # not the bound: the threads are
    (8256, 100_000, 2),          # 109280 -> 109312 bytes with the reserve: two in 233472
    (0, 232448 - 1024, 1),       # the largest opt-in block
    (0, 115712, 2),              # 115712 + 1024 = 116736, exactly half of the SM
    (0, 115713, 1),              # a byte more rounds up to 116864: one
])
def test_shared_memory_is_counted_in_its_units_with_the_drivers_reserve(static, dynamic, expected):
    assert blocks_per_sm(32, static, dynamic, 256, H200) == expected


def test_the_device_count_reads_the_devices_limits():
    names = ["MAX_REGISTERS_PER_MULTIPROCESSOR", "MAX_SHARED_MEMORY_PER_MULTIPROCESSOR", "MAX_THREADS_PER_MULTIPROCESSOR",
             "MAX_BLOCKS_PER_MULTIPROCESSOR", "RESERVED_SHARED_MEMORY_PER_BLOCK", "MULTIPROCESSOR_COUNT"]
    values = dict(zip(names, [65536, 102400, 1536, 16, 1024, 84]))  # an sm_86-like part
    drv = types.SimpleNamespace(device_attribute=types.SimpleNamespace(**{n: n for n in names}),
                                function_attribute=types.SimpleNamespace(NUM_REGS="r", SHARED_SIZE_BYTES="s"))
    device = types.SimpleNamespace(get_attribute=values.__getitem__)
    function = types.SimpleNamespace(get_attribute={"r": 64, "s": 4096}.__getitem__)
    assert limits_of(device, drv) == Limits(65536, 102400, 1536, 16, 1024, 84)
    # registers: 64 x 256 = 16384 a block, 4; shared: 4096 + 20000 + 1024 -> 25216, 4; threads: 6
    assert resident(function, device, drv, 256, 20000) == 4 * 84
    assert resident(function, device, drv, 256, 30000) == 2 * 84  # 35200 -> 3 blocks would need 105600 bytes
    older = types.SimpleNamespace(device_attribute=types.SimpleNamespace(**{n: n for n in names[:3] + names[5:]}),
                                  function_attribute=drv.function_attribute)
    assert limits_of(device, older).blocks == Limits().blocks  # an attribute the driver lacks keeps the default
