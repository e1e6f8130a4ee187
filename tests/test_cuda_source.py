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


def _parameter_codes(src: str, name: str) -> str:
    """A kernel's parameter list as PyCUDA argument codes: P pointer, i int, I unsigned int,
    f float, d double."""
    match = re.search(rf'^extern "C" __global__ void (?:__launch_bounds__\([^)]*\) )?{name}\(([^)]*)\)', src, flags=re.M)
    params = match.group(1).strip()
    macro = re.search(rf"^#define {params}\b((?:.*\\\n)*.*)$", src, flags=re.M) if params.isidentifier() else None
    if macro:  # wide.cu's kernels share their lists through macros
        params = macro.group(1).replace("\\\n", " ")
    codes = ""
    for param in params.split(","):
        words = param.replace("__restrict__", "").replace("const", "").split()
        if "*" in param:
            codes += "P"
        else:
            codes += {"int": "i", "unsigned": "I", "float": "f", "double": "d"}[words[0]]
    return codes


def test_every_kernel_signature_matches_its_source():
    """The argument codes each kernel is prepared with (a mismatch packs the wrong bytes or fails
    only on a GPU) agree with its parameter list in cuda/*.cu."""
    src = source()
    for name, codes in _KERNELS.items():
        assert _parameter_codes(src, name) == codes, name
