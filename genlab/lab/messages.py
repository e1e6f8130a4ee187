"""What the lab says in words: each growth event, and why "Grow now" grew nothing."""

from __future__ import annotations

import html

from ..operations import Change


def announce(events: list[dict], policy, last: int = 3) -> str:
    """A line per growth event (as trainer.history.events records them): which group grew, how, and
    the statistic that chose it against the policy's rule ("step 350: group 7 duplicated depth-wise
    into group 12: grad_std 0.021 > threshold 0.005"); the last `last`, with a count of the rest."""
    name = policy.criterion if isinstance(policy.criterion, str) else "statistic"
    rule = (", the highest" if policy.threshold is None else f", z-score > {policy.threshold:g}" if policy.relative
            else f" > threshold {policy.threshold:.2g}")
    lines = [f"step {e['step']}: group {e['source']} pruned" if e["kind"] == Change.PRUNE else
             f"step {e['step']}: group {e['source']} duplicated {e['kind']}-wise into group {e['new']}: "
             f"{name} {e['statistic']:.2g}{rule}" for e in events[-last:]]
    more = [f"(and {len(events) - last} more growth events)"] if len(events) > last else []
    return "<br>".join(more + lines)


def nothing_grew(trainer) -> str:
    """Why a growth check the person asked for grew nothing, with the numbers it read."""
    t, policy = trainer, trainer.growth
    if not t.history.steps:
        return "no growth: no step has been taken yet (the rules read a statistic of the steps)"
    criterion = policy.criterion
    values = criterion(t.engine.stats) if callable(criterion) else t.engine.stats[criterion]
    values = {g: float(v) for g, v in values.items() if g in set(t.net.hidden_groups)}
    if not values:
        return "no growth: the network has no hidden group"
    if len(t.net.groups) >= policy.max_groups:
        return f"no growth: the network holds max_groups={policy.max_groups} groups"
    g = max(values, key=values.get)
    name = criterion if isinstance(criterion, str) else "statistic"
    if policy.threshold is None:
        return f"no growth: every hidden group is cooling down (for {policy.cooldown} steps after it grew)"
    rule = "a z-score across groups" if policy.relative else "its average over about %d steps" % policy.window
    return (f"no growth: no group above {policy.threshold:.1e}; highest {name} at the last step: "
            f"{values[g]:.1e}, group {g} (the rule reads {rule})")


def note(line: str) -> str:
    """A note from the library (genlab.notices) as a line of the lab's message."""
    return f"<span style='color:#555'><i>note</i>: {html.escape(line.removeprefix('genlab: '))}</span>"
