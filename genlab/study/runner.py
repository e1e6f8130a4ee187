"""Runs the growth study: every (task, seed, arm), the arms that read the grown network after it,
GPU runs one at a time (so their times are honest), CPU runs side by side in `jobs` processes;
a progress bar over the runs; the results as one JSON-ready dict."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time

from ..backends import Backend, resolve
from ..errors import ArgumentError
from . import torch_arm
from .arms import GENLAB_ARMS, Run
from .results import results
from .tasks import ARMS, Task

# on "auto", the engine of each kind: the recurrent CUDA engine is slower than NumPy today; dense
# arms run as CPU processes side by side so that the whole study fits one session of a GPU
# machine (75 runs in 9 minutes on 16 cores), at the price of their times: 3.7 ms a step for
# Fashion-MNIST's grown network in 14 processes against 0.34 ms on the CUDA engine
# (benchmarks/results/NVIDIA_H200/study/probe.json); `--backend cuda` runs them on the GPU
ENGINE_FOR_KIND = {"recurrent": "serial", "dense": "serial"}
THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def backend_for(task: Task, backend: str) -> str:
    """The engine a task's genlab arms run on."""
    return ENGINE_FOR_KIND.get(task.kind, backend) if backend == Backend.AUTO else backend


def one(task: Task, arm: str, seed: int, backend: str, given: Run | None) -> Run:
    """One run (in a worker process or here)."""
    if arm == "torch":
        curve, params, seconds, device = torch_arm.run(task, seed, given.parameters)
        return Run(task.dataset, arm, seed, curve[-1], params, round(seconds, 3), f"torch {device}", curve)
    return GENLAB_ARMS[arm](task, seed, resolve(backend_for(task, backend)), given)


def _lane(task: Task, arm: str, backend: str) -> str:
    if arm == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return "gpu" if resolve(backend_for(task, backend)) is Backend.CUDA else "cpu"


class _Inline:
    """An executor that runs a job when its result is asked for, here (one process: notebooks and
    tests), so that the progress bar moves run by run."""

    def submit(self, fn, *args):
        future = cf.Future()
        future.job = (fn, args)
        return future

    @staticmethod
    def wait(futures) -> set:
        """Run the first waiting job; the futures now done."""
        future = next((f for f in futures if not f.done()), None)
        if future is not None:
            fn, args = future.job
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # handed to whoever reads the future, as a pool would
                future.set_exception(e)
        return {f for f in futures if f.done()}

    def shutdown(self, cancel_futures=False):
        pass


def run(tasks: dict[str, Task], seeds=(0, 1, 2), arms=ARMS, backend: str = "auto", jobs: int = 1,
        progress: bool = True, on_run=None) -> dict:
    """Every arm of every task with every seed; the study's results (see `results`). on_run: a
    function called with each run's dict as it finishes (a log that outlives an interrupted study)."""
    from tqdm.auto import tqdm

    arms = tuple(arms)
    unknown = set(arms) - set(ARMS)
    if unknown or "grown" not in arms:
        raise ArgumentError(f"arms are {', '.join(ARMS)}, grown among them (the others read it); got {list(arms)}")
    pools = {"gpu": _Inline(), "cpu": _Inline()}
    if jobs > 1:
        for name in THREADS:  # one BLAS thread a worker process: `jobs` of them share the cores
            os.environ.setdefault(name, "1")
        context = multiprocessing.get_context("spawn")
        pools = {"gpu": cf.ProcessPoolExecutor(1, mp_context=context),
                 "cpu": cf.ProcessPoolExecutor(jobs, mp_context=context)}
    start = time.perf_counter()
    pending, runs = {}, []
    submit = lambda task, arm, seed, given=None: pending.update({pools[_lane(task, arm, backend)].submit(
        one, task, arm, seed, backend, given): (task, arm, seed)})
    for task in tasks.values():
        for seed in seeds:
            submit(task, "grown", seed)
    bar = tqdm(total=len(tasks) * len(seeds) * len(arms), desc="growth study", unit="run", disable=not progress)
    try:
        while pending:
            done = _Inline.wait(list(pending)) if jobs <= 1 else \
                cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)[0]
            for future in done:
                task, arm, seed = pending.pop(future)
                result = future.result()
                runs.append(result)
                if on_run is not None:
                    on_run(result.to_dict())
                bar.update()
                bar.set_postfix_str(f"{task.dataset} {arm} {seed}: {result.accuracy:.3f}")
                if arm == "grown":
                    for other in (a for a in arms if a != "grown"):
                        submit(task, other, seed, result)
    finally:
        bar.close()
        for pool in pools.values():
            pool.shutdown(cancel_futures=True)
    return results(tasks, seeds, runs, backend, jobs, time.perf_counter() - start)
