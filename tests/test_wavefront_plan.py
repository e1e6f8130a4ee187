"""The wavefront kernel's plan (genlab/engines/cuda/wavefront_plan.py), checked without a GPU: its
arrays run through `emulate`, a NumPy transcription of cuda/wavefront.cu that indexes memory
exactly as the kernel does (one flat activation buffer at the plan's offsets, the CSR edges, the
weight offsets, the row blocks, the weight-gradient items and their time chunks), against
backpropagation through time on the serial engine. The kernel itself is checked against the
serial engine on a GPU (tests/test_cuda_wavefront.py)."""

import math

import numpy as np
import pytest
from conftest import recurrent_cases

from genlab import INPUT, Network
from genlab.engines import SerialEngine
from genlab.engines.cuda.constants import THREADS, WF_COLS, WF_ROWS, WF_TILE
from genlab.engines.cuda.wavefront_plan import plan, refusal, rows_for
from genlab.errors import BackendError
from genlab.optim import SGD


def flat_params(net):
    """The recurrent CUDA engine's flat layout: every weight block, then every bias."""
    keys = [("W", s, d) for (s, d) in net.weights] + [("b", g) for g in net.biases]
    arrays = [net.weights[k[1:]] if k[0] == "W" else net.biases[k[1]] for k in keys]
    offsets = dict(zip(keys, np.cumsum([0] + [a.size for a in arrays[:-1]]).tolist()))
    return np.concatenate([a.ravel() for a in arrays]).astype(np.float64), offsets


def emulate(p, params, x, y, rows, every_step=False):
    """What wavefront_step, wavefront_weight_grad and wavefront_reduce compute, block by block in
    an order the kernel's flags allow (every block's forward, then every backward), in float64."""
    batch, steps = x.shape[0], x.shape[1]
    n_rb, out = -(-batch // rows), p.n_slots - 1
    act_off = p.act_off(steps, batch)
    act = np.full(p.n_cols * steps * batch, np.nan)
    dz = np.full_like(act, np.nan)
    xf = x.reshape(-1)
    stats = np.zeros((p.n_slots, 3))
    hmin, hmax = np.full((n_rb, p.n_cols), np.inf), np.full((n_rb, p.n_cols), -np.inf)
    loss, right = 0.0, 0
    fwd = np.zeros((p.n_slots, n_rb), int)

    def rows_of(base, stride, n, w):
        return np.stack([base[r * stride: r * stride + w] for r in range(n)])

    for t in range(steps):  # forward: slot after slot within a step is an order the flags allow
        for s in range(p.n_slots):
            w = int(p.width[s])
            for r in range(n_rb):
                b0, n = r * rows, min(rows, batch - r * rows)
                if s == out and not (every_step or t == steps - 1):
                    fwd[s, r] += 1
                    continue
                z = np.zeros((n, w))
                for e in range(p.in_ptr[s], p.in_ptr[s + 1]):
                    src, k = int(p.in_src[e]), int(p.in_delay[e])
                    ws = p.n_inputs if src < 0 else int(p.width[src])
                    if t < k:
                        continue
                    if src < 0:
                        tile = rows_of(xf[(b0 * steps + t - k) * p.n_inputs:], steps * p.n_inputs, n, ws)
                    else:
                        assert fwd[src, r] >= t - k + 1, "a source read before it was published"
                        tile = rows_of(act[act_off[src] + ((t - k) * batch + b0) * ws:], ws, n, ws)
                    W = params[p.in_woff[e]: p.in_woff[e] + w * ws].reshape(w, ws)
                    z += tile @ W.T
                v = z + params[p.bias_off[s]: p.bias_off[s] + w]
                if s != out:
                    v = np.maximum(v, 0)
                base = act_off[s] + (t * batch + b0) * w
                act[base: base + n * w] = v.ravel()
                if s == out:
                    count = batch * steps if every_step else batch
                    labels = y[b0:b0 + n, t] if every_step else y[b0:b0 + n]
                    m = v.max(axis=1, keepdims=True)
                    e_ = np.exp(v - m)
                    total = e_.sum(axis=1, keepdims=True)
                    loss += float(np.sum(np.log(total[:, 0]) - (v[np.arange(n), labels] - m[:, 0])) / count)
                    right += int(np.sum(v.argmax(axis=1) == labels))
                    g = (e_ / total - np.eye(w)[labels]) / count
                    dz[base: base + n * w] = g.ravel()
                    stats[s] += [g.sum(), (g * g).sum(), (v * g).sum()]
                else:
                    c0 = p.col_off[s]
                    lo, hi = v.min(axis=0), v.max(axis=0)
                    hmin[r, c0:c0 + w] = np.minimum(hmin[r, c0:c0 + w], lo)
                    hmax[r, c0:c0 + w] = np.maximum(hmax[r, c0:c0 + w], hi)
                fwd[s, r] += 1
    bwd = np.zeros((p.n_slots, n_rb), int)
    bwd[out] = steps
    for t in reversed(range(steps)):  # backward: later slots first within a step
        for s in reversed(range(out)):
            w = int(p.width[s])
            for r in range(n_rb):
                b0, n = r * rows, min(rows, batch - r * rows)
                dh = np.zeros((n, w))
                for e in range(p.out_ptr[s], p.out_ptr[s + 1]):
                    d, tt = int(p.out_dst[e]), t + int(p.out_delay[e])
                    wd = int(p.width[d])
                    if tt >= steps or (d == out and not every_step and tt != steps - 1):
                        continue
                    assert bwd[d, r] >= steps - tt, "a consumer's dz read before it was published"
                    tile = rows_of(dz[act_off[d] + (tt * batch + b0) * wd:], wd, n, wd)
                    W = params[p.out_woff[e]: p.out_woff[e] + wd * w].reshape(wd, w)
                    dh += tile @ W
                base = act_off[s] + (t * batch + b0) * w
                h = act[base: base + n * w].reshape(n, w)
                dz[base: base + n * w] = np.where(h > 0, dh, 0).ravel()
                stats[s] += [dh.sum(), (dh * dh).sum(), (h * dh).sum()]
                bwd[s, r] += 1
    items, chunks = p.items(steps)
    partials = np.full((chunks, p.n_params), np.nan)
    for e, j0, q0, chunk, s in items.tolist():
        w = int(p.width[s])
        src, k = (-2, 0) if e < 0 else (int(p.in_src[e]), int(p.in_delay[e]))
        ws = 1 if src == -2 else (p.n_inputs if src < 0 else int(p.width[src]))
        t_lo, t_hi = max(chunk * steps // chunks, k), (chunk + 1) * steps // chunks
        if s == out and not every_step:
            t_lo = max(t_lo, steps - 1)
        acc = np.zeros((WF_TILE, WF_TILE))
        for t in range(t_lo, t_hi):
            for b in range(batch):
                g = dz[act_off[s] + (t * batch + b) * w:][:w]
                if src == -2:
                    v = np.ones(1)
                elif src < 0:
                    v = xf[(b * steps + t - k) * p.n_inputs:][:ws]
                else:
                    v = act[act_off[src] + ((t - k) * batch + b) * ws:][:ws]
                gj, vq = g[j0:j0 + WF_TILE], v[q0:q0 + WF_TILE]
                acc[:len(gj), :len(vq)] += np.outer(gj, vq)
        off = p.bias_off[s] if e < 0 else p.in_woff[e]
        block = partials[chunk, off: off + w * ws].reshape(w, ws)
        jn, qn = min(WF_TILE, w - j0), min(WF_TILE, ws - q0)
        block[j0:j0 + jn, q0:q0 + qn] = acc[:jn, :qn]
    assert not np.isnan(partials).any(), "a parameter no item wrote"
    return dict(loss=loss, right=right, grads=partials.sum(axis=0), stats=stats, act=act, dz=dz,
                hmin=hmin.min(axis=0), hmax=hmax.max(axis=0), act_off=act_off)


networks = recurrent_cases  # conftest: a stack, a tangle of delays, a group wider than a block's threads


@pytest.mark.parametrize("name", ["stack", "tangled", "wide"])
@pytest.mark.parametrize("rows", [1, 3, 8])
def test_the_plan_through_the_kernels_emulation_is_backpropagation_through_time(name, rows):
    net = networks()[name]
    rng = np.random.default_rng(7)
    batch, steps = 10, 6
    x = rng.normal(size=(batch, steps, net.n_inputs))
    y = rng.integers(0, net.n_outputs, batch)
    params, offsets = flat_params(net)
    p = plan(net, offsets)
    got = emulate(p, params, x, y, rows)
    ref = SerialEngine(net, SGD(lr=0.0), dtype="float64")
    ref.forward(x)
    loss = ref.backward(y)
    assert got["loss"] == pytest.approx(loss, rel=1e-12)
    for key, g in ref.grads.items():
        off = offsets[key]
        np.testing.assert_allclose(got["grads"][off:off + g.size].reshape(g.shape), g, rtol=1e-9, atol=1e-12,
                                   err_msg=str(key))
    n = {s: steps * batch * int(p.width[s]) for s in range(p.n_slots)}
    for s, g in enumerate(p.groups):  # the statistics the engine pools: grad_std and taylor per group
        s1, s2, s3 = got["stats"][s]
        mean = s1 / n[s]
        assert math.sqrt(max(s2 / n[s] - mean * mean, 0)) == pytest.approx(ref.stats["grad_std"][g], rel=1e-9, abs=1e-15)
        assert abs(s3 / n[s]) == pytest.approx(ref.stats["taylor"][g], rel=1e-9, abs=1e-15)
        if g != p.groups[-1]:
            c = slice(int(p.col_off[s]), int(p.col_off[s] + p.width[s]))
            np.testing.assert_allclose(got["hmin"][c], ref.stats["h_min"][g], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(got["hmax"][c], ref.stats["h_max"][g], rtol=1e-12, atol=1e-15)


def test_every_step_losses_match_through_time():
    net = networks()["tangled"]
    rng = np.random.default_rng(8)
    x = rng.normal(size=(9, 5, 6))
    y = rng.integers(0, 4, (9, 5))
    params, offsets = flat_params(net)
    got = emulate(plan(net, offsets), params, x, y, rows=4, every_step=True)
    ref = SerialEngine(net, SGD(lr=0.0), dtype="float64")
    ref.every_step = True
    ref.forward(x)
    assert got["loss"] == pytest.approx(ref.backward(y), rel=1e-12)
    for key, g in ref.grads.items():
        np.testing.assert_allclose(got["grads"][offsets[key]:offsets[key] + g.size].reshape(g.shape), g,
                                   rtol=1e-9, atol=1e-12, err_msg=str(key))


def test_slots_follow_the_edges_without_a_delay_and_the_edges_are_each_listed_once_each_way():
    net = networks()["tangled"]
    params, offsets = flat_params(net)
    p = plan(net, offsets)
    assert p.groups[-1] == net.output and INPUT not in p.groups and sorted(p.groups) == sorted(net.widths)[1:]
    slot = {g: s for s, g in enumerate(p.groups)}
    for s, g in enumerate(p.groups):
        ins = list(zip(p.in_src[p.in_ptr[s]:p.in_ptr[s + 1]].tolist(), p.in_delay[p.in_ptr[s]:p.in_ptr[s + 1]].tolist()))
        assert sorted(ins) == sorted((-1 if src == INPUT else slot[src], net.delay(src, g)) for src in net.inputs(g))
        for src, k in ins:
            assert k > 0 or src < s, "an edge without a delay comes from an earlier slot"
    assert len(p.out_dst) == sum(1 for (src, _) in net.weights if src != INPUT)
    assert p.n_params == len(params)
    for s in range(p.n_slots):  # ready first: what was there before the step, then this step's sources
        waits = [int(src >= 0 and k == 0) for src, k in zip(p.in_src[p.in_ptr[s]:p.in_ptr[s + 1]],
                                                              p.in_delay[p.in_ptr[s]:p.in_ptr[s + 1]])]
        assert waits == sorted(waits)
        later = [int(k == 0) for k in p.out_delay[p.out_ptr[s]:p.out_ptr[s + 1]]]
        assert later == sorted(later)


def test_rows_fit_the_threads_and_the_grid_fits_the_gpu():
    net = networks()["wide"]
    p = plan(net, flat_params(net)[1])
    assert p.max_rows() == WF_ROWS  # a 300-wide group: each thread takes 2 columns of up to WF_ROWS rows
    assert rows_for(p, 64, resident=132) == 2  # 3 slots: 44 row blocks a slot fit, 32 needed at 2 rows
    assert rows_for(p, 4, resident=132) == 1
    with pytest.raises(BackendError, match="at most 8"):
        rows_for(p, 4096, resident=132)
    with pytest.raises(BackendError, match="a block per group"):
        rows_for(p, 8, resident=2)
    narrow = plan(Network.elman(3, [16], 2), flat_params(Network.elman(3, [16], 2))[1])
    assert narrow.max_rows() == WF_ROWS * (THREADS // 16)


def test_networks_the_kernel_cannot_run_are_refused_with_the_reason():
    conv = Network(input_shape=(1, 6, 6), n_outputs=2)
    assert "flat features" in refusal(conv)
    wide = Network.elman(3, [WF_COLS * THREADS + 1], 2)
    assert "wider" in refusal(wide)
    with pytest.raises(BackendError, match="wider"):
        plan(wide, flat_params(wide)[1])
    assert refusal(Network.elman(3, [8], 2)) is None
