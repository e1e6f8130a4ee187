"""Split-K in the MT tier (wide.cu's gather_parts): a group whose edges hold much more k than its
level's others would hold the level's launch alone (a source read by ten consumers where most
have four), so the task lists (topology.cu's split_parts) cut a tile's edges into parts of about
SPLIT_TILES x MT values of k (at most SPLIT_PARTS), a task a part, the parts of a tile one after another. Each
part's block writes its MT x MT sums into its task's slot of `split_partials` and counts itself in
the tile's ticket (its first part's); the last to arrive adds the parts in order (deterministic)
and finishes the tile. The scratch is sized for the MT tier's largest launch and shared by
every launch (they run one after another on the engine's stream)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..constants import MT

if TYPE_CHECKING:
    from ..context import PassContext
    from ..layout import Layout
    from ..memory import Memory
    from .base import Tier


def _slots(layout: "Layout", tier: "Tier", cap: int) -> int:
    """(tasks x batch tiles) of the tier's largest forward or backward launch."""
    forward, backward, _ = layout.tiers.get(tier.prefix, ((), (), 0))
    tasks = max([count for _, count in (*forward, *backward)], default=0)
    return tasks * ((cap + tier.size - 1) // tier.size)


def scratch(layout: "Layout", tiers, cap: int, mem: "Memory") -> dict:
    """The partial sums and tickets (zeroed) of the MT tier's launches, allocated from `mem`: an
    MT x MT tile a task and batch tile, a ticket each; empty without an MT tier."""
    tier = next((t for t in tiers if t.lowest and t.size == MT), None)
    tickets = _slots(layout, tier, cap) if tier else 0
    if not tickets:
        return {}
    new = {"split_partials": mem.new(4 * tickets * MT * MT, "split-K partial sums"),
           "split_tickets": mem.new(4 * tickets, "split-K tickets")}
    mem.fill(new["split_tickets"], 0, tickets)
    return new


def arguments(e: "PassContext") -> dict:
    """The wider tiers' forward and backward kernels' arguments for split-K, by name: partials,
    tickets (null where no tier splits: the WT tier's tasks are all of one part)."""
    r = e.dev.rows
    return {"partials": r.split_partials, "tickets": r.split_tickets}  # NULL where no tier splits
