"""Training on the GPUs of one host against one GPU, in one run (every process runs this):

    torchrun --nproc-per-node 2 -m genlab.bench.multi_gpu [--out benchmarks/results]

- data parallel: W1 and W3 at a total batch of 4096, the CUDA engine on each GPU with the
  gradients summed through NCCL, against the best of the CUDA engine's executors on one GPU
  (and, on one GPU, half the batch alone and through the replica path without collectives);
- partitioned: a random DAG of 4096 groups of 64 at a batch of 16384, the partitioned engine
  with 1-8 micro-batches, against the same engine on one GPU; then a sweep of group widths and
  batches (with the CUDA engine on one GPU beside it where it fits);
- a break-even model of partitioning, fitted on the one-GPU times and checked against the
  measured speedups over group widths and batches.

Writes <out>/<device>/multi_gpu.json from the first process. Times: the median of many steps
(each ends in a host synchronisation) between CUDA events, after a warm-up; inputs are random.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from ..distributed import World
from ..distributed.mirror import Mirror
from ..network import Network
from ..optim import Adam
from .timing import time_cuda
from .workloads import WORKLOADS, batch_of

DAG = dict(levels=64, per_level=64, fan_in=4)  # the partitioned workload: 4096 groups


def _slowest(world: World, ms: float) -> float:
    """The slowest process's time (a step ends when every process's has)."""
    value = np.array([ms])
    world.max(value)
    return float(value[0])


def _one_gpu(world: World, fn) -> dict:
    """fn() on the first process alone while the others wait; its result on every process."""
    import torch.distributed as dist

    result = None
    if world.rank == 0:
        try:
            result = fn()
        except Exception as e:  # said in the results; the other processes must not wait for ever
            result = {"error": f"{type(e).__name__}: {e}"}
    box = [result]
    dist.broadcast_object_list(box, 0)
    return box[0]


def data_parallel(world: World, name: str, batch: int, repeats: int) -> dict:
    from ..engines.cuda import CudaEngine

    net = WORKLOADS[name][1]()
    x, y = batch_of(net, batch)

    def alone():
        times, half, replica = {}, {}, {}
        for executor in ("level", "dataflow_rows"):
            engine = CudaEngine(net.copy(), Adam(), executor=executor)
            times[executor] = time_cuda(lambda: engine.step(x, y), repeats)
            # what a GPU's share of the batch costs alone: the rest of a data-parallel step is the exchange
            half[executor] = time_cuda(lambda: engine.step(x[:batch // 2], y[:batch // 2]), repeats)
            # and the replica path on that share without any collective (one Mirror copy)
            twin = CudaEngine(net.copy(), Adam(), executor=executor)
            replica[executor] = time_cuda(lambda: twin.step(x[:batch // 2], y[:batch // 2], Mirror(batch // 2, 1)),
                                          repeats)
        return {"whole": times, "half": half, "replica": replica}

    alone_ms = _one_gpu(world, alone)
    one = alone_ms["whole"]
    part = world.slice(batch)
    share = world.share(part.stop - part.start, batch)
    xs, ys = x[part], y[part]
    dp = {}
    for executor in ("level", "dataflow_rows"):
        engine = CudaEngine(net.copy(), Adam(), executor=executor)
        dp[executor] = _slowest(world, time_cuda(lambda: engine.step(xs, ys, share), repeats))
    ms = min(dp.values())
    grads = world.share(1, 1)
    grads.on_stream(engine.stream.handle)
    buffer = grads.buffer(int(engine.dev.parameters.grads), engine.layout.n_params)
    allreduce = _slowest(world, time_cuda(lambda: (grads.sum(buffer), engine.stream.synchronize()), repeats))
    flat = np.concatenate([p.ravel() for _, p in sorted(engine.params.items())])
    low, high = flat.copy(), flat.copy()
    world.min(low)
    world.max(high)
    best = min(one, key=one.get)
    return {"workload": name, "description": WORKLOADS[name][0], "batch": batch, "rows_per_gpu": len(ys),
            "one_gpu_ms": one, "one_gpu_best": best, "one_gpu_half_batch_ms": alone_ms["half"],
            "one_gpu_half_batch_replica_path_ms": alone_ms["replica"],
            "data_parallel_ms": dp, "speedup": one[best] / ms,
            "allreduce_ms": allreduce, "gradient_mb": 4 * engine.layout.n_params / 2**20,
            "replicas_identical": bool(np.array_equal(low, high))}


def _partitioned_ms(world: World, net: Network, batch: int, micros, repeats: int) -> dict:
    """{micro-batches: ms a step} of the partitioned engine over `world`."""
    from ..distributed.partitioned import PartitionedEngine

    x, y = batch_of(net, batch)
    engine = PartitionedEngine(net.copy(), Adam(), world, micro_batches=1)
    times = {}
    for m in micros:
        engine.micro_batches = m
        times[m] = _slowest(world, time_cuda(lambda: engine.step(x, y), repeats, warmup=2))
    return times


def partitioned(world: World, width: int, batch: int, micros, repeats: int, cuda_engine: bool = False) -> dict:
    from ..partition import plan

    net = Network.random_dag(DAG["levels"], DAG["per_level"], width, DAG["fan_in"], seed=0)
    alone = World.alone("cuda")

    def one_gpu():
        times = {"partitioned_engine": _partitioned_ms(alone, net, batch, (1,), repeats)[1]}
        if cuda_engine:
            from ..engines.cuda import CudaEngine

            x, y = batch_of(net, batch)
            try:
                engine = CudaEngine(net.copy(), Adam(), executor="level")
                times["cuda_engine_level"] = time_cuda(lambda: engine.step(x, y), repeats)
            except Exception as e:
                times["cuda_engine_level"] = f"{type(e).__name__}: {e}"
        return times

    one = _one_gpu(world, one_gpu)
    two = _partitioned_ms(world, net, batch, micros, repeats)
    best = min(two, key=two.get)
    cut = plan(net, world.size, methods=("pipeline",))
    return {"groups": len(net.groups) - 1, "levels": DAG["levels"], "width": width, "batch": batch,
            "one_gpu_ms": one, "micro_batches_ms": {str(m): t for m, t in two.items()}, "best_micro_batches": best,
            "speedup": one["partitioned_engine"] / two[best], "cut_bytes_per_sample": cut.cut_bytes,
            "imbalance": cut.imbalance}


def break_even(points: list[dict], parts: int) -> dict:
    """A process's level costs max(a, b * rows) per micro-batch: a, the fixed cost of a level (its
    launches from Python), b, its compute per row; with S parts and m micro-batches a step takes
    (m + S - 1) * (L / S) * max(a, b * B / m) against L * max(a, b * B) on one GPU. Partitioning
    pays once a micro-batch's work outweighs its launches (b * B / m > a), and then by up to
    S * m / (m + S - 1). a is the least time a level took; b per width from its largest batch;
    the predictions are set beside the measured speedups."""
    per_level = [(p["width"], p["batch"], p["one_gpu_ms"]["partitioned_engine"] / p["levels"]) for p in points]
    a = min(t for _, _, t in per_level)  # the least work a level was given: launch-bound
    fits = {}
    for width in sorted({w for w, _, _ in per_level}):
        B, t = max((B, t) for w, B, t in per_level if w == width)  # the most: compute-bound
        fits[width] = (a, max(t - a, 0.0) / B)
    checked = []
    for p in points:
        a, b = fits[p["width"]]
        L, B = p["levels"], p["batch"]
        one = L * max(a, b * B)
        predicted = {m: one / ((m + parts - 1) * (L / parts) * max(a, b * B / m)) for m in map(int, p["micro_batches_ms"])}
        measured = {int(m): p["one_gpu_ms"]["partitioned_engine"] / t for m, t in p["micro_batches_ms"].items()}
        checked.append({"width": p["width"], "batch": B, "predicted_speedup": predicted, "measured_speedup": measured})
    pays = {w: {"a_ms_per_level": a, "b_ms_per_row": b, "rows_per_micro_batch_to_break_even": a / b if b else None}
            for w, (a, b) in fits.items()}
    return {"model": break_even.__doc__.split("\n\n")[0].replace("\n    ", " "), "fits": pays, "points": checked}


def main(argv=None) -> None:
    import torch

    parser = argparse.ArgumentParser(prog="genlab.bench.multi_gpu")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=400, help="the sweep stops adding shapes after this")
    parser.add_argument("--quick", action="store_true", help="fewer shapes (a check that it runs)")
    args = parser.parse_args(argv)
    world = World.start()
    started = time.perf_counter()
    results = {"gpus": world.size, "device": torch.cuda.get_device_name(world.device), "python": platform.python_version(),
               "torch": torch.__version__, "nccl": ".".join(map(str, torch.cuda.nccl.version()))}
    folder = Path(args.out) / results["device"].replace(" ", "_")

    def save(what: str) -> None:  # after each part, so that a run cut short keeps what it measured
        results["seconds"] = round(time.perf_counter() - started, 1)
        if world.rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "multi_gpu.json").write_text(json.dumps(results, indent=1))
            print(f"{what} done at {results['seconds']} s", flush=True)

    micros = (1, 2, 4, 8) if not args.quick else (1, 4)
    main_point = partitioned(world, 64, 16384, micros, args.repeats)
    sweep = [main_point]
    results["partitioned"] = {"speedup": main_point["speedup"], "target": 1.5, "main": main_point, "sweep": sweep}
    save("partitioned")
    dp = []
    for name in ("W1", "W3"):
        dp.append(data_parallel(world, name, 4096, args.repeats))
        results["data_parallel"] = {"speedup": min(d["speedup"] for d in dp), "target": 1.8, "workloads": dp}
        save(f"data parallel {name}")
    shapes = [(64, 8192), (8, 256), (8, 4096), (32, 1024), (32, 4096), (32, 16384), (128, 2048)] if not args.quick else [(8, 256)]
    for width, batch in shapes:
        late = np.array([time.perf_counter() - started > args.seconds], np.float64)
        world.max(late)  # every process stops at the same shape
        if late[0]:
            results["partitioned"]["skipped_for_time"] = shapes[shapes.index((width, batch)):]
            break
        sweep.append(partitioned(world, width, batch, micros, max(5, args.repeats // 2), cuda_engine=width == 64))
        results["partitioned"]["break_even"] = break_even(sweep, world.size)
        save(f"sweep {width} x {batch}")
    world.close()


if __name__ == "__main__":
    main()
