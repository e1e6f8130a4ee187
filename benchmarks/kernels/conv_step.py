"""One training step of `genlab.bench.kinds`'s conv workload on the CUDA engine (level executor),
for a profiler to look at its kernels:

    ncu -k regex:conv_ --launch-count 5 --section SpeedOfLight python benchmarks/kernels/conv_step.py
"""

from genlab.bench.kinds import case
from genlab.engines.cuda import CudaEngine
from genlab.optim import Adam

if __name__ == "__main__":
    net, x, y = case("conv")
    CudaEngine(net, Adam(1e-3), executor="level").step(x, y)
