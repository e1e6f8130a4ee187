"""The trainer: drives an engine through steps and epochs and keeps the history of a run."""

from __future__ import annotations

import numpy as np

from .backends import make_engine
from .datasets import check_data
from .errors import DataError
from .growth import GrowthEvent, GrowthPolicy, Grower
from .network import Network
from .optim import make_optimizer


class History:
    """What happened during training: per-step and per-epoch metrics, gradient std per group
    per step, and growth events. Plain lists of dicts, ready for JSON and for the lab's plots."""

    def __init__(self):
        self.steps: list[dict] = []     # {"step", "loss", "accuracy"}
        self.epochs: list[dict] = []    # {"epoch", "step", "loss", "accuracy", "val_loss", "val_accuracy"}
        self.grad_std: list[dict] = []  # {group: std of dL/dh} for each step
        self.events: list[dict] = []    # growth events (genlab.growth)

    def to_dict(self) -> dict:
        return {"steps": self.steps, "epochs": self.epochs, "events": self.events,
                "grad_std": [{str(g): s for g, s in d.items()} for d in self.grad_std]}

    def __repr__(self) -> str:
        return f"History(steps={len(self.steps)}, epochs={len(self.epochs)}, events={len(self.events)})"


class Trainer:
    """Trains a Network on the chosen engine.

    backend: "auto" (CUDA when usable, else serial), "serial" or "cuda".
    optimizer: "adam" (lr 1e-3 by default) or "sgd" (with momentum 0.9; lr 0.1 by default),
    or an optimizer object from genlab.optim. Every batch is checked before it reaches the
    engine, so bad data raises DataError and leaves the network untouched.
    growth: a GrowthPolicy; its `every` makes fit grow the network on its own. Without one,
    the default policy applies to grow() calls only.
    executor: the CUDA engine's schedule of a step: "level" (default), "dataflow", "dataflow_rows",
    "level_push", "level_batch" or "dataflow_batch" (genlab.engines.cuda.EXECUTORS; all compute
    the same step).
    """

    def __init__(self, net: Network, backend: str = "auto", optimizer="adam", lr: float | None = None,
                 batch_size: int = 32, seed: int = 0, dtype="float32", growth: GrowthPolicy | None = None,
                 executor: str | None = None, **optimizer_options):
        if not isinstance(net, Network):
            raise TypeError(f"Trainer needs a genlab.Network, got {type(net).__name__}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        net.validate()
        self._net = net
        self._start = net.copy()  # what reset() goes back to
        self.optimizer = make_optimizer(optimizer, lr, **optimizer_options)
        self._engine_options = dict(backend=backend, dtype=dtype, executor=executor)
        self.engine = make_engine(backend, net, self.optimizer, dtype=dtype, executor=executor)
        self.batch_size = int(batch_size)
        self.seed = seed
        self.growth = growth if growth is not None else GrowthPolicy(every=None)
        self.on_growth = None  # a function called with the events of each growth step
        self._begin()

    def _begin(self) -> None:
        """A run's state from its first step: random stream, history, growth bookkeeping."""
        self.rng = np.random.default_rng(self.seed)
        self.history = History()
        self.grower = Grower(self.growth, self.seed)
        self.grower.attach(self.engine)
        self.step_count = 0
        self._dirty = False  # the engine holds parameters the network has not seen yet

    def reset(self) -> None:
        """Back to the start, in place: the network you passed gets its starting topology and
        parameters again, the optimizer state, history, step count, random stream and growth
        bookkeeping start afresh; the optimizer's settings (the learning rate included), the
        growth policy and on_growth stay."""
        self._net.assign(self._start.copy())
        self.engine = make_engine(self._engine_options["backend"], self._net, self.optimizer,
                                  dtype=self._engine_options["dtype"], executor=self._engine_options["executor"])
        self._begin()

    def batches(self, n: int):
        """The batches of one epoch over n rows: a shuffled order cut into ceil(n / batch_size)
        batches of equal size, give or take one (a small remainder batch would inflate the
        gradient statistics: dL/dh of a mean loss grows as the batch shrinks)."""
        return np.array_split(self.rng.permutation(n), -(-n // self.batch_size))

    @property
    def backend(self) -> str:
        return self.engine.name

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.lr = float(value)

    @property
    def net(self) -> Network:
        """The network, with the engine's latest parameters copied into it."""
        self.sync()
        return self._net

    def sync(self) -> None:
        """Copy the engine's parameters into the network (done by fit and by reading .net)."""
        if self._dirty:
            self.engine.write_back(self._net)
            self._dirty = False

    def _check(self, X, y=None):
        if hasattr(X, "columns") and isinstance(y, str):  # a DataFrame and the name of its label column
            if y not in X.columns:
                raise DataError(f"no column {y!r} in the frame (columns: {', '.join(map(str, X.columns))})")
            X, y = X.drop(columns=[y]), X[y]
        X = X.to_numpy() if hasattr(X, "to_numpy") else X
        y = y.to_numpy() if hasattr(y, "to_numpy") else y
        return check_data(X, y, self._net.n_inputs, self._net.n_outputs)

    def step(self, x, y) -> dict:
        """One training step on the batch (x, y); returns {"loss", "accuracy"} of that batch."""
        x, y = self._check(x, y)
        return self._step(x, y)

    def _step(self, x, y) -> dict:
        loss, correct = self.engine.step(x, y)
        self._dirty = True
        self.step_count += 1
        record = {"step": self.step_count, "loss": loss, "accuracy": correct / len(y)}
        self.history.steps.append(record)
        self.history.grad_std.append(self.engine.grad_std)  # a new dict, in ascending group id
        if self.grower.needs_stats:
            self.grower.observe(self.engine.stats)
        every = self.growth.every
        if every and self.step_count % every == 0:
            self.grow()
        return record

    def grow(self) -> list[GrowthEvent]:
        """Run the growth check now; return the events (also kept in history and net.history).

        The change is made on a copy of the network and committed only once the engine has
        taken it, so a failure leaves the network and the engine as they were. An engine that
        grows in place (CUDA) replays the log of parameter operations itself, so the parameters
        stay where they are.
        """
        in_place = self.engine.grows_in_place
        if not in_place:
            self.sync()
        work = self._net.copy(deep=False)  # growth replaces arrays, never changes them in place
        events, log = self.grower.check(work, self.step_count, self.engine)
        if not events:
            return events
        work.history.extend(e.to_dict() for e in events)
        before = self._net.topology()
        self.engine.apply_growth(work, log)
        self._dirty = self._dirty or in_place  # the host's copy of new parameters is not the engine's
        self._net.assign(work)
        after = self._net.topology()
        self.history.events.extend({**e.to_dict(), "before": before, "after": after} for e in events)
        if self.on_growth is not None:
            self.on_growth(events)
        return events

    def preview_growth(self) -> list[tuple[int, str, float]]:
        """What grow() would do now, without doing it: [(group, "depth" | "width", statistic)] in
        the order the budget admits them (pruning is not previewed)."""
        return self.grower.preview(self._net, self.step_count, self.engine)

    def fit(self, X, y, epochs: int = 1, validation=None, progress: bool = True) -> History:
        """Train for `epochs` passes over (X, y) in shuffled batches of batch_size (sizes evened
        out so that no batch is much smaller than the rest); validation=(X_val, y_val).

        All data is checked first, so a bad array raises DataError before any step.
        """
        from tqdm.auto import tqdm

        X, y = self._check(X, y)
        if validation is not None:
            validation = self._check(*validation)
        n = len(X)
        per_epoch = -(-n // self.batch_size)
        bar = tqdm(total=epochs * per_epoch, disable=not progress, desc=f"training ({self.backend})",
                   unit="step", leave=False)
        try:
            for _ in range(epochs):
                losses, hits = [], []
                for idx in self.batches(n):
                    r = self._step(X[idx], y[idx])
                    losses.append(r["loss"] * len(idx))
                    hits.append(r["accuracy"] * len(idx))
                    bar.update()
                record = {"epoch": len(self.history.epochs) + 1, "step": self.step_count,
                          "loss": sum(losses) / n, "accuracy": sum(hits) / n}
                if validation is not None:
                    v = self.evaluate(*validation)
                    record.update(val_loss=v["loss"], val_accuracy=v["accuracy"])
                self.history.epochs.append(record)
                bar.set_postfix({k: round(v, 4) for k, v in record.items() if k in ("loss", "val_accuracy")})
        finally:
            bar.close()
            self.sync()
        return self.history

    def logits(self, X) -> np.ndarray:
        """The network's raw outputs (one row of class scores per row of X)."""
        return self._logits(self._check(X))

    def _logits(self, X, batch_size: int = 4096) -> np.ndarray:
        return np.concatenate([self.engine.predict_logits(X[i:i + batch_size])
                               for i in range(0, len(X), batch_size)])

    def predict(self, X) -> np.ndarray:
        """Predicted class of each row of X."""
        return np.argmax(self.logits(X), axis=1)

    def evaluate(self, X, y) -> dict:
        """{"loss": mean cross-entropy, "accuracy": fraction correct} on (X, y)."""
        from .engines.serial import softmax_cross_entropy

        X, y = self._check(X, y)
        logits = self._logits(X).astype(np.float64)
        loss, _ = softmax_cross_entropy(logits, y)
        return {"loss": loss, "accuracy": float(np.mean(np.argmax(logits, axis=1) == y))}

    def __repr__(self) -> str:
        return (f"Trainer(backend={self.backend!r}, optimizer={self.optimizer}, batch_size={self.batch_size}, "
                f"steps={self.step_count}, {self._net!r})")
