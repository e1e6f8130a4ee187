"""Hogwild! on the CUDA engine: K workers as K streams of one GPU on one parameter buffer.

Worker 0 is the trainer's own engine; workers 1..K-1 are engines of their own (activations,
gradients, optimizer state, captured step graphs, a stream each) whose parameter buffer is
worker 0's. The host puts every worker's next batch up and replays its step graph, then reads
each worker's loss back in turn: the K graphs run side by side on the GPU, each update landing
on the shared parameters whenever its kernels get there. The host cannot see when, within a
step, the others' updates landed, so a step's staleness is counted as the others' steps in
flight with it: the most updates that can have landed between its read and its write.

With executor="auto", the trainer's engine chooses for the run's first batch as its synchronous
step would (alone, before every step), and the other workers take the executor it chose.

The row executor (dataflow_rows) normally leaves a step's update to the next step's first items;
here each worker's next step comes a round later, so its update runs within its own step.

The step guard (genlab.guard) bounds what each worker's own updates can do to the parameters;
with K workers each keeps within 1/K of the room, and a worker whose next update the guard cannot
prove finite steps alone, through the engine's careful path, after its bounds are measured again.
"""

from __future__ import annotations

from ..engines.cuda.engine import CudaEngine
from ..engines.cuda.executors.rows import Rows
from ..errors import TrainingError
from ..guard import gradient_ok
from .team import Report, Team, own_state


class StreamTeam(Team):
    """Hogwild workers of a CudaEngine (module text)."""

    def __init__(self, trainer, X, y, workers, needs_stats):
        super().__init__(trainer, X, y, workers, needs_stats)
        self.engines: list[CudaEngine] = []
        self.limit = trainer.engine.guard.limit  # the guard's room for one engine alone
        executor = trainer.engine.executor
        self.defer = executor.defer_update if isinstance(executor, Rows) else None  # put back by close
        self.careful: dict[int, tuple] = {}  # worker -> (loss, correct) of a step taken alone (_launch)
        self.reload()

    def reload(self) -> None:
        """Workers 1..K-1 made anew for the trainer's network as it is now."""
        t = self.trainer
        main = t.engine
        net, state = t.net, main.export_state()  # (settled: the pending update applied)
        self.engines = [main]
        for w in range(1, self.workers):
            e = CudaEngine(net, t.optimizer, executor=type(main.executor).name, precision=main.precision)
            e.import_state(own_state(state, w), net)
            e.growth_criterion, e.pruning, e.every_step = main.growth_criterion, main.pruning, main.every_step
            e.share_parameters(main)
            self.engines.append(e)
        for e in self.engines:
            e.guard.limit = self.limit / self.workers
            if isinstance(e.executor, Rows):  # each update lands within its own step, not a round later
                e.executor.defer_update = False

    def run(self, plan):
        main = self.trainer.engine
        self._sync()
        before = main.backup_state(optimizer_state=False)  # the parameters a failure puts back
        queues = [list(batches) for batches in plan]
        first = next((q[0] for q in queues if q), None)
        if first is not None and self.workers > 1:  # (one worker chooses before each of its steps: _launch)
            self._choose(first)
        try:
            while any(queues):
                live = [w for w in range(self.workers) if queues[w]]
                self._guard(live)
                for w in live:
                    self._launch(w, queues[w][0])
                reports = []  # the whole round is read before any of it is handed on
                for w in live:
                    rows = len(queues[w].pop(0))
                    reports.append(Report(w, *self._collect(w, rows, len(live) - 1)))
                yield from reports
        except TrainingError as e:
            self._sync()
            before.put_back(main.dev.parameters)
            self.reload()
            raise TrainingError(f"Hogwild worker {w} failed ({e}); every worker stopped and the parameters are as they "
                                "were before these steps") from e
        finally:
            self._sync()
        main.measure()

    def _guard(self, live: list[int]) -> None:
        """Every live worker's next update provably finite: bounds measured again where not."""
        unsure = [w for w in live if not self.engines[w].guard.safe(self.trainer.optimizer)]
        if unsure:
            self._sync()
            for w in live:
                self.engines[w].measure()

    def _choose(self, idx) -> None:
        """executor="auto": the trainer's engine chooses for this batch as its synchronous step
        would (called with nothing in flight: a trial puts back what its steps change); the other
        workers are made again on the executor it chose."""
        main = self.engines[0]
        if main.chooser is None:
            return
        before = type(main.executor)
        main.chooser.step(main, self.X[idx], self.y[idx], len(self.y[idx]) * main.layout.kinds.tokens)
        if type(main.executor) is not before and self.workers > 1:
            self.reload()

    def _launch(self, w: int, idx) -> None:
        e = self.engines[w]
        if self.workers == 1:  # alone, every step is read before the next: it chooses as the synchronous trainer does
            self._choose(idx)
        if not e.guard.safe(self.trainer.optimizer):  # still unsure after measuring: the careful, lone step
            self.careful[w] = e.step(self.X[idx], self.y[idx])
            return
        e.launch_step(e.put_batch(self.X[idx], self.y[idx]))

    def _collect(self, w: int, rows: int, others: int):
        """(loss, correct, rows, staleness, grad_std, stats) of worker w's step in flight."""
        e = self.engines[w]
        if w in self.careful:
            loss, correct = self.careful.pop(w)
        else:
            loss, correct, gradsq = e.finish_step()
            if not gradient_ok(loss, gradsq):
                raise TrainingError(f"the loss or its gradients became {loss}")
            e.guard.advance(self.trainer.optimizer, gradsq)
        return loss, correct, rows, others, e.grad_std, (e.stats if self.needs_stats else None)

    def _sync(self) -> None:
        for e in self.engines:
            e.flush()
            e.stream.synchronize()

    def close(self) -> None:
        self._sync()
        main = self.trainer.engine
        main.guard.limit = self.limit
        if isinstance(main.executor, Rows):  # (the executor "auto" chose may have changed meanwhile)
            main.executor.defer_update = True if self.defer is None else self.defer
        self.engines = [main]
