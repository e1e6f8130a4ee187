"""Hogwild! on the serial engine: worker processes over shared memory, as PyTorch's mnist_hogwild.

The parameters live in one flat block of shared memory; each worker's SerialEngine holds NumPy
views of it, so its optimizer's in-place update is seen at once by every other worker (and the
update of two workers to the same entry may interleave: that is the method). The data is shared
the same way. The processes start with the network they train (start_method) and are started
afresh when growth changes the network.

A worker counts its own updates in a shared array (only it writes its slot); the others' count
before its forward and after its update is its step's staleness. Steps come back to the trainer
in small bundles through one queue.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import sys
import time

import numpy as np

from ..errors import TrainingError
from .team import Report, Team, own_state

BUNDLE = 32      # steps a worker reports at once (a queue message costs tens of microseconds)
PATIENCE = 60.0  # seconds the trainer waits for a stopping worker before ending it


def start_method() -> str:
    """How the workers start. In Jupyter (or `python -c`: a main module without a file) from a fork
    server: forking the kernel's own process, which runs threads (and maybe a CUDA context), can
    deadlock the child; the server is a fresh process that imports genlab once (serial only) and
    forks the workers from itself. A script's main module would be run again in each worker by a
    fork server, so a script forks (mnist_hogwild's way). Spawned where neither exists."""
    methods = mp.get_all_start_methods()
    main = sys.modules.get("__main__")
    if "forkserver" in methods and not getattr(main, "__file__", None):
        return "forkserver"
    return "fork" if "fork" in methods else "spawn"


def _start_server(ctx) -> None:
    """The fork server, started once, with genlab imported for the serial engine only."""
    ctx.set_forkserver_preload([__name__])
    from multiprocessing import forkserver

    saved = os.environ.get("GENLAB_BACKEND")
    os.environ["GENLAB_BACKEND"] = "serial"  # the server and its workers never touch a GPU
    try:
        forkserver.ensure_running()
    finally:
        if saved is None:
            del os.environ["GENLAB_BACKEND"]
        else:
            os.environ["GENLAB_BACKEND"] = saved


def _shared(ctx, array: np.ndarray):
    """A copy of `array` in shared memory: (the raw block, its dtype string, its shape)."""
    code = {np.dtype(np.float32): "f", np.dtype(np.float64): "d", np.dtype(np.int64): "q", np.dtype(np.int32): "i"}
    raw = ctx.RawArray(code[array.dtype], max(array.size, 1))
    _view((raw, array.dtype.str, array.shape))[...] = array
    return raw, array.dtype.str, array.shape


def _view(shared) -> np.ndarray:
    raw, dtype, shape = shared
    return np.frombuffer(raw, dtype, int(np.prod(shape))).reshape(shape)


def _blocks(params: dict, flat: np.ndarray, keys: list):
    """(key, its view of the flat block) for each parameter, the keys in order, each its size."""
    start = 0
    for key in keys:
        p = params[key]
        yield key, flat[start:start + p.size].reshape(p.shape)
        start += p.size


def _work(w, workers, setup, data, params, keys, counts, abort, commands, results, threads):
    """A worker process: load the network, then run the batch lists it is sent until told to stop."""
    from threadpoolctl import threadpool_limits

    from ..engines.serial import SerialEngine

    threadpool_limits(threads)
    net, optimizer, state, options = setup
    engine = SerialEngine(net, optimizer, dtype=net.dtype, precision=options.pop("precision"))
    engine.import_state(state, net)
    for name, value in options.items():
        setattr(engine, name, value)
    engine.params.update(_blocks(engine.params, _view(params), keys))  # views of the shared block
    engine.guard.limit /= workers  # K workers' updates the guard does not see stay within its room
    X, y = _view(data[0]), _view(data[1])
    mine = np.frombuffer(counts, np.int64)
    while (command := commands.get()) is not None:
        bundle, last = [], time.perf_counter()
        for idx in command:
            if abort.value:
                break
            before = int(mine.sum() - mine[w])
            try:
                loss, correct = engine.step(X[idx], y[idx])
            except Exception as e:  # a TrainingError, or anything else: stop every worker
                abort.value = 1
                results.put(("error", w, f"{type(e).__name__}: {e}", e if isinstance(e, TrainingError) else None))
                break
            mine[w] += 1
            stats = engine.stats if options["needs_stats"] else None
            bundle.append(Report(w, loss, correct, len(idx), int(mine.sum() - mine[w]) - before, engine.grad_std, stats))
            if len(bundle) >= BUNDLE or time.perf_counter() - last > 0.1:
                results.put(("steps", bundle))
                bundle, last = [], time.perf_counter()
        results.put(("steps", bundle))
        results.put(("done", w, engine.export_state() if w == 0 else None))


class ProcessTeam(Team):
    """Hogwild workers of a SerialEngine (module text)."""

    def __init__(self, trainer, X, y, workers, needs_stats):
        super().__init__(trainer, X, y, workers, needs_stats)
        method = start_method()
        self.ctx = mp.get_context(method)
        if method == "forkserver":
            _start_server(self.ctx)
        self.data = (_shared(self.ctx, X), _shared(self.ctx, np.asarray(y, np.int64)))
        self.processes: list = []
        self.reload()

    def reload(self) -> None:
        """Start the workers on the trainer's network as it is now (its engine's parameters and state)."""
        self.close()
        ctx, t, K = self.ctx, self.trainer, self.workers
        e = t.engine
        self.keys = sorted(e.params)
        flat = np.concatenate([e.params[k].ravel() for k in self.keys]) if self.keys else np.zeros(0, e.dtype)
        self.params = _shared(ctx, flat)
        self.counts, self.abort = ctx.RawArray("q", K), ctx.RawValue("i", 0)
        self.results, self.commands = ctx.Queue(), [ctx.Queue() for _ in range(K)]
        options = {"growth_criterion": e.growth_criterion, "pruning": e.pruning, "every_step": e.every_step,
                   "needs_stats": self.needs_stats, "precision": e.precision}
        state, net = e.export_state(), t.net
        threads = max(1, (os.cpu_count() or 1) // K)
        self.processes = [ctx.Process(target=_work, daemon=True, name=f"genlab-hogwild-{w}",
                                      args=(w, K, (net, t.optimizer, own_state(state, w), options), self.data,
                                            self.params, self.keys,
                                            self.counts, self.abort, self.commands[w], self.results, threads))
                          for w in range(K)]
        for p in self.processes:
            p.start()

    def run(self, plan):
        if not self.processes:  # stopped by force before
            self.reload()
        flat = _view(self.params)
        before = flat.copy()
        self.abort.value = 0
        for w, batches in enumerate(plan):
            self.commands[w].put(batches)
        done, failure, state = set(), None, None
        try:
            while len(done) < self.workers:
                message = self._next()
                if message[0] == "steps":
                    yield from message[1]
                elif message[0] == "error":
                    failure = failure or message
                else:
                    done.add(message[1])
                    state = message[2] if message[1] == 0 else state
        except TrainingError:  # a worker died: the others stop, and the run is undone
            self.abort.value = 1
            self._drain(done, state)
            flat[...] = before
            self.reload()
            raise
        except BaseException:  # the trainer was interrupted: what the workers made so far is kept
            self.abort.value = 1
            state = self._drain(done, state)
            if np.isfinite(flat).all():
                self._take(flat, state)
            raise
        if failure is not None:
            flat[...] = before
            self.reload()  # the workers' optimizer states start again from the trainer's
            _, w, words, error = failure
            raise TrainingError(f"Hogwild worker {w} failed ({words}); every worker stopped and the parameters are as "
                                "they were before these steps") from error
        self._take(flat, state)

    def _take(self, flat: np.ndarray, state) -> None:
        """The shared parameters and worker 0's optimizer state into the trainer's engine."""
        e = self.trainer.engine
        for key, block in _blocks(e.params, flat, self.keys):
            e.params[key][...] = block
        if state is not None:
            e.import_state(state, self.trainer._net)  # (measures the guard's bounds again)
        else:
            e._measure()

    def _next(self):
        """The next message from the workers; TrainingError if one of them died."""
        while True:
            try:
                return self.results.get(timeout=0.5)
            except queue.Empty:
                dead = [p for p in self.processes if not p.is_alive()]
                if dead:
                    self.abort.value = 1
                    raise TrainingError(f"Hogwild worker {dead[0].name} ended (exit code {dead[0].exitcode}); "
                                        "the others were stopped") from None

    def _drain(self, done: set, state):
        """Wait for the stopping workers' last messages (worker 0's state among them); end the
        processes that do not stop."""
        deadline = time.monotonic() + PATIENCE
        waiting = lambda: [w for w, p in enumerate(self.processes) if w not in done and p.is_alive()]
        while waiting() and time.monotonic() < deadline:
            try:
                message = self.results.get(timeout=0.2)
            except queue.Empty:
                continue
            if message[0] == "done":
                done.add(message[1])
                state = message[2] if message[1] == 0 else state
        if len(done) < self.workers:
            self.close()
        return state

    def close(self) -> None:
        for w, p in enumerate(self.processes):
            if p.is_alive():
                try:
                    self.commands[w].put(None)
                except (ValueError, OSError):
                    pass
        for p in self.processes:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        self.processes = []
