"""Growth: how a network grows (and shrinks) during training.

Every `every` steps (or when you call `Trainer.grow()`), genlab
1. marks the hidden groups whose smoothed statistic exceeds the threshold (absolute, or a
   z-score across groups when `relative`), leaving out groups that are cooling down;
2. selects among them: a marked group is dropped when one of its direct predecessors is marked
   (along a marked chain only the group closest to the input grows); the budget `max_groups`
   keeps the highest statistics (ties: lower id first);
3. duplicates each selected group, in that order (new ids are allocated in that order):
   - depth-wise: a new group g' of the same width between g and all of g's consumers, with
     weights I and bias 0: relu(I relu(z)) = relu(z), so the function is unchanged;
   - width-wise: a sibling g'' with g's inputs and consumers. sibling="fresh" (the default): new
     He-uniform input weights (counter-based noise, genlab.hashnoise), g's bias, zero output
     weights: the function is unchanged and g'' learns new features (benchmarks/NOTES.md). "split":
     g's input weights and bias copied, each outgoing block V becomes V/2 + E on g and V/2 - E on
     g'' (the consumers still receive V h), E uniform in +-noise * rms(V), breaking the symmetry;
4. optionally prunes groups whose output stayed constant since the last check (dead ReLU
   groups; exact: the constant is folded into the consumers' biases) and groups whose Taylor
   score stayed below `prune_taylor` for `patience` checks (approximate).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from . import operations as op
from .errors import GraphError
from .network.duplication import duplicate_depth, duplicate_width  # noqa: F401 (Grower's edits)
from .network import INPUT, OUTPUT, Network
from .step_pictures import StepPictures
from .operations import Change
from .policy import CRITERIA, MODES, GrowthMode, GrowthPolicy, Sibling  # noqa: F401 (their home is genlab.policy)
from .kinds import InexactFold
from .pruning import Tracker, prune_group

# pruning judges a group constant only from this many rows, seen over at least PRUNE_MIN_BATCHES
# batches since its last judgement (fewer rows leave dead-looking groups that are merely unlucky)
PRUNE_MIN_ROWS, PRUNE_MIN_BATCHES = 256, 4
# one-line notes for the person training (genlab.notices: stderr, or a grey line in Jupyter);
# logging.getLogger("genlab").setLevel(logging.ERROR) silences them, as `genlab ... --quiet` does
notes = logging.getLogger("genlab.growth")

@dataclass(frozen=True)
class GrowthEvent:
    """One change of topology: a duplication (Change.DEPTH, Change.WIDTH) or a removal (Change.PRUNE)."""

    step: int
    kind: Change
    source: int
    new: int | None
    statistic: float
    after: dict | None = dataclasses.field(default=None, compare=False, repr=False)  # the topology it left

    def to_dict(self) -> dict:
        return {"step": self.step, "kind": str(self.kind), "source": self.source, "new": self.new,
                "statistic": self.statistic}


# ------------------------------------------------------------------------------ the rules
def mark(scores: dict[int, float], threshold: float, relative: bool,
         population: dict[int, float] | None = None) -> set[int]:
    """The groups of `scores` above the threshold; relative: z-score over `population`."""
    if not relative:
        return {g for g, s in scores.items() if s > threshold}
    values = np.array(list((population or scores).values()), dtype=np.float64)
    std = values.std() if len(values) > 1 else 0.0
    if std == 0:
        return set()
    return {g for g, s in scores.items() if (s - values.mean()) / std > threshold}


def select(inputs, marked: set[int], scores: dict[int, float]) -> list[int]:
    """Closest to the input wins: drop g if a direct predecessor (inputs(g)) is marked. The rest
    in budget order: highest score first, ties broken by the lower id."""
    keep = [g for g in marked if not any(s in marked for s in inputs(g))]
    return sorted(keep, key=lambda g: (-scores[g], g))


class Scores:
    """The criterion's moving average per hidden group and the mark/select decision over it:
    the reference the engines implement (the serial engine uses this class; the CUDA engine's
    kernels in cuda/growth.cu compute the same)."""

    def __init__(self):
        self.ema: dict[int, float] = {}

    def observe(self, values: dict[int, float], alpha: float) -> None:
        for g, v in values.items():
            if g not in (INPUT, OUTPUT):
                v = float(v)
                self.ema[g] = v if g not in self.ema else self.ema[g] + alpha * (v - self.ema[g])

    def choose(self, inputs, hidden: set[int], eligible: set[int], threshold: float,
               relative: bool) -> list[tuple[int, float]]:
        """The groups to grow, in budget order, with their scores: mark the eligible hidden
        groups (the population of a z-score: every hidden group with a score), then select."""
        population = {g: s for g, s in self.ema.items() if g in hidden}
        scores = {g: s for g, s in population.items() if g in eligible}
        return [(g, scores[g]) for g in select(inputs, mark(scores, threshold, relative, population), scores)]

    def inherit(self, new: int, source: int) -> None:
        if source in self.ema:
            self.ema[new] = self.ema[source]


def depth_through(net: Network) -> dict[int, int]:
    """For each group, the number of hidden groups on the longest input->output path through it
    (within one time step: edges with a delay are not on it). Read once a duplication in mode
    "auto": O(groups + edges), without validating the whole network each time (levels() raises
    on a cycle; its keys come in a topological order)."""
    level, outputs = net.levels(), net.forward_edges()[1]
    to_out = {OUTPUT: 0}
    for g in reversed(list(level)):
        if g != OUTPUT:
            to_out[g] = 1 + max((to_out[d] for d in outputs[g]), default=-10**9)
    return {g: level[g] + to_out[g] - 1 for g in net.groups}


# ------------------------------------------------------------------------------ bookkeeping
class Grower:
    """Applies a GrowthPolicy. The engine keeps the criterion's moving average and makes the
    mark/select decision (the serial engine in NumPy, the CUDA engine on the GPU); a criterion
    given as a function is smoothed and decided here. Cooldowns, the budget and pruning are
    kept here."""

    def __init__(self, policy: GrowthPolicy, seed: int = 0):
        self.policy = policy
        self.seed = seed
        self.scores = Scores()    # used unless an engine smooths and decides (see attach)
        self.tracker = Tracker()  # likewise, for pruning
        self.engine_decides = self.engine_tracks = False
        self.taylor_low: dict[int, int] = {}
        self.cool_until: dict[int, int] = {}
        self.checks = 0
        self._depths: tuple[int, dict] | None = None  # mode "auto": (net.version, depth_through) within a check
        self.budget_reached_at: int | None = None
        self.rows = self.batches = 0  # seen since pruning last judged which groups are constant

    def count(self, rows: int) -> None:
        """One training step of `rows` rows went by."""
        self.rows += rows
        self.batches += 1

    def state(self) -> dict:
        """The bookkeeping a checkpoint keeps (JSON-ready)."""
        return {"taylor_low": _pairs(self.taylor_low), "cool_until": _pairs(self.cool_until), "checks": self.checks,
                "budget_reached_at": self.budget_reached_at, "rows": self.rows, "batches": self.batches,
                "scores": _pairs(self.scores.ema), "tracker_taylor": _pairs(self.tracker.taylor)}

    def restore(self, state: dict) -> None:
        """Take back what state() gave; ValueError naming the field if it is not well-formed."""
        count = lambda v, name: v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else _bad(name, v)
        pairs = lambda v, name, value: dict((count(g, name), value(x, name)) for g, x in _pair_list(v, name))
        real = lambda v, name: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
            and np.isfinite(v) else _bad(name, v)
        taylor_low, cool_until = pairs(state["taylor_low"], "taylor_low", count), pairs(state["cool_until"], "cool_until", count)
        scores, taylor = pairs(state["scores"], "scores", real), pairs(state["tracker_taylor"], "tracker_taylor", real)
        checks_, rows, batches = count(state["checks"], "checks"), count(state["rows"], "rows"), count(state["batches"], "batches")
        reached = state["budget_reached_at"]
        if reached is not None:
            count(reached, "budget_reached_at")
        self.taylor_low, self.cool_until, self.checks, self.budget_reached_at = taylor_low, cool_until, checks_, reached
        self.rows, self.batches, self.scores.ema, self.tracker.taylor = rows, batches, scores, taylor

    @property
    def alpha(self) -> float:
        return 2.0 / (self.policy.window + 1)

    @property
    def _taylor_alpha(self) -> float | None:
        return self.alpha if self.policy.prune_taylor is not None else None

    def attach(self, engine) -> None:
        """Let the engine keep, at every training step, what the rules read: the smoothed
        criterion (unless it is a function, which stays here) and pruning's ranges and scores."""
        p = self.policy
        self.engine_decides, self.engine_tracks = not callable(p.criterion), True
        engine.growth_criterion = (p.criterion, self.alpha) if self.engine_decides else None
        engine.pruning = (bool(p.prune), self._taylor_alpha)

    def observe(self, stats: dict) -> None:
        """Fold one step's statistics into what this object keeps itself."""
        p = self.policy
        if not self.engine_decides:
            c = p.criterion
            self.scores.observe(c(stats) if callable(c) else stats[c], self.alpha)
        if not self.engine_tracks:
            self.tracker.observe(stats, bool(p.prune), self._taylor_alpha)

    @property
    def needs_stats(self) -> bool:
        """Whether observe() needs the engine's statistics on the host at every step."""
        return not (self.engine_decides and self.engine_tracks)

    def check(self, net: Network, step: int, engine=None, groups=None,
              picture=None) -> tuple[list[GrowthEvent], list]:
        """Run the growth rules on `net` (edited in place; pass a copy to keep the original).
        Returns the events and the log of operations (genlab.operations, for engines that replay it).
        groups: grow these hidden groups, in this order, instead of those the rules choose (the
        mode, budget, cooldowns and pruning still apply; the event's statistic is the group's score).
        picture: a function that gives net.topology() as given, when the caller keeps it (the
        picture is not changed), asked only when a group grows."""
        p, self._depths = self.policy, None
        if groups is not None:
            groups = self._given(net, groups)
        log: list[op.GrowthOp] = [op.Noise(self.seed, step)]  # the counter-based noise of this step's operations
        events = self._prune(net, step, engine, log) if (p.prune or p.prune_taylor is not None) else []
        if groups is not None:
            known = self._smoothed(engine)
            wanted = [(g, float(known.get(g, 0.0))) for g in groups if g in net.widths]
        else:
            wanted = self._wanted(net, step, engine)
        chosen = wanted[:max(p.max_groups - len(net.groups), 0)]
        if len(chosen) < len(wanted) and self.budget_reached_at is None:
            self.budget_reached_at = step
            notes.warning(f"genlab: growth stopped at step {step}: the network reaches its budget, "
                          f"max_groups={p.max_groups}")
        if chosen:
            # an engine that grows in place computes the new values from the log itself
            values = engine is None or not engine.grows_in_place
            pictures = StepPictures(net, picture() if picture and not events else None)  # (a prune changed it)
            for g, score in chosen:
                kind, new = self._duplicate(net, g, step, log, values)  # after the groups before it: max_depth holds
                for h in (g, new):
                    self.cool_until[h] = step + p.cooldown
                log.append(op.Inherit(new, g))  # the copy starts with its source's score
                self.scores.inherit(new, g)
                events.append(GrowthEvent(step, kind, g, new, score, pictures.after(net, g, new)))
        self.checks += 1
        return events, log

    def _duplicate(self, net: Network, g: int, step: int, log: list | None, values: bool) -> tuple[Change, int]:
        """Duplicate g as the policy's mode says; (Change.DEPTH or Change.WIDTH, the new group)."""
        p, kind = self.policy, self._kind(g, net)
        if kind is Change.DEPTH:
            return kind, duplicate_depth(net, g, step, self.seed, p.preserve, log, values)
        depths = self._depths[1] if self._depths and self._depths[0] == net.version else None
        new = duplicate_width(net, g, step, self.seed, p.preserve, p.noise, log, values, p.sibling is Sibling.FRESH)
        if depths is not None:  # a sibling lengthens no path: every depth stays, the sibling's is g's
            depths[new] = depths[g]
            self._depths = (net.version, depths)
        return kind, new

    def _smoothed(self, engine) -> dict[int, float]:
        """{group: smoothed score}, from the engine where it keeps them."""
        return engine.smoothed_scores() if self.engine_decides else self.scores.ema

    def eligible(self, net: Network, step: int) -> list[int]:
        """The hidden groups that may grow at `step` (not cooling down), in ascending id."""
        return [g for g in net.hidden_groups if step >= self.cool_until.get(g, 0)]

    @staticmethod
    def _given(net: Network, groups) -> list[int]:
        groups = list(groups)
        hidden = set(net.hidden_groups)
        bad = [g for g in groups if g not in hidden]
        if bad:
            raise GraphError(f"group {bad[0]!r} is not a hidden group of the network (hidden: "
                             f"{', '.join(map(str, sorted(hidden))) or 'none'}): only hidden groups grow")
        if len(set(groups)) != len(groups):
            raise GraphError(f"groups {groups} names a group twice")
        return groups

    def _wanted(self, net: Network, step: int, engine) -> list[tuple[int, float]]:
        """The groups the rules mark and select now, in budget order, with their scores."""
        p = self.policy
        hidden = set(net.hidden_groups)
        eligible = set(self.eligible(net, step))
        threshold, relative, most = p.cut(lambda: self._smoothed(engine), hidden, eligible)
        if self.engine_decides:
            return engine.choose_growth(eligible, threshold, relative)[:most]
        return self.scores.choose(net.forward_edges()[0].__getitem__, hidden, eligible, threshold, relative)[:most]

    def preview(self, net: Network, step: int, engine) -> list[tuple[int, Change, float]]:
        """What check() would grow at `step` ((group, Change.DEPTH or .WIDTH, score), in budget order),
        changing nothing. Pruning is not previewed (it runs first and may remove groups)."""
        p, self._depths = self.policy, None
        chosen = self._wanted(net, step, engine)[:max(p.max_groups - len(net.groups), 0)]
        work, plan = net.copy(deep=False, pull=False), []
        for g, score in chosen:
            kind, _ = self._duplicate(work, g, step, None, values=False)
            plan.append((g, kind, score))
        return plan

    def _kind(self, g: int, net: Network) -> Change:
        mode = self.policy.mode
        if mode is GrowthMode.ALTERNATE:
            return Change.DEPTH if self.checks % 2 == 0 else Change.WIDTH
        if mode is GrowthMode.AUTO:
            if not self._depths or self._depths[0] != net.version:  # (kept within one check or preview)
                self._depths = (net.version, depth_through(net))
            return Change.DEPTH if self._depths[1][g] < self.policy.max_depth else Change.WIDTH
        return Change(mode)  # DEPTH or WIDTH

    def _prune(self, net: Network, step: int, engine, log: list) -> list[GrowthEvent]:
        p = self.policy
        judge = self.rows >= PRUNE_MIN_ROWS and self.batches >= PRUNE_MIN_BATCHES
        if judge:
            self.rows = self.batches = 0
        constants, taylor = engine.prune_report(judge) if self.engine_tracks else self.tracker.report(judge)
        events, candidates = [], []
        for g in net.hidden_groups:
            if p.prune and g in constants:
                candidates.append((g, constants[g], 0.0))
            elif p.prune_taylor is not None and g in taylor:
                low = self.taylor_low[g] = self.taylor_low.get(g, 0) + 1 if taylor[g] < p.prune_taylor else 0
                if low >= p.patience:
                    candidates.append((g, None, taylor[g]))
        pinned = engine.pinned if engine is not None else frozenset()
        for g, constant, stat in candidates:  # stat: the Taylor score that condemned g (0 for a constant)
            if g not in net.widths:
                continue  # removed with an earlier candidate
            trial, trial_log = net.copy(deep=False), []
            try:
                removed = prune_group(trial, g, constant, trial_log)
            except InexactFold as e:
                notes.info("group %d is not pruned: %s", g, e)
                continue
            except GraphError:
                continue  # the only path to the output: keep it
            if pinned.intersection(removed):
                notes.info("group %d is not pruned: it would remove the engine's cut group(s) %s", g,
                           sorted(pinned.intersection(removed)))
                continue
            net.assign(trial)
            log.extend(trial_log)
            events.extend(GrowthEvent(step, Change.PRUNE, r, None, stat, net.topology()) for r in removed)
        return events


def _bad(name: str, value):
    raise ValueError(f"growth state {name}: {value!r} is not allowed there")


def _pair_list(value, name: str) -> list:
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        _bad(name, value)
    return value


def _pairs(d: dict) -> list:
    """{int: value} as [[key, value], ...] (JSON keeps int keys of pairs as ints)."""
    return [[k, v] for k, v in d.items()]
