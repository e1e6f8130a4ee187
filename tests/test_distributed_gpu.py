"""Training over two GPUs through NCCL: data-parallel replicas of the CUDA engine stay
bit-identical through growth and match one GPU; the partitioned engine matches the serial engine."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).parent.parent
WORKER = Path(__file__).parent / "workers" / "train.py"


@pytest.fixture(scope="module", autouse=True)
def nccl():
    torch = pytest.importorskip("torch")
    if not torch.distributed.is_nccl_available():
        pytest.skip("torch has no NCCL")


@pytest.fixture
def two_gpus():
    import pycuda.driver as drv

    drv.init()
    if drv.Device.count() < 2:
        pytest.skip("needs two GPUs")


def run(mode: str, backend: str, out: Path, kind: str, executor: str | None = None, n: int = 2) -> list:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if executor:
        env["GENLAB_TEST_EXECUTOR"] = executor
    prefix = [] if mode == "alone" else ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}"]
    done = subprocess.run([sys.executable, *prefix, str(WORKER), mode, backend, str(out), kind],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    n = 1 if mode == "alone" else n
    return [(np.load(out / f"rank{r}.npz"), json.loads((out / f"rank{r}.json").read_text())) for r in range(n)]


@pytest.mark.parametrize("kind, executor", [("chain", None), ("random", None), ("random", "dataflow_rows"),
                                            ("chain", "dataflow")])
def test_data_parallel_cuda_replicas_are_bit_identical_and_match_one_gpu(kind, executor, tmp_path, two_gpus):
    (a, summary), (b, _) = run("data", "cuda", tmp_path / "data", kind, executor)
    (one, one_summary), = run("alone", "cuda", tmp_path / "one", kind, executor)
    assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
    assert summary["world"] == 2 and summary["events"] == one_summary["events"] >= 2
    assert sorted(a.files) == sorted(one.files)
    assert max(float(np.abs(a[k] - one[k]).max()) for k in a.files) < 1e-4
    assert np.allclose(summary["losses"], one_summary["losses"], atol=1e-4)


@pytest.mark.parametrize("executor", ["level", "dataflow_rows", "dataflow"])
def test_a_data_parallel_step_of_one_process_is_the_engine_step(executor, tmp_path):
    """The replica path (gradients, sums, update as two graphs) with one process: the plain step's
    result, growth included."""
    (a, summary), = run("data", "cuda", tmp_path / "data", "random", executor, n=1)
    (one, one_summary), = run("alone", "cuda", tmp_path / "one", "random", executor)
    assert summary["events"] == one_summary["events"] >= 2 and sorted(a.files) == sorted(one.files)
    assert max(float(np.abs(a[k] - one[k]).max()) for k in a.files) < 1e-5


def test_partitioned_over_nccl_matches_the_serial_engine(tmp_path, two_gpus):
    (a, summary), (b, _) = run("partitioned", "serial", tmp_path / "parts", "random")
    (one, one_summary), = run("alone", "serial", tmp_path / "one", "random")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)
    assert summary["events"] == one_summary["events"] >= 2
    assert max(float(np.abs(a[k] - one[k]).max()) for k in a.files) < 1e-4
