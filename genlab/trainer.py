"""The trainer: drives an engine through steps and epochs and keeps the history of a run."""

from __future__ import annotations


import numpy as np

from . import checks
from .asynchronous import dni, hogwild
from .datasets import check_data
from .distributed.modes import MODES, Alone
from .shapes import Form
from .errors import ArgumentError, ArgumentTypeError, BackendError, DataError, GraphError, StaleNetworkError, TrainingError
from .growth import GrowthEvent, GrowthPolicy, Grower
from .history import History
from .network import Network
from .optim import make_optimizer
from .precision import parse as parse_precision


def _mode(distributed: str | None, world):
    """The way steps are spread over processes (genlab.distributed.MODES)."""
    if distributed is None:
        if world is not None:
            raise ArgumentError("world= goes with distributed='data' or 'partitioned'")
        return Alone(None)
    checks.choice(distributed, "distributed", list(MODES))
    if world is None:
        from .distributed.world import World

        world = World.start()
    return MODES[distributed](world)


class Trainer:
    """Trains a Network on the chosen engine.

    backend: "auto" (CUDA when usable, else serial), "serial" or "cuda".
    optimizer: "adam" (lr 1e-3 by default) or "sgd" (with momentum 0.9; lr 0.1 by default),
    or an optimizer object from genlab.optim. Every batch is checked before it reaches the
    engine, so bad data raises DataError and leaves the network untouched.
    growth: a GrowthPolicy; its `every` makes fit grow the network on its own. Without one,
    the default policy applies to grow() calls only.
    executor: the CUDA engine's schedule of a step: "auto" (the default: the fastest for the
    network's shape and batch on this GPU, by a short timed trial cached per machine, chosen again
    when growth changes the shape), or one of "level", "level_push", "level_batch", "dataflow",
    "dataflow_batch", "dataflow_rows", "cluster" (genlab.engines.cuda.EXECUTORS; all compute the same step);
    a recurrent network of dense groups also "wavefront": forward and backward through time in one
    persistent launch (cuda/wavefront.cu, fp32).
    distributed: None (this process alone), "data" (each process of `world` steps on its slice of
    every batch, replicas kept identical) or "partitioned" (the groups spread over the processes,
    micro-batches pipelined); every process runs the same code on the same data (genlab.distributed).
    world: the genlab.distributed.World of the run (World.start() when distributed is set).
    parallel: None, or genlab.Hogwild(workers=K): fit runs K lock-free workers on the shared
    parameters (genlab.asynchronous); step() stays one synchronous step.
    decouple: None, or genlab.DNI(cuts=[...]): the backward cut into parts after those groups,
    each earlier part updated from synthetic gradients (genlab.asynchronous.dni; on the CUDA engine:
    dense groups, executor "level_push", genlab.engines.cuda.decoupled).
    precision: the arithmetic of the dense groups' matrix products: "fp32" (the default), "3xtf32"
    (tensor cores at float32's accuracy), "tf32" or "bf16" (tensor cores on rounded operands);
    the serial engine rounds the same operands, so both engines compute the same step
    (genlab.precision; on the CUDA engine, executor "auto" picks among the executors that offer it).
    """

    def __init__(self, net: Network, backend: str = "auto", optimizer="adam", lr: float | None = None,
                 batch_size: int = 32, seed: int = 0, dtype="float32", growth: GrowthPolicy | None = None,
                 executor: str | None = None, every_step: bool = False, distributed: str | None = None,
                 world=None, parallel=None, decouple=None, precision="fp32", **optimizer_options):
        if not isinstance(net, Network):
            raise ArgumentTypeError(f"Trainer needs a genlab.Network, got {type(net).__name__}")
        if growth is not None and not isinstance(growth, GrowthPolicy):
            raise ArgumentTypeError(f"growth must be a genlab.GrowthPolicy or None, got {type(growth).__name__}")
        self.batch_size = batch_size
        self.seed = checks.integer(seed, "seed", 0)
        dtype = checks.float_dtype(dtype)
        self.every_step = checks.boolean(every_step, "every_step")
        if self.every_step and not net.recurrent:
            raise ArgumentError("every_step reads a recurrent network's output at every step; this network has "
                                "no edge with a delay")
        net.validate()
        checks.finite_parameters(net)
        self.optimizer = make_optimizer(optimizer, lr, **optimizer_options)
        precision = parse_precision(precision)
        self._engine_options = dict(backend=backend, dtype=dtype.name, executor=executor, precision=precision)
        mode = _mode(distributed, world)
        self.mode = mode if decouple is None else dni.mode_of(decouple, mode)
        self.decouple = decouple  # the genlab.DNI given, or None
        self.parallel = hogwild.checked(parallel, distributed, decouple)
        net.holding.settle()  # a trainer that held it before hands its parameters over
        work = net.copy()
        work.astype(dtype)
        self.engine = self.mode.engine(backend, work, self.optimizer, dtype, executor, precision)
        if self.every_step and not self.engine.reads_every_step:
            raise BackendError(f"the {self.engine.name} engine reads a recurrent network's output at the last step "
                               "only; use backend='serial' for every_step")
        self._start = work.copy()  # what reset() goes back to
        net.assign(work)  # in the trainer's dtype: what it saves is what it trains
        self._net = net
        self.growth = growth if growth is not None else GrowthPolicy(every=None)
        self.on_growth = None  # a function called with the events of each growth step
        self.engine.every_step = self.every_step
        if self.parallel is not None:
            self.parallel.check(self.engine)
        self._hold()
        self._begin()

    @property
    def executor(self) -> str | None:
        """The CUDA engine's schedule asked for ("auto", a name of EXECUTORS, or None: the engine's
        default); the one running is engine.executor."""
        return self._engine_options["executor"]

    @property
    def start(self) -> Network:
        """The network reset() goes back to (read it; a checkpoint's load sets it)."""
        return self._start

    @start.setter
    def start(self, net: Network) -> None:
        if not isinstance(net, Network):
            raise ArgumentTypeError(f"a trainer's start is a genlab.Network, got {type(net).__name__}")
        self._start = net.copy()

    @property
    def precision(self) -> str:
        """The dense products' arithmetic this trainer computes in ("fp32", "3xtf32", "tf32", "bf16")."""
        return self._engine_options["precision"].value

    def _hold(self) -> None:
        """Make the network ask this trainer for its parameters whenever they are read."""
        self._net.holding.take(self)
        self._dirty = False  # the engine holds parameters the network has not seen yet
        self._freeze()

    def _freeze(self) -> None:
        """The network's arrays are read-only (replace a block to change it), and this is the
        version the engine holds."""
        self._net.freeze_arrays()
        self._version = self._net.version

    def _begin(self) -> None:
        """A run's state from its first step: random stream, history, growth bookkeeping."""
        self.rng = np.random.default_rng(self.seed)
        self.history = History()
        self.grower = Grower(self.growth, self.seed)
        self.grower.attach(self.engine)
        self.step_count = 0
        self._pictured = (None, None)  # (network version, its topology picture): _topology

    def reset(self) -> None:
        """Back to the start, in place: the network you passed gets its starting topology and
        parameters again, the optimizer state, history, step count, random stream and growth
        bookkeeping start afresh; the optimizer's settings (the learning rate included), the
        growth policy and on_growth stay."""
        self._net.holding.take(self)  # a trainer that took it since settles first; the start replaces it all
        self._dirty = False  # and this trainer's own steps are dropped, not written over the start
        self._net.assign(self._start.copy())
        o = self._engine_options
        self.engine = self.mode.engine(o["backend"], self._net, self.optimizer, o["dtype"], o["executor"], o["precision"])
        self.engine.every_step = self.every_step
        self._hold()
        self._begin()

    def batches(self, n: int):
        """The batches of one epoch over n rows: a shuffled order cut into ceil(n / batch_size)
        batches of equal size, give or take one (a small remainder batch would inflate the
        gradient statistics: dL/dh of a mean loss grows as the batch shrinks)."""
        return np.array_split(self.rng.permutation(n), -(-n // self.batch_size))

    @property
    def batch_size(self) -> int:
        """Rows per training step (fit's batches; set it between epochs)."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._batch_size = checks.integer(value, "batch_size", 1)

    @property
    def backend(self) -> str:
        return self.engine.name

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.lr = value  # checked by the optimizer

    @property
    def net(self) -> Network:
        """The network, with the engine's latest parameters copied into it."""
        self.sync()
        return self._net

    def __del__(self) -> None:
        """A trainer let go of hands its last steps to the network it holds (held weakly there)."""
        if getattr(self, "_dirty", False) and self._net.holding.holder is self:
            try:
                self.sync()
            except Exception:  # interpreter shutdown (the device gone): nothing left to hand over to
                pass

    def sync(self) -> None:
        """Copy the engine's parameters into the network (done whenever the network's parameters
        are read or saved)."""
        if self._dirty:
            self._dirty = False
            try:
                self.engine.write_back(self._net)
            except BaseException:
                self._dirty = True
                raise
            self._freeze()

    def take_edits(self) -> None:
        """Before a step: take up edits made to the network since the last one, here or by another
        trainer given the same network (the engine reloads it, keeping the optimizer state of
        unchanged parameters), or refuse them if the network can no longer run."""
        net = self._net
        net.holding.take(self)  # another trainer took it since: its parameters first, then take it back
        if net.version == self._version:
            return
        try:
            net.validate()
            checks.finite_parameters(net)
        except (GraphError, ArgumentError) as e:
            raise StaleNetworkError(f"the network was edited into one that cannot run ({e}); no step was taken") from None
        if net.dtype != self.engine.dtype:
            net.astype(self.engine.dtype)
        self.engine.load(net)
        self._freeze()

    def _check(self, X, y=None):
        if hasattr(X, "columns") and isinstance(y, str):  # a DataFrame and the name of its label column
            if y not in X.columns:
                raise DataError(f"no column {y!r} in the frame (columns: {', '.join(map(str, X.columns))})")
            X, y = X.drop(columns=[y]), X[y]
        X = X.to_numpy() if hasattr(X, "to_numpy") else X
        y = y.to_numpy() if hasattr(y, "to_numpy") else y
        shaped = self._net.form is not Form.FLAT
        return check_data(X, y, self._net.n_inputs, self._net.n_outputs, sequence=self._net.recurrent,
                          every_step=self.every_step, input_shape=self._net.input_shape if shaped else None,
                          dtype=self._net.dtype)

    def step(self, x, y) -> dict:
        """One training step on the batch (x, y); returns {"loss", "accuracy"} of that batch.

        All or nothing: a step whose loss or update would not be finite raises TrainingError
        and leaves the network and the engine with the parameters of the last good step."""
        x, y = self._check(x, y)
        self.take_edits()
        return self._step(x, y)

    def _step(self, x, y) -> dict:
        loss, correct = self.mode.step(self.engine, x, y)
        self._dirty = True
        record = self._account(loss, correct, len(y), self.engine.scored or y.size, lambda: self.engine.grad_std,
                               lambda: self.engine.stats)
        every = self.growth.every
        if every and self.step_count % every == 0:
            self.grow()
        return record

    def _account(self, loss: float, correct: int, rows: int, size: int, grad_std, stats, **extra) -> dict:
        """Count a step taken (grad_std() and stats() give its statistics when they are wanted)."""
        self.grower.count(rows)
        self.step_count += 1
        record = {"step": self.step_count, "loss": loss, "accuracy": correct / size, **extra}
        if self.history.wants(self.step_count):
            self.history.record(record, grad_std())  # a new dict, in ascending group id
        if self.grower.needs_stats:
            self.grower.observe(stats())
        return record

    def grow(self, groups=None) -> list[GrowthEvent]:
        """Run the growth check now; return the events (also kept in history and net.history).
        groups: grow exactly these hidden groups (ids, in order) instead of the ones the policy's
        rule picks; the policy's mode, budget and cooldowns still apply.

        The change is made on a copy of the network and committed only once the engine has
        taken it, so a failure leaves the network and the engine as they were. An engine that
        grows in place (CUDA) replays the log of parameter operations itself, so the parameters
        stay where they are.
        """
        self.take_edits()
        in_place = self.engine.grows_in_place
        work = self._net.copy(deep=False, pull=not in_place)  # growth replaces arrays, never edits them
        events, log = self.grower.check(work, self.step_count, self.engine, groups, picture=self._topology)
        if not events:
            return events
        if not in_place and not all(np.isfinite(a).all() for a in (*work.weights.values(), *work.biases.values())):
            raise TrainingError("this growth step would have made parameters non-finite; it was not applied")
        work.history.extend(e.to_dict() for e in events)
        before = self._topology()
        self.engine.apply_growth(work, log)
        self._dirty = self._dirty or in_place  # the host's copy of new parameters is not the engine's
        self._net.assign(work)
        self._freeze()
        for e in events:  # each event's own topologies (Grower.check), one after another
            self.history.events.append({**e.to_dict(), "before": before, "after": e.after})
            before = e.after
        self._pictured = (self._net.version, before)  # the last event's topology is the network's
        if self.on_growth is not None:
            self.on_growth(events)
        return events

    def _topology(self) -> dict:
        """The network's topology picture, made once per version of the network (the last growth
        event's `after` is the next one's `before` unless the network was edited in between)."""
        version, picture = self._pictured
        if version != self._net.version:
            picture = self._net.topology()
            self._pictured = (self._net.version, picture)
        return picture

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

        epochs = checks.integer(epochs, "epochs", 0)
        X, y = self._check(X, y)
        if validation is not None:
            if not isinstance(validation, (tuple, list)) or len(validation) != 2:
                raise DataError("validation must be a pair (X_val, y_val)")
            validation = self._check(*validation)
        self.take_edits()
        n = len(X)
        per_epoch = -(-n // self.batch_size)
        bar = tqdm(total=epochs * per_epoch, disable=not progress, desc=f"training ({self.backend})",
                   unit="step", leave=False)
        team = None
        try:
            team = self.parallel.team(self, X, y) if self.parallel is not None and epochs else None
            for _ in range(epochs):
                losses, hits = [], []
                if team is None:
                    self._epoch(X, y, losses, hits, bar)
                else:
                    hogwild.epoch(self, team, self.batches(n), losses, hits, bar)
                record = {"epoch": len(self.history.epochs) + 1, "step": self.step_count,
                          "loss": sum(losses) / n, "accuracy": sum(hits) / n}
                if validation is not None:
                    v = self.evaluate(*validation)
                    record.update(val_loss=v["loss"], val_accuracy=v["accuracy"])
                self.history.epochs.append(record)
                bar.set_postfix({k: round(v, 4) for k, v in record.items() if k in ("loss", "val_accuracy")})
        finally:
            if team is not None:
                team.close()
            bar.close()
            self.sync()
        return self.history

    def _epoch(self, X, y, losses: list, hits: list, bar) -> None:
        """One synchronous pass over (X, y): each batch's loss and hits (loss and accuracy times its rows)."""
        for idx in self.batches(len(X)):
            r = self._step(X[idx], y[idx])
            losses.append(r["loss"] * len(idx))
            hits.append(r["accuracy"] * len(idx))
            bar.update()

    def logits(self, X) -> np.ndarray:
        """The network's raw outputs (one row of class scores per row of X)."""
        X = self._check(X)
        self.take_edits()
        return self._logits(X)

    def _logits(self, X, batch_size: int = 4096) -> np.ndarray:
        """The logits, which must be finite: inputs too large for the network's arithmetic (near
        its float type's largest value) are a DataError naming the first row they broke."""
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.concatenate([self.engine.predict_logits(X[i:i + batch_size])
                                  for i in range(0, len(X), batch_size)])
        broken = ~np.isfinite(out).reshape(len(out), -1).all(axis=1)
        if broken.any():
            row = int(np.argmax(broken))
            raise DataError(f"the network's outputs for row {row} of X are not finite: its values reach "
                            f"{np.abs(X[row]).max():.3g}, too large for {self._net.dtype.name} arithmetic through "
                            "this network; scale the data down (genlab.datasets.from_arrays standardises it)")
        return out

    def predict(self, X) -> np.ndarray:
        """Predicted class of each row of X."""
        return np.argmax(self.logits(X), axis=-1)

    def evaluate(self, X, y) -> dict:
        """{"loss": mean cross-entropy, "accuracy": fraction correct} on (X, y)."""
        from .engines.serial import softmax_cross_entropy

        X, y = self._check(X, y)
        self.take_edits()
        logits = self._logits(X).astype(np.float64)
        loss, _ = softmax_cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return {"loss": loss, "accuracy": float(np.mean(np.argmax(logits, axis=-1) == y))}

    def __repr__(self) -> str:
        return (f"Trainer(backend={self.backend!r}, optimizer={self.optimizer}, batch_size={self.batch_size}, "
                f"steps={self.step_count}, {self._net!r})")

    # ------------------------------------------------------------------ checkpoints
    def save(self, path, metadata: dict | None = None):
        """Write a checkpoint to exactly `path`, atomically: the network (Network.load reads it),
        the optimizer state, the random streams, the step count, the growth state, the history
        and the starting network, so that Trainer.load continues as if never stopped. metadata:
        a JSON-ready dict kept with it (Trainer.load gives it back as .metadata)."""
        from .checkpoint import save

        return save(self, path, metadata)

    @classmethod
    def load(cls, path, backend: str = "auto", executor: str | None = None, growth: GrowthPolicy | None = None,
             distributed: str | None = None, world=None, precision: str | None = None) -> "Trainer":
        """The trainer a checkpoint (Trainer.save) describes, on `backend`. The serial engine
        continues bit for bit; so does the CUDA engine from a CUDA checkpoint. growth replaces the
        saved growth policy (needed when its criterion was a function); distributed and world
        continue it over several processes (each loads the same file), whatever ran it before;
        precision replaces the saved one (genlab.precision; None keeps it)."""
        from .checkpoint import load

        return load(cls, path, backend=backend, executor=executor, growth=growth, distributed=distributed, world=world,
                    precision=precision)
