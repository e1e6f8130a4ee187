"""The topology pictures of a growth step, one after each duplication, made incrementally.

A growth step records the topology each of its events leaves (GrowthEvent.after), so that the lab
and the animations can step through events. Network.topology() is O(groups + edges) (the sorted
edge list, the levels, the drawing), so a step that adds k groups to a network of n paid O(k n)
for its pictures: at 500 groups and 254 new ones, most of the step. StepPictures makes the first
picture in full and then applies each duplication's own edit: the new group, its edges, its level
and, for a depth-wise copy, the levels it pushes down. Each picture is still a separate dict (its
dicts and lists copied: C-speed copies of references), equal to what Network.topology() gives.
"""

from __future__ import annotations

import bisect

from . import shapes
from .kinds import get_kind
from .network import Network


class StepPictures:
    """Pictures of `net` as a growth step edits it: after(net, g, new) after each duplication of
    g into `new` (the network already edited), equal to net.topology() at that moment."""

    def __init__(self, net: Network, first: dict | None = None):
        """first: net.topology() when the caller has it (it is copied, not changed)."""
        first = net.topology() if first is None else first
        self._widths, self._levels = dict(first["widths"]), dict(first["levels"])
        self._edges = list(first["edges"])  # sorted (src, dst) pairs
        self._labels, self._shapes = dict(first["labels"]), dict(first["shapes"])

    def after(self, net: Network, g: int, new: int) -> dict:
        """The picture after `new` was made from g: depth-wise (new reads g and took over g's
        consumers, which now read new) or width-wise (a sibling with g's inputs and consumers)."""
        self._widths[new] = net.widths[new]
        kind = get_kind(net.kinds[new])
        if not kind.sized_by_width:
            self._labels[new] = kind.label(shapes.spec(net, new))
            self._shapes[new] = kind.node_shape
        depth = g in net.inputs(new)
        for d in net.outputs(new):
            if depth:
                self._edges.pop(bisect.bisect_left(self._edges, (g, d)))
            bisect.insort(self._edges, (new, d))
        for s in net.inputs(new):
            bisect.insort(self._edges, (s, new))
        # levels follow the edges without a delay (Network.levels); read per group, not
        # net.forward_edges(), which copies every list when the network has recurrent edges
        self._levels[new] = max((self._levels[s] + 1 for s in net.inputs(new) if not net.delay(s, new)), default=0)
        below = [new]
        while below:  # a longest path only grows: an edge stretched into two, or a new sibling
            x = below.pop()
            for d in net.outputs(x):
                if not net.delay(x, d) and self._levels[d] <= self._levels[x]:
                    self._levels[d] = self._levels[x] + 1
                    below.append(d)
        return {"widths": dict(self._widths), "edges": list(self._edges), "levels": dict(self._levels),
                "delays": [[s, d, k] for (s, d), k in sorted(net.delays.items())],
                "labels": dict(self._labels), "shapes": dict(self._shapes)}
