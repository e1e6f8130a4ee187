"""What every kernel harness shares (llm.c's dev/cuda habit): a random case, the NumPy reference
(the serial engine in float64), outputs poisoned with NaN before the kernel runs, a comparison,
and a time (the kernels captured in a CUDA graph, CUDA events around many replays).

Each script here checks one family of kernels: `python benchmarks/kernels/<family>.py` on a GPU
machine; `python benchmarks/kernels/all.py` runs every one. Exit status 1 if a check fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from genlab import Network  # noqa: E402
from genlab.bench import time_graph  # noqa: E402
from genlab.engines import SerialEngine  # noqa: E402
from genlab.engines.cuda import CudaEngine, runtime  # noqa: E402
from genlab.errors import TrainingError  # noqa: E402
from genlab.optim import SGD, Adam  # noqa: E402

NAN = 0x7FC00000  # a quiet NaN: an element a kernel fails to write fails the comparison
failures: list[str] = []


def case(seed: int = 0, levels: int = 4, per_level: int = 6, width=(1, 300), fan_in=(1, 8), batch: int = 100):
    """A random DAG with random biases and a batch, (net, x, y), whose pre-activations all keep
    clear of ReLU's kink: a z within float32 rounding of 0 may take the other side of the mask in
    float32 than in the float64 reference, and that row's gradients then differ by ~1e-2 with no
    kernel at fault. The first such draw from `seed` on."""
    for attempt in range(seed, seed + 100):
        rng = np.random.default_rng(attempt)
        net = Network.random_dag(levels, per_level, width=width, fan_in=fan_in, seed=attempt,
                                 n_inputs=int(rng.integers(1, 80)), n_outputs=int(rng.integers(2, 30)))
        for b in net.biases.values():
            b[:] = rng.normal(size=b.shape) * 0.1
        x, y = rng.normal(size=(batch, net.n_inputs)).astype(np.float32), rng.integers(0, net.n_outputs, batch)
        if clear_of_kinks(net, x):
            return net, x, y
    raise RuntimeError("no case clear of ReLU's kink in 100 draws")


def clear_of_kinks(net, x, margin: float = 1e-6) -> bool:
    """Whether every hidden pre-activation of the float64 forward pass is at least margin x its
    group's largest |z| away from 0."""
    ref = SerialEngine(net, SGD(), dtype="float64")
    h, p = {0: x.astype(np.float64)}, ref.params
    for g in ref.order:
        z = p[("b", g)] + sum(h[s] @ p[("W", s, g)].T for s in ref.inputs[g])
        if g != 1 and np.abs(z).min() < margin * np.abs(z).max():
            return False
        h[g] = np.maximum(z, 0) if g != 1 else z
    return True


def engines(net, executor: str = "level", optimizer=None):
    """(the CUDA engine, the float64 serial reference) on the same parameters."""
    optimizer = optimizer or SGD(lr=0.05, momentum=0.9)
    return CudaEngine(net, optimizer, executor=executor), SerialEngine(net, optimizer, dtype="float64")


def check_steps(executor: str, steps: int = 3) -> tuple[CudaEngine, np.ndarray, bool]:
    """A random DAG's training steps on `executor` against the float64 serial engine, outputs
    poisoned first: the loss and the gradients of each step, the parameters after the last.
    Returns the CUDA engine, its batch and whether every comparison passed."""
    before = len(failures)
    net, x, y = case(6, levels=6, per_level=8, width=(1, 70), batch=300)
    gpu, ref = engines(net, executor)
    gpu.ensure_batch(len(x))
    poison(gpu, "act", "dz", "grads")
    for step in range(steps):
        loss, _ = gpu.step(x, y)
        want, _ = ref.step(x, y)
        compare(f"step {step}: loss", loss, want, 1e-5)
        compare(f"step {step}: gradients", flat(gpu.grads), flat(ref.grads), 1e-5)
    compare(f"parameters after {steps} steps", flat(gpu.params), flat(ref.params), 1e-4)
    return gpu, x, len(failures) == before


def check_passes(net, x, y, label: str) -> CudaEngine:
    """One forward and backward pass of `net` (conv or attention groups, or dense) on the level
    executor against the float64 serial engine, outputs poisoned first: every hidden group's h
    and every gradient. Returns the CUDA engine."""
    from genlab.engines.cuda.executors import passes

    gpu, ref = engines(net)
    rows = len(x) * gpu.layout.kinds.tokens
    gpu.ensure_batch(rows)
    poison(gpu, "act", "dz", "grads")
    gpu.put_batch(x, y)
    passes.forward(gpu, rows)
    passes.backward(gpu, rows)
    gpu.stream.synchronize()
    ref.forward(x)
    ref.backward(y)
    got = activations(gpu, net, rows)
    for g in net.hidden_groups:
        compare(f"{label}: h of group {g}", got[g], ref._h[g].reshape(got[g].shape), 1e-5)
    compare(f"{label}: every gradient", flat(gpu.grads), flat(ref.grads), 1e-5)
    return gpu


def poison(engine: CudaEngine, *names: str) -> None:
    L = engine.layout
    for name in names:
        words = {"act": L.n_cols * engine.batch_cap, "dz": L.n_cols * engine.batch_cap, "grads": L.n_params}[name]
        buf = engine.dev.parameters.grads if name == "grads" else getattr(engine.dev.rows, name)
        engine.drv.memset_d32(buf, NAN, words)


def activations(engine: CudaEngine, net, batch: int, name: str = "act") -> dict[int, np.ndarray]:
    """Every group's block of `name` (act or dz), copied back."""
    L, out = engine.layout, {}
    flat = np.empty(L.n_cols * engine.batch_cap, np.float32)
    engine.drv.memcpy_dtoh(flat, getattr(engine.dev.rows, name))
    for g in net.groups:
        s = L.slot[g]
        w, c0 = int(L.width[s]), int(L.col_off[s])
        block = flat[c0 * engine.batch_cap:][:batch * w].reshape(batch, w) if not engine.ld else \
            flat.reshape(-1, L.n_cols)[:batch, c0:c0 + w]
        out[g] = block.copy()
    return out


def compare(what: str, got, want, tolerance: float) -> None:
    """Relative error ||got - want|| / ||want|| against a tolerance; non-finite elements fail."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    error = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30) if np.isfinite(got).all() else np.inf
    ok = error <= tolerance
    if not ok:
        failures.append(what)
    print(f"  {'ok  ' if ok else 'FAIL'} {what:<44} relative error {error:.2e} (tolerance {tolerance:.0e})")


def flat(params: dict) -> np.ndarray:
    return np.concatenate([params[k].ravel() for k in sorted(params, key=str)])


def timed(what: str, engine: CudaEngine, enqueue, repeats: int = 200) -> float:
    us = time_graph(engine, enqueue, repeats)
    print(f"       {what:<44} {us:9.1f} us")
    return us


def done() -> int:
    if failures:
        print(f"{len(failures)} check(s) failed: {', '.join(failures)}")
    return 1 if failures else 0


def same(what: str, got, want) -> None:
    """An exact check (lists of ids, counts)."""
    ok = got == want
    if not ok:
        failures.append(what)
    print(f"  {'ok  ' if ok else 'FAIL'} {what:<44} {'equal' if ok else f'{got!r} != {want!r}'}")


def variant_text(text: str, file: str, defines: dict, edits: list) -> str:
    """`file`'s translation unit with these (old, new) edits made and these #defines put first;
    SystemExit naming the edit whose text the file no longer holds."""
    for old, new in edits:
        if old not in text:
            raise SystemExit(f"{file}: a variant's edit is not in the source any more: {old[:60]!r}")
        text = text.replace(old, new)
    return "".join(f"#define {k} {v}\n" for k, v in defines.items()) + text


def use_variant(file: str, kernel: str, defines: dict, edits: list, whole: str | None = None) -> None:
    """Make the next load of `kernel` come from `file` built as variant_text says (or from `whole`,
    a complete translation unit): how the variant harnesses build a numbered variant."""
    original = runtime.source.__wrapped__ if hasattr(runtime.source, "__wrapped__") else runtime.source

    def source(files=None, precision=runtime.FP32):
        text = original(files, precision)
        if files != [file]:
            return text
        return whole if whole is not None else variant_text(text, file, defines, edits)

    source.__wrapped__ = original
    runtime.source = source
    state = runtime.kernels()
    state.files.discard(file)
    state.functions.pop(kernel, None)
    runtime.load(file)


def use_split(split: int) -> None:
    """Every executor cuts the output group's in-edges `split` at a time (Executor.split, a class
    attribute that the task lists and the launches read): a harness variant."""
    from genlab.engines.cuda.executors import EXECUTORS

    for cls in EXECUTORS.values():
        cls.split = split


def warmed(net, batch: int, executor: str, lr: float, steps: int = 5) -> tuple[CudaEngine, np.ndarray, np.ndarray]:
    """A CUDA engine on `executor` after `steps` training steps on a batch of `net`, and that batch
    (a step a diagnostic variant's numbers make non-finite is let go)."""
    from genlab.bench import batch_of

    x, y = batch_of(net, batch)
    engine = CudaEngine(net, Adam(lr=lr), executor=executor)
    for _ in range(steps):
        try:
            engine.step(x, y)
        except TrainingError:
            pass
    return engine, x, y
