"""The serial engine through time: a recurrent network run step by step over a sequence, and
exact backpropagation through time. The reference the CUDA schedules are tested against.

At time t every group runs in the order of the edges without a delay (one time step's DAG); an
edge with delay k reads its source at time t - k, or zeros before the sequence starts; the input
group holds x[:, t]. The output group is read at the last step.
"""

from __future__ import annotations

import numpy as np

from ..network import INPUT, OUTPUT
from .base import STATISTICS


def forward(e, x: np.ndarray, cells=None) -> np.ndarray:
    """Logits at the last step of sequences x (batch, steps, n_inputs); keeps every step's h.
    cells: the (group, t) cells in the order to run them (default: step after step; any order
    in which a cell comes after those it reads gives the same bits, genlab.wavefront's too)."""
    x = np.asarray(x, e.dtype)
    batch, steps = x.shape[0], x.shape[1]
    p, h = e._params, [{INPUT: x[:, t]} for t in range(steps)]
    for g, t in cells if cells is not None else ((g, t) for t in range(steps) for g in e.order):
        sources = e.inputs[g]
        values = [_at(h, t, s, e.delays.get((s, g), 0), batch, e.widths[s], e.dtype) for s in sources]
        h[t][g] = e.kinds[g].forward(e.specs[g], values, [p[("W", s, g)] for s in sources], p[("b", g)])[0]
    e._h = h
    if e.every_step:
        return np.stack([step[OUTPUT] for step in h], axis=1)  # (batch, steps, classes)
    return h[-1][OUTPUT]


def _at(h: list, t: int, s: int, delay: int, batch: int, width: int, dtype) -> np.ndarray:
    return h[t - delay][s] if t >= delay else np.zeros((batch, width), dtype)


def backward(e, y: np.ndarray, loss_fn) -> float:
    """Loss at the last step against labels y (with every_step: the mean over every step against
    y of shape (batch, steps)); gradients summed over time, statistics over every step (dL/dh of
    all steps pooled)."""
    h = e._h
    steps = len(h)
    dh = [dict() for _ in range(steps)]
    if e.every_step:
        logits = np.stack([step[OUTPUT] for step in h], axis=1)
        loss, dlogits = loss_fn(logits.reshape(-1, logits.shape[-1]), np.asarray(y).reshape(-1))
        dlogits = dlogits.reshape(logits.shape)
        for t in range(steps):
            dh[t][OUTPUT] = dlogits[:, t]
    else:
        loss, dh[-1][OUTPUT] = loss_fn(h[-1][OUTPUT], y)
    grads = {k: np.zeros_like(v) for k, v in e._params.items()}
    pooled = {g: [] for g in e.order}
    for t in reversed(range(steps)):
        for g in reversed(e.order):
            kind, spec = e.kinds[g], e.specs[g]
            grad_out = dh[t].pop(g, None)
            if grad_out is None:
                grad_out = np.zeros_like(h[t][g])
            pooled[g].append(grad_out)
            dz, b_grad = kind.backward(spec, grad_out, h[t][g], None, e._params[("b", g)])
            grads[("b", g)] += b_grad
            for s in e.inputs[g]:
                k = e.delays.get((s, g), 0)
                if t < k:
                    continue  # it read zeros
                w_grad, share = kind.edge_grads(spec, dz, h[t - k][s], e._params[("W", s, g)])
                grads[("W", s, g)] += w_grad
                if s != INPUT:
                    target = dh[t - k]
                    target[s] = target[s] + share if s in target else share
    # dL/dh and h of each group over all steps, in step order (what a data-parallel step sums)
    e._pooled = {g: (np.concatenate(pooled[g][::-1]), np.concatenate([step[g] for step in h])) for g in e.order}
    e._grads, e._stats = grads, _statistics(e, grads)
    return loss


def _statistics(e, grads: dict) -> dict:
    stats = {name: {} for name in STATISTICS}
    for g in e.order:
        grad_out, hg = e._pooled[g]
        stats["grad_std"][g] = float(grad_out.std())
        stats["weight_grad_norm"][g] = float(np.sqrt(
            sum(np.sum(grads[("W", s, g)] ** 2) for s in e.inputs[g]) + np.sum(grads[("b", g)] ** 2)))
        stats["taylor"][g] = float(abs(np.mean(hg * grad_out)))
        stats["h_min"][g], stats["h_max"][g] = hg.min(axis=0), hg.max(axis=0)
    return stats
