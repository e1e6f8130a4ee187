"""The wavefront executor's host side (engines/cuda/wavefront.py, recurrent_wavefront.py) on a
stand-in GPU (tests/fake_cuda.py): every launch's arguments against its kernel's parameter list,
grids and shared memory against the plan, buffers large enough for every copy, the calls a step,
a prediction and growth make. The kernels' numbers are tested on the CPU (test_wavefront_on_cpu.py)
and on a GPU (test_cuda_wavefront.py)."""

import numpy as np
import pytest

from genlab import Network
from genlab.engines.cuda.wavefront_plan import plan, rows_for
from genlab.optim import Adam


def wavefront_engine(net, **options):
    from genlab.engines.cuda.recurrent import RecurrentCudaEngine

    return RecurrentCudaEngine(net, Adam(lr=1e-3), executor="wavefront", **options)


def names(gpu):
    return [name for name, *_ in gpu.launches]


def test_a_step_launches_the_pass_then_the_update_with_the_plans_sizes(fake_gpu):
    net = Network.elman(6, [32, 16], 3, seed=0)
    engine = wavefront_engine(net)
    assert type(engine).__name__ == "WavefrontCudaEngine"
    for key, value in engine.params.items():  # the master parameters went up and come back
        np.testing.assert_array_equal(value, (net.weights[key[1:]] if key[0] == "W" else net.biases[key[1]]))
    x = np.random.default_rng(0).normal(size=(50, 7, 6)).astype(np.float32)
    y = np.arange(50) % 3
    loss, correct = engine.step(x, y)
    assert names(fake_gpu) == ["wavefront_step", "wavefront_weight_grad", "wavefront_reduce", "optimizer_update"]
    p = plan(net, engine.offsets)
    rows = rows_for(p, 50, resident=132)  # 164 registers a thread: one block an SM
    _, grid, args, shared = fake_gpu.launches[0]
    assert grid == (p.n_slots * -(-50 // rows), 1) and args[15] == rows and args[13] == 7 and args[14] == 50
    assert args[20] == 1 and args[21] == 7  # the weights fit: staged; a chunk holds every step of 7 (CHUNK_STEPS 8)
    assert shared == p.shared_bytes(rows, True, 7) and args[22] == p.region(rows, 7)
    items, chunks = p.items(7)
    assert fake_gpu.launches[1][1] == (len(items), 1)
    assert engine.grad_std.keys() == {g for g in net.groups if g != 0}
    assert set(engine.stats["grad_std"]) == set(engine.grad_std)


def test_weights_too_large_for_shared_memory_are_read_from_global_memory(fake_gpu):
    net = Network.elman(3, [200, 200], 3, seed=0)  # 200 x 400 floats an in-edge set: 320 kB
    engine = wavefront_engine(net)
    x = np.zeros((8, 3, 3), np.float32)
    engine.step(x, np.zeros(8, np.int64))
    _, _, args, shared = fake_gpu.launches[0]
    assert args[20] == 0 and shared == plan(net, engine.offsets).shared_bytes(args[15], False, args[21])


def test_the_chunk_holds_fewer_steps_where_shared_memory_is_short_and_a_bad_chunk_is_refused(fake_gpu):
    """Weights staged (they fit), then as many steps a chunk as the rest of the block's shared
    memory holds, halving from CHUNK_STEPS: here 8 do not fit beside the weights and 4 do."""
    from genlab.engines.cuda.wavefront import CHUNK_STEPS
    from genlab.errors import BackendError
    from genlab.engines.cuda.wavefront_plan import STATIC_SHARED
    from tests.fake_cuda import OPTIN

    net = Network.elman(64, [200, 60], 3, seed=0)  # 211 kB of weights to stage for the first group's backward
    engine = wavefront_engine(net, rows=2)
    x = np.random.default_rng(1).normal(size=(12, 20, 64)).astype(np.float32)
    engine.step(x, np.arange(12) % 3)
    _, _, args, shared = fake_gpu.launches[0]
    p, rows = plan(net, engine.offsets), args[15]
    room = OPTIN - STATIC_SHARED
    assert args[20] == 1 and p.shared_bytes(rows, True, CHUNK_STEPS) > room >= p.shared_bytes(rows, True, 4)
    assert args[21] == 4 and shared == p.shared_bytes(rows, True, 4) and args[22] == p.region(rows, 4)
    assert args[23] == 1  # each step released as it is done
    for bad in (0, 2.5, -1):
        with pytest.raises(BackendError, match="chunk must be a whole number"):
            wavefront_engine(net, chunk=bad)
        with pytest.raises(BackendError, match="release_every must be a whole number"):
            wavefront_engine(net, release_every=bad)


def test_a_group_reading_more_rows_than_shared_memory_holds_is_refused_with_the_bytes(fake_gpu):
    """Each in-edge has its own chunk buffer, so a slot needs rows x the sum of its sources' widths
    (here the output reads 60 groups of 1000: 240 kB of chunk buffers at one row and chunks of one
    step, more than the 223 kB a block may have): the step is refused, saying why, and the
    parameters are untouched."""
    from genlab.errors import BackendError
    from genlab.network import OUTPUT

    net = Network.elman(4, [8], 3, seed=0)
    for _ in range(60):
        net.add_group(1000, inputs=[net.hidden_groups[0]], outputs=[OUTPUT])
    engine = wavefront_engine(net, rows=1)
    before = {k: v.copy() for k, v in engine.params.items()}
    with pytest.raises(BackendError, match=r"needs \d+ bytes of shared memory a block for 1 rows and chunks of 1"):
        engine.step(np.ones((2, 3, 4), np.float32), np.zeros(2, np.int64))
    for key, value in engine.params.items():
        np.testing.assert_array_equal(value, before[key])


def test_a_prediction_larger_than_a_pass_takes_several_and_every_step_reads_each_step(fake_gpu):
    net = Network.elman(4, [8], 2, seed=1)
    engine = wavefront_engine(net, rows=1)
    most = engine.runner.largest_batch()
    x = np.zeros((2 * most + 3, 5, 4), np.float32)
    assert engine.forward(x).shape == (len(x), 2)
    assert names(fake_gpu) == ["wavefront_step"] * 3
    assert [args[19] for _, _, args, _ in fake_gpu.launches] == [0, 0, 0]  # train off: no backward
    engine.every_step = True
    assert engine.forward(x[:10]).shape == (10, 5, 2)
    assert fake_gpu.launches[-1][2][18] == 1  # every_step


def test_pruning_reads_each_hidden_groups_ranges(fake_gpu):
    net = Network.elman(4, [8, 5], 2, seed=1)
    engine = wavefront_engine(net)
    engine.pruning = (True, None)
    engine.step(np.zeros((6, 3, 4), np.float32), np.zeros(6, np.int64))
    assert {g: v.shape for g, v in engine.stats["h_min"].items()} == {g: (net.widths[g],) for g in net.hidden_groups}


def test_growth_reloads_a_new_plan_and_a_checkpoints_state_goes_back(fake_gpu):
    from genlab.growth import duplicate_depth

    net = Network.elman(4, [8], 2, seed=1)
    engine = wavefront_engine(net)
    engine.step(np.zeros((6, 3, 4), np.float32), np.zeros(6, np.int64))
    state = engine.export_state()
    grown = net.copy()
    log: list = []
    duplicate_depth(grown, grown.hidden_groups[0], 1, 5, True, log)
    engine.apply_growth(grown, log)
    assert engine.runner.plan.n_slots == 3
    engine.step(np.zeros((6, 3, 4), np.float32), np.zeros(6, np.int64))
    assert names(fake_gpu)[-4:] == ["wavefront_step", "wavefront_weight_grad", "wavefront_reduce", "optimizer_update"]
    fresh = wavefront_engine(net)
    fresh.import_state(state, net)
    assert fresh.export_state().optimizer.keys() == state.optimizer.keys()


def test_a_network_with_more_groups_than_blocks_at_once_is_refused_and_the_engine_keeps_its_own(fake_gpu,
                                                                                                monkeypatch):
    import pytest

    import fake_cuda
    from genlab.errors import BackendError
    from genlab.growth import duplicate_width

    monkeypatch.setattr(fake_cuda.FakeDevice, "sms", 3)  # three blocks at once
    net = Network.elman(4, [8], 2, seed=1)  # two groups: they fit
    engine = wavefront_engine(net)
    before = engine.params
    grown = net.copy()
    duplicate_width(grown, grown.hidden_groups[0], 1, 5, True, 0.7, [])
    duplicate_width(grown, grown.hidden_groups[0], 1, 6, True, 0.7, [])  # four groups: too many
    with pytest.raises(BackendError, match="4 groups are more than the 3 blocks"):
        engine.apply_growth(grown, [])
    assert engine.params.keys() == before.keys() and engine.runner.plan.n_slots == 2


def test_a_pass_whose_blocks_gave_up_waiting_raises_and_updates_nothing(cpu_gpu):
    """wavefront_step sets the scalars' give-up word and a NaN loss where its blocks waited too
    long for each other (some not resident): on the emulated GPU the update enqueued after the
    pass is refused by its own guard, the step and a prediction raise BackendError, and the
    network, the optimizer state and the step count stay as they were."""
    import pytest

    from genlab import BackendError, Trainer
    from genlab.engines.cuda.constants import WF_GAVE_UP as GAVE_UP

    net = Network.elman(4, [8], 3, seed=0)
    trainer = Trainer(net, backend="cuda", executor="wavefront", seed=0)
    x = np.random.default_rng(1).normal(size=(6, 5, 4)).astype(np.float32)
    y = np.arange(6) % 3
    trainer.step(x, y)
    engine = trainer.engine
    runner = engine.runner
    emulator = cpu_gpu.runner
    launch = emulator.launch

    def gives_up(name, *args, **kw):  # what the kernel does when it gives up
        launch(name, *args, **kw)
        if name == "wavefront_step":
            buffer, offset = cpu_gpu.resolve(runner.scalars, 48)
            words = buffer.data[offset:offset + 48]
            words[:8].view(np.float64)[0] = np.nan
            words[GAVE_UP:GAVE_UP + 4].view(np.int32)[0] = 1

    emulator.launch = gives_up
    before = {name: engine._host(buf) for name, buf in engine.master.kept().items()}  # params, Adam's m, v, t
    steps = trainer.step_count
    with pytest.raises(BackendError, match="gave up waiting"):
        trainer.step(x, y)
    assert [name for name, *_ in cpu_gpu.launches][-4:] == ["wavefront_step", "wavefront_weight_grad",
                                                           "wavefront_reduce", "optimizer_update"]  # refused
    assert trainer.step_count == steps
    for name, blocks in before.items():
        after = engine._host(engine.master.kept()[name])
        for key, block in blocks.items():
            np.testing.assert_array_equal(after[key], block, err_msg=f"{name} {key}")
    with pytest.raises(BackendError, match="gave up waiting"):
        trainer.predict(x)
    emulator.launch = launch
    loss = trainer.step(x, y)["loss"]  # the next pass starts with the word cleared
    assert np.isfinite(loss)


def test_a_training_step_waits_for_the_device_once(fake_gpu, monkeypatch):
    """The pass, the gradients and the guarded update are one CUDA graph (captured at the first
    step of a shape and optimizer setting): a step is two uploads, one replay and one
    synchronisation that brings the scalars and the statistics back together."""
    import pycuda.driver as drv

    net = Network.elman(5, [16, 8], 3, seed=0)
    engine = wavefront_engine(net)
    x = np.random.default_rng(0).normal(size=(9, 4, 5)).astype(np.float32)
    y = np.arange(9) % 3
    engine.step(x, y)
    assert names(fake_gpu) == ["wavefront_step", "wavefront_weight_grad", "wavefront_reduce", "optimizer_update"]
    (graph,) = engine.runner.graphs.values()
    assert graph.replays == 1  # captured: the memset of the zeroed words and the four launches
    calls = []
    for name in ("memset_d32_async", "memcpy_htod_async", "memcpy_dtoh_async", "memcpy_dtoh"):
        monkeypatch.setattr(drv, name, lambda *a, _f=getattr(drv, name), _n=name, **k: (calls.append(_n), _f(*a, **k)))
    monkeypatch.setattr(type(engine.stream), "synchronize", lambda self: calls.append("synchronize"))
    engine.step(x, y)
    assert len(fake_gpu.launches) == 4 and graph.replays == 2  # replayed, not launched again
    assert calls == ["memcpy_htod_async", "memcpy_htod_async", "memcpy_dtoh_async", "memcpy_dtoh_async",
                     "synchronize"]
    assert set(engine.runner.sums()) == set(engine.runner.plan.groups)
    assert set(engine.stats["grad_std"]) == {g for g in net.groups if g != 0}
    engine.optimizer.lr = 5e-4  # a new setting is a new graph; a new shape too, and the old ones stay
    engine.step(x, y)
    assert len(engine.runner.graphs) == 2
    engine.step(x[:5], y[:5])  # (a smaller batch: the buffers are large enough)
    assert len(engine.runner.graphs) == 3
    uploads = len(fake_gpu.buffers)
    engine.step(x, y)  # the first shape comes back with its graph: nothing captured or uploaded again
    assert len(engine.runner.graphs) == 3 and len(fake_gpu.buffers) == uploads
    engine.step(np.concatenate([x, x]), np.concatenate([y, y]))  # larger: the buffers grow, every graph goes
    assert len(engine.runner.graphs) == 1
