"""Training over several processes (genlab.distributed), on CPU processes with the gloo backend:
data-parallel replicas stay bit-identical through growth and match one process; the partitioned
engine matches the serial engine under any partition; the command line runs under torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import genlab
from genlab.distributed import World, stages
from genlab.distributed.modes import DataParallel
from genlab.errors import ArgumentError, BackendError, DataError
from genlab.partition import given, plan

torch = pytest.importorskip("torch")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

WORKERS = Path(__file__).parent / "workers"
ROOT = Path(__file__).parent.parent


def torchrun(args: list[str], n: int = 2, timeout: int = 240, **env_vars) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node n args` on CPU processes; fails the test on a non-zero exit."""
    env = {**os.environ, "GENLAB_BACKEND": "serial", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **env_vars}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
                           *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def run_worker(mode: str, kind: str, out: Path, n: int = 2, **env_vars) -> list:
    """The parameters (npz) and summaries (json) each process of a run of workers/train.py ended with."""
    if mode == "alone":
        done = subprocess.run([sys.executable, str(WORKERS / "train.py"), "alone", "serial", str(out), kind],
                              capture_output=True, text=True, timeout=240, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr[-3000:]
        n = 1
    else:
        torchrun([str(WORKERS / "train.py"), mode, "serial", str(out), kind], n, **env_vars)
    return [(np.load(out / f"rank{r}.npz"), json.loads((out / f"rank{r}.json").read_text())) for r in range(n)]


def _same(a, b) -> bool:
    return sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)


def _close(a, b, tol: float) -> float:
    assert sorted(a.files) == sorted(b.files), "different topologies"
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a.files)
    assert worst < tol, worst
    return worst


@pytest.mark.parametrize("kind", ["chain", "random", "recurrent"])
def test_data_parallel_replicas_are_bit_identical_through_growth_and_match_one_process(kind, tmp_path):
    ranks = run_worker("data", kind, tmp_path / "data")
    (alone, alone_summary), = run_worker("alone", kind, tmp_path / "alone")
    (first, summary), (second, summary2) = ranks
    assert _same(first, second), "the replicas' parameters differ"
    assert summary["nvls"] == "0" and summary["multicast"] == "1"  # NVLink multicast stays off
    assert summary["events"] >= 2 and summary["events"] == summary2["events"] == alone_summary["events"]
    assert summary["groups"] == alone_summary["groups"] > len(genlab.Network(4, 2).groups)
    _close(first, alone, 1e-5)  # the step over both halves is the step over the whole batch
    assert np.allclose(summary["losses"], alone_summary["losses"], atol=1e-5)
    assert summary["grad_std"].keys() == alone_summary["grad_std"].keys()
    assert np.allclose(list(summary["grad_std"].values()), list(alone_summary["grad_std"].values()), rtol=1e-4)


def test_gradient_buckets_of_any_size_give_the_same_replicas(tmp_path):
    """Buckets of ~100 bytes (a sum started for nearly every group during the backward, all in
    flight together) and the default (one sum after the backward) end with the same bits."""
    fine = run_worker("data", "random", tmp_path / "fine", GENLAB_BUCKET_MB="0.0001")
    whole = run_worker("data", "random", tmp_path / "whole")
    assert _same(fine[0][0], fine[1][0]) and _same(fine[0][0], whole[0][0])
    assert fine[0][1]["losses"] == whole[0][1]["losses"] and fine[0][1]["events"] >= 2
    # three processes: gloo's ring adds in an order that follows a bucket's length, so only the
    # replicas of one run are bit-identical; they still match the run of one bucket closely
    three = run_worker("data", "random", tmp_path / "three", n=3, GENLAB_BUCKET_MB="0.0001")
    assert all(_same(three[0][0], other) for other, _ in three[1:])
    _close(three[0][0], whole[0][0], 1e-5)


@pytest.mark.parametrize("kind", ["chain", "random"])
def test_partitioned_training_with_growth_matches_one_process(kind, tmp_path):
    (first, summary), (second, _) = run_worker("partitioned", kind, tmp_path / "parts")
    (alone, alone_summary), = run_worker("alone", kind, tmp_path / "alone")
    assert _same(first, second), "the processes gathered different parameters"
    assert summary["events"] == alone_summary["events"] >= 2
    assert summary["repartitions"] >= 1 and summary["parts"] == [0, 1]  # growth drifted the balance: planned again
    _close(first, alone, 1e-5)
    assert np.allclose(summary["losses"], alone_summary["losses"], atol=1e-5)


@pytest.mark.parametrize("n, micro", [(2, 1), (3, 4)])
def test_partitioned_engine_exchanges_both_ways_under_any_partition(n, micro, tmp_path):
    """Groups alternate between the processes, so every level sends h (and dL/dh) both ways."""
    torchrun([str(WORKERS / "exchange.py"), str(tmp_path), str(micro)], n)
    for r in range(n):
        worst = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert worst["cut_edges"] > 5
        assert worst["logits"] < 1e-5 and worst["loss"] < 1e-6 and worst["params"] < 1e-6 and worst["grad_std"] < 1e-6


def test_torchrun_runs_the_command_line_in_data_parallel(tmp_path):
    done = torchrun(["-m", "genlab", "train", "--dataset", "iris", "--from", "single", "--grow", "--epochs", "4",
                     "--distributed", "data", "--json", "--quiet", "--save", str(tmp_path / "run.ckpt")])
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, done.stdout  # the first process prints, the others do not
    report = json.loads(lines[0])
    assert report["distributed"] == "data" and report["processes"] == 2 and report["process_group"] == "gloo"
    assert report["groups_end"] >= report["groups_start"] and report["test_accuracy"] > 0.5
    trainer = genlab.Trainer.load(tmp_path / "run.ckpt", backend="serial")  # one checkpoint, from the first process
    assert len(trainer.net.groups) == report["groups_end"]


def test_a_partitioned_command_line_run_saves_a_checkpoint_one_process_resumes(tmp_path):
    done = torchrun(["-m", "genlab", "train", "--dataset", "iris", "--hidden", "16,8,8", "--epochs", "3",
                     "--distributed", "partitioned", "--json", "--quiet", "--save", str(tmp_path / "run.ckpt")])
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == "partitioned" and report["saved"] == str(tmp_path / "run.ckpt")
    trainer = genlab.Trainer.load(tmp_path / "run.ckpt", backend="serial")
    data = genlab.datasets.load("iris", seed=0)
    assert trainer.evaluate(*data.test)["accuracy"] == pytest.approx(report["test_accuracy"])
    assert trainer.step_count == report["steps"]
    trainer.fit(*data.train, epochs=1, progress=False)  # its optimizer state came with it


@pytest.mark.parametrize("mode", ["data", "partitioned"])
def test_a_one_process_checkpoint_resumes_over_two_and_back(mode, tmp_path):
    """Saved by one process, continued by two (each loads the same file), saved again, and
    continued by one: the same steps, the state carried, close to one process all along."""
    from genlab.cli import main

    first, two, one = (tmp_path / n for n in ("first.ckpt", "two.ckpt", "one.ckpt"))
    assert main(["train", "--dataset", "iris", "--hidden", "16,8", "--epochs", "2", "--quiet", "--save", str(first),
                 "--backend", "serial"]) == 0
    torchrun(["-m", "genlab", "train", "--resume", str(first), "--epochs", "2", "--distributed", mode, "--quiet",
              "--json", "--save", str(two)])
    assert main(["train", "--resume", str(first), "--epochs", "2", "--quiet", "--save", str(one),
                 "--backend", "serial"]) == 0
    a, b = (genlab.Trainer.load(p, backend="serial") for p in (two, one))
    assert a.step_count == b.step_count > genlab.Trainer.load(first, backend="serial").step_count
    for key, w in b.net.weights.items():
        np.testing.assert_allclose(a.net.weights[key], w, rtol=1e-4, atol=1e-5)
    assert main(["train", "--resume", str(two), "--epochs", "1", "--quiet", "--backend", "serial"]) == 0


def test_a_single_process_world_trains_as_the_serial_engine():
    """A partitioned engine of one process: every level its own, nothing sent."""
    from genlab.distributed.partitioned import PartitionedEngine
    from genlab.engines.serial import SerialEngine
    from genlab.optim import make_optimizer

    net = genlab.Network.random_dag(3, 3, width=(2, 6), fan_in=(1, 3), seed=5, n_inputs=7, n_outputs=3)
    engine = PartitionedEngine(net.copy(), make_optimizer("adam", lr=0.01), World.alone(), dtype="float64",
                               micro_batches=3)
    serial = SerialEngine(net.copy(), make_optimizer("adam", lr=0.01), dtype="float64")
    rng = np.random.default_rng(0)
    for _ in range(4):
        x, y = rng.normal(size=(10, 7)), rng.integers(0, 3, 10)
        assert engine.step(x, y)[0] == pytest.approx(serial.step(x, y)[0], abs=1e-12)
    p, q = engine.params, serial.params
    assert max(np.abs(p[k] - q[k]).max() for k in q) < 1e-12
    for name in ("grad_std", "taylor", "weight_grad_norm"):
        assert engine.stats[name] == pytest.approx(serial.stats[name], rel=1e-9, abs=1e-15)


def test_the_plans_of_sender_and_receiver_agree_on_every_message():
    net = genlab.Network.random_dag(6, 5, width=(1, 9), fan_in=(1, 4), seed=2, n_inputs=9, n_outputs=4)
    for partition in (plan(net, 3), given(net, {g: g % 3 for g in net.groups if g != genlab.INPUT}, 3)):
        plans = [stages.plan(net, partition, r) for r in range(3)]
        for p, sender in enumerate(plans):
            for lv, lp in sender.levels.items():
                for q, columns in lp.sends.items():
                    assert q != p and plans[q].receives[lv][p] == len(columns)
        for q, receiver in enumerate(plans):
            for lv, by_sender in receiver.receives.items():
                for p, width in by_sender.items():
                    assert len(plans[p].levels[lv].sends[q]) == width
        owned = [set(pl.keys()) for pl in plans]
        assert set().union(*owned) == {("W", s, d) for s, d in net.edges} | {("b", g) for g in net.biases}
        assert sum(map(len, owned)) == len(set().union(*owned))  # each parameter on one process


def test_a_process_takes_its_slice_of_every_batch():
    for n in (2, 5, 9):
        slices = [World(r, 2, 0, "gloo").slice(n) for r in range(2)]
        rows = np.concatenate([np.arange(n)[s] for s in slices])
        assert np.array_equal(rows, np.arange(n)) and abs((slices[0].stop - slices[0].start) * 2 - n) <= 1


def test_bad_distributed_settings_are_refused():
    net = genlab.Network(4, 2)
    net.connect(genlab.INPUT, genlab.OUTPUT)
    with pytest.raises(ArgumentError, match="distributed"):
        genlab.Trainer(net, backend="serial", distributed="model")
    with pytest.raises(ArgumentError, match="world"):
        genlab.Trainer(net, backend="serial", world=World.alone())
    mode = DataParallel(World(0, 4, 0, "gloo"))
    engine = mode.engine("serial", net, genlab.optim.make_optimizer("adam"), "float32", None)
    with pytest.raises(DataError, match="4 processes"):
        mode.step(engine, np.zeros((3, 4), np.float32), np.zeros(3, np.int64))


@pytest.mark.parametrize("value, why", [("many", "a number of MiB"), ("0", "positive"), ("-2", "positive")])
def test_a_bad_bucket_size_is_refused_when_the_world_is_made(value, why, monkeypatch):
    monkeypatch.setenv("GENLAB_BUCKET_MB", value)
    with pytest.raises(BackendError, match=f"GENLAB_BUCKET_MB must be {why}"):
        World.alone()
    monkeypatch.setenv("GENLAB_BUCKET_MB", "0.5")
    assert World.alone().bucket_bytes == 1 << 19


def test_the_partitioned_engine_names_what_it_cannot_run():
    from genlab.distributed.partitioned import PartitionedEngine
    from genlab.optim import make_optimizer

    with pytest.raises(BackendError, match="dense"):
        PartitionedEngine(genlab.Network.conv_chain((1, 6, 6), [2], 3), make_optimizer("adam"), World.alone())
    with pytest.raises(BackendError, match="dense"):
        PartitionedEngine(genlab.Network.elman(3, [4], 2), make_optimizer("adam"), World.alone())


@pytest.mark.parametrize("mode, fault", [("data", "kill"), ("partitioned", "kill"), ("data", "hang")])
def test_a_process_that_dies_or_hangs_stops_the_others_with_a_clear_error(mode, fault):
    """Two processes started by hand (no torchrun to tidy up after them): when process 1 dies at
    its 20th step, or hangs there, process 0 stops within the timeout with PeerError, not a hang
    nor a raw gloo traceback."""
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GENLAB_BACKEND": "serial", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GENLAB_DIST_TIMEOUT": "10",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(WORKERS / "fault.py"), mode, fault], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(2)]
    try:
        out, err = procs[0].communicate(timeout=120)
        took = time.perf_counter() - start
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert procs[0].returncode == 1, err[-2000:]
    assert out.startswith("PeerError after") and "another process died or stopped answering within 10 s" in out
    assert "Traceback" not in err
    assert took < 100  # the timeout (10 s) and start-up, not a hang
