import sys, numpy as np, tempfile, pathlib
sys.path.insert(0, "tests")
from genlab import Trainer, Network, GrowthPolicy, datasets
data = datasets.load("digits"); X, y = data.train
def run(executor, steps, save_at=None, reload_at=None, grow=True):
    policy = GrowthPolicy(threshold=0.0, every=10, cooldown=5, max_groups=20, prune=True, mode="alternate") if grow else None
    t = Trainer(Network.mlp([64, 16, 10], seed=1), backend="cuda", executor=executor, seed=2, growth=policy)
    for s in range(steps):
        if s == save_at:
            p = pathlib.Path(tempfile.mkdtemp()) / "c"; t.save(p); t = Trainer.load(p, backend="cuda")
        if s == reload_at:
            t.engine.load(t.net)
        i = (s * 32) % (len(X) - 32); t.step(X[i:i+32], y[i:i+32])
    return t
def diff(a, b):
    na, nb = a.net, b.net
    if na.edges != nb.edges: return "edges differ"
    return max(float(np.abs(na.weights[k] - nb.weights[k]).max()) for k in na.weights)
for ex in ["level", "dataflow_rows"]:
    for grow in [False, True]:
        w1, w2 = run(ex, 60, grow=grow), run(ex, 60, grow=grow)
        r = run(ex, 60, save_at=25, grow=grow)
        l = run(ex, 60, reload_at=25, grow=grow)
        print(ex, "grow" if grow else "fixed", "repeat:", diff(w1, w2), "resume:", diff(w1, r), "reload:", diff(w1, l), "resume vs reload:", diff(r, l), flush=True)
