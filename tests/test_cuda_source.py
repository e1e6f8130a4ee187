"""The CUDA sources as genlab's loader sees them; runs without a GPU (nvcc only)."""

import re
import shutil
import subprocess

import pytest

from genlab.engines.cuda import _KERNELS, source


def test_loader_source_is_one_unit_without_includes():
    src = source()
    assert not re.search(r"^\s*#\s*include", src, flags=re.M)
    assert '#line 1 "forward.cu"' in src and '#line 1 "genlab.cuh"' in src
    for name in _KERNELS:
        assert re.search(rf'^extern "C" __global__ void (__launch_bounds__\([^)]*\) )?{name}\(', src, flags=re.M), name


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_loader_source_compiles_and_errors_name_the_file(tmp_path):
    good = tmp_path / "all.cu"
    good.write_text(source())
    subprocess.run(["nvcc", "-arch=sm_90", "-cubin", "-o", str(tmp_path / "all.cubin"), str(good)], check=True)
    bad = tmp_path / "bad.cu"
    bad.write_text(source().replace("fmaxf(z, 0.f)", "fmaxf(z, 0.f) +"))
    result = subprocess.run(["nvcc", "-arch=sm_90", "-cubin", "-o", str(tmp_path / "bad.cubin"), str(bad)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "forward.cu(" in result.stderr
