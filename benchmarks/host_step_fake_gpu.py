"""The host side of a CUDA training step, measured without a GPU: the stand-in GPU of the tests
(tests/fake_cuda.py: every launch checked against its kernel's parameters, none run) under
Trainer.fit on digits, ms a step for the level and dataflow_rows executors. Run it on two trees,
alternated, to see whether a change costs host time:

    (cd TREE && PYTHONPATH=TREE python benchmarks/host_step_fake_gpu.py TREE)

The stand-in computes nothing (the loss reads 0), so growth does not fire: this is the step's path.
"""

import sys
import time

import numpy as np
from _pytest.monkeypatch import MonkeyPatch
from sklearn.datasets import load_digits

sys.path.insert(0, sys.argv[1] + "/tests")
from fake_cuda import install  # noqa: E402

install(MonkeyPatch())

from genlab import GrowthPolicy, Network, Trainer  # noqa: E402

X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)
out = {}
for executor in ("level", "dataflow_rows"):
    trainer = Trainer(Network.mlp([64, 8, 10], seed=0), backend="cuda", executor=executor, seed=0, batch_size=64,
                      growth=GrowthPolicy(every=20))
    for _ in range(20):  # graphs captured
        trainer.step(X[:64], y[:64])
    start = time.perf_counter()
    trainer.fit(X[:1280], y[:1280], epochs=15)  # 300 steps
    out[executor] = round((time.perf_counter() - start) / 300 * 1e3, 4)
print(out)
