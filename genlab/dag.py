"""Graph algorithms over a network's adjacency lists ({group: [groups]}), independent of parameters."""

from __future__ import annotations

import heapq
from collections import deque


def path(out: dict, start: int, goal: int) -> list[int] | None:
    """A path start -> ... -> goal along `out` edges, or None (used to name a cycle)."""
    parent = {start: None}
    queue = deque([start])
    while queue:
        g = queue.popleft()
        if g == goal:
            found = []
            while g is not None:
                found.append(g)
                g = parent[g]
            return found[::-1]
        for d in out[g]:
            if d not in parent:
                parent[d] = g
                queue.append(d)
    return None


def kahn(inputs: dict, out: dict) -> list[int]:
    """Groups in an order where every edge points forward (smallest id first); groups on a cycle
    are left out."""
    indeg = {g: len(inputs[g]) for g in inputs}
    ready = [g for g, d in indeg.items() if d == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        g = heapq.heappop(ready)
        order.append(g)
        for d in out[g]:
            indeg[d] -= 1
            if indeg[d] == 0:
                heapq.heappush(ready, d)
    return order


def levels(inputs: dict, out: dict) -> dict[int, int] | None:
    """Each group's longest path (in edges) from the groups without inputs, keyed in Kahn's order
    (smallest id first); None if a cycle leaves groups out. One pass that pushes each group's
    level on to its consumers as it is ordered: O(groups + edges), read at every growth event, so
    it does not validate the rest of a network (Network.validate does)."""
    waiting = {g: len(v) for g, v in inputs.items()}
    reached = dict.fromkeys(inputs, 0)
    ready = [g for g, n in waiting.items() if not n]
    heapq.heapify(ready)
    level = {}
    while ready:
        g = heapq.heappop(ready)
        level[g] = here = reached[g]
        for d in out[g]:
            if reached[d] <= here:
                reached[d] = here + 1
            waiting[d] -= 1
            if not waiting[d]:
                heapq.heappush(ready, d)
    return level if len(level) == len(inputs) else None


def find_cycle(inputs: dict, candidates: set[int]) -> list[int]:
    """A cycle among `candidates` (the groups Kahn's order left out), first group repeated last."""
    g = min(candidates)
    seen = []
    while g not in seen:  # every group left over by Kahn has an in-edge from another one
        seen.append(g)
        g = min(s for s in inputs[g] if s in candidates)
    cycle = seen[seen.index(g):][::-1]
    return cycle + [cycle[0]]


def reach(start: int, adjacency: dict) -> set[int]:
    """The groups reachable from start along `adjacency`, start included."""
    seen, stack = {start}, [start]
    while stack:
        for n in adjacency[stack.pop()]:
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return seen
