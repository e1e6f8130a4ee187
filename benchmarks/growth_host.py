"""The host's part of a growth event, without a GPU: W5's growth (digits' MLP 64-8-10 from one
group, width-wise, split siblings, every hidden group chosen until 512 groups) replayed as the
CUDA engine would see it (parameters left to the engine: values=False), each part timed alone.

    python benchmarks/growth_host.py [--repeat 20] [--mode width|depth|auto|alternate] [--json out.json]

The parts: copy (Network.copy for the transaction), rules (Grower.check: duplications, the
operations' log and each event's topology picture; the choice is given, it is the GPU's),
index (the CUDA engine's Layout.grown), records (the edge records and operation records the
engine uploads), commit (Network.assign). Median over repeats, us.
"""

import argparse
import json
import math
import statistics
import time

from genlab import GrowthPolicy, Network
from genlab.engines.cuda.layout import Layout
from genlab.growth import Grower, select
from genlab import operations as op


class HostOnly:
    """What Grower.check asks of an engine that grows in place, answered on the host."""

    grows_in_place = True

    def __init__(self, net):
        self.net = net

    def choose_growth(self, eligible, threshold, relative):
        """Every eligible group marked (W5's threshold 0), then the rules' selection: a group
        whose direct input is marked waits (growth.select)."""
        return [(g, 1.0) for g in select(self.net.inputs, set(eligible), dict.fromkeys(eligible, 1.0))]


def event(net: Network, grower: Grower, step: int) -> tuple[dict, Network]:
    times = {}
    t = time.perf_counter()
    work = net.copy(deep=False, pull=False)
    times["copy"] = time.perf_counter() - t
    t = time.perf_counter()
    events, log = grower.check(work, step, HostOnly(work))
    times["rules"] = time.perf_counter() - t
    layout = Layout(net)
    t = time.perf_counter()
    grown = layout.grown(work, log)
    times["index"] = time.perf_counter() - t
    t = time.perf_counter()
    offset = grown.offsets.__getitem__
    size = lambda k: math.prod(grown.shapes[k])
    [o.record(offset, size) for o in log if isinstance(o, op.ParamOp)]
    times["records"] = time.perf_counter() - t
    t = time.perf_counter()
    net.assign(work)
    times["commit"] = time.perf_counter() - t
    return {k: v * 1e6 for k, v in times.items()} | {"new_groups": len(events)}, net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json")
    parser.add_argument("--mode", default="width", help="the growth mode (W5's: width; the default policy's: auto)")
    args = parser.parse_args()
    policy = dict(threshold=0.0, every=20, cooldown=0, max_groups=512, mode=args.mode, sibling="split")
    runs = {}
    for _ in range(args.repeat):
        net, grower = Network.mlp([64, 8, 10], seed=0), Grower(GrowthPolicy(**policy))
        grower.attach(HostOnly(net))  # the engine decides, as the CUDA engine does
        step = 0
        while len(net.groups) < 512:
            step += 20
            before = len(net.groups)
            times, net = event(net, grower, step)
            if not times["new_groups"]:
                raise SystemExit(f"no group grew at {before} groups")
            runs.setdefault(before, []).append(times)
    table = {}
    print(f"{'groups':>6} {'new':>4} " + " ".join(f"{k:>8}" for k in ("copy", "rules", "index", "records", "commit", "total")))
    for before, rows in runs.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("copy", "rules", "index", "records", "commit")}
        med["total"] = sum(med.values())
        table[before] = {**med, "new_groups": rows[0]["new_groups"]}
        print(f"{before:6d} {rows[0]['new_groups']:4d} " + " ".join(f"{med[k]:8.1f}" for k in med))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"us": table, "repeat": args.repeat}, f, indent=1)


if __name__ == "__main__":
    main()
