"""optim.cu's optimizer_update: SGD with momentum and Adam, five steps, against the NumPy update."""

from harness import case, compare, done, engines, flat, timed

from genlab.engines.cuda.executors import passes
from genlab.optim import SGD, Adam

for optimizer in (SGD(lr=0.05, momentum=0.9), Adam(lr=1e-2)):
    net, x, y = case(3, width=(1, 90))
    gpu, ref = engines(net, "level", optimizer)
    print(f"{optimizer}: {net.n_params} parameters")
    for _ in range(5):
        gpu.forward(x)
        gpu.backward(y)
        gpu.update()
        ref.forward(x)
        ref.backward(y)
        ref.update()
    compare("parameters after five updates", flat(gpu.params), flat(ref.params), 1e-4)
    timed("optimizer_update over every parameter", gpu, lambda: passes.update(gpu))
raise SystemExit(done())
