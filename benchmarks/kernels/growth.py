"""growth.cu's growth_init and prune_fold: the parameter operations of growth and pruning replayed
on the GPU against the host's duplication; growth_observe/mark/select/rank against the rules."""

import numpy as np
from harness import case, compare, done, engines, flat, same

from genlab.growth import Scores, duplicate_depth, duplicate_width
from genlab.operations import Noise

net, x, y = case(4, width=(2, 60), fan_in=(1, 4))
gpu, ref = engines(net)
rng = np.random.default_rng(0)
for step in range(1, 6):
    log = [Noise(7, step)]
    chosen = []
    for g in rng.permutation(net.hidden_groups):  # never a group and its direct input
        if len(chosen) < 3 and not any(c in net.inputs(g) or g in net.inputs(c) for c in chosen):
            chosen.append(int(g))
    for g in chosen:
        if rng.random() < 0.5:
            duplicate_depth(net, g, step, 7, bool(rng.random() < 0.7), log)
        else:
            duplicate_width(net, g, step, 7, bool(rng.random() < 0.7), 0.5, log)
    gpu.apply_growth(net.copy(), log)
    ref.apply_growth(net, log)
    compare(f"parameters after growth step {step} ({len(log) - 1} operations)", flat(gpu.params), flat(ref.params), 1e-6)
L = gpu.layout
ema = rng.random(len(L.groups))
seen = np.ones(len(L.groups), np.int32)
gpu.drv.memcpy_htod(gpu.dev.scores.ema, ema)
gpu.drv.memcpy_htod(gpu.dev.scores.seen, seen)
reference = Scores()
reference.ema = {g: ema[s] for s, g in enumerate(L.groups) if g in net.hidden_groups}
want = reference.choose(net.inputs, set(net.hidden_groups), set(net.hidden_groups), 0.5, False)
got = gpu.choose_growth(set(net.hidden_groups), 0.5, False)
same("growth_mark/select/rank: the chosen groups", got, want)
raise SystemExit(done())
