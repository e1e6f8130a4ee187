"""Attention groups: multi-head self-attention over the tokens of a sequence network, with a
residual path. With z = b + P + sum over in-edges of h_src W^T (each token alike, model width d;
P the sinusoidal position encoding of each token when the group has positions=True, else 0),

    h = z + MHA(z),  MHA(z) = concat over heads of softmax(q k^T / sqrt(d / heads)) v, times Wo^T,

q = z Wq^T, k = z Wk^T, v = z Wv^T. The group's own vector holds b, Wq, Wk, Wv, Wo (d + 4 d^2).
A depth-wise copy starts as the identity: an identity edge and Wo = 0 (its attention branch
adds nothing until it learns to), with Wq, Wk, Wv drawn so that the branch can learn; it does
not add the positions again (its input already holds them)."""

from __future__ import annotations

import numpy as np

from ...errors import GraphError
from ..base import GroupKind, InexactFold, Spec


def unpack(spec: Spec, own):
    """(b, Wq, Wk, Wv, Wo) views of the group's own vector (a NumPy array or a torch tensor)."""
    d = spec.width
    return (own[:d], *(own[d + i * d * d:d + (i + 1) * d * d].reshape(d, d) for i in range(4)))


def positions(tokens: int, d: int) -> np.ndarray:
    """The sinusoidal encoding (Vaswani et al. 2017) of tokens 0..tokens-1 at model width d, float64:
    P[t, 2i] = sin(t / 10000^(2i / d)), P[t, 2i + 1] = cos(t / 10000^(2i / d)) (cuda/attention.cu
    computes the same in double precision)."""
    t, j = np.arange(tokens)[:, None], np.arange(d)[None, :]
    angle = t / np.power(10000.0, (j - j % 2) / d)
    return np.where(j % 2 == 0, np.sin(angle), np.cos(angle))


def _encoding(spec: Spec, like):
    """P of the group as an array like `like` (NumPy or torch), or 0 without positions."""
    if not spec.options.get("positions"):
        return 0.0
    p = positions(spec.tokens, spec.width)
    if isinstance(like, np.ndarray):
        return p.astype(like.dtype)
    import torch

    return torch.as_tensor(p, dtype=like.dtype, device=like.device)


def _heads(spec: Spec, x):
    """(batch, tokens, d) -> (batch, heads, tokens, d / heads), for NumPy arrays and torch tensors."""
    return x.reshape(*x.shape[:2], spec.options["heads"], -1).swapaxes(1, 2)


def _merge(x):
    """(batch, heads, tokens, d / heads) -> (batch, tokens, d)."""
    return x.swapaxes(1, 2).reshape(x.shape[0], x.shape[2], -1)


class Attention(GroupKind):
    name = "attention"
    cuda_kernels = ("attention_forward", "attention_backward", "token_weight_grad")
    code = 2  # the kernels' KIND_ATTENTION (cuda/constants.cuh)
    node_shape = "hexagon"
    tokens_only = True

    def options(self, given):
        unknown = set(given) - {"heads", "positions"}
        if unknown:
            raise GraphError(f"an attention group takes heads and positions; got {', '.join(sorted(unknown))}")
        heads, positions = given.get("heads", 1), given.get("positions", False)
        if isinstance(heads, bool) or not isinstance(heads, (int, np.integer)) or not 1 <= heads <= 64:
            raise GraphError(f"an attention group's heads is a whole number from 1 to 64, got {heads!r}")
        if not isinstance(positions, (bool, np.bool_)):
            raise GraphError(f"an attention group's positions is True (add each token's sinusoidal position "
                             f"encoding to its input) or False, got {positions!r}")
        return {"heads": int(heads), **({"positions": True} if positions else {})}

    def depth_options(self, options):
        return {k: v for k, v in options.items() if k != "positions"}  # its input holds them already

    def label(self, spec):
        heads = spec.options["heads"]
        where = " +pos" if spec.options.get("positions") else ""
        return f"attn {heads} head{'s' if heads > 1 else ''}{where}, {spec.width}"

    def edge_shape(self, spec, src_width):
        if spec.width % spec.options["heads"]:
            raise GraphError(f"an attention group's width ({spec.width}) is a multiple of its heads "
                             f"({spec.options['heads']})")
        return (spec.width, src_width)

    def bias_shape(self, spec):
        return (spec.width + 4 * spec.width * spec.width,)

    def _projections(self, spec, rng, wo: bool) -> np.ndarray:
        d = spec.width
        own = np.zeros(self.bias_shape(spec))
        own[d:] = rng.normal(0.0, np.sqrt(1.0 / d), 4 * d * d)
        if not wo:
            own[d + 3 * d * d:] = 0.0
        return own

    def init_bias(self, spec, rng):
        return self._projections(spec, rng, wo=True)

    def identity_bias(self, spec, rng):
        return self._projections(spec, rng, wo=False)

    def draw_edge(self, spec, rng, shape, fan_in):
        return rng.normal(0.0, np.sqrt(1.0 / fan_in), shape)  # no relu after it: LeCun-normal

    def forward(self, spec, inputs, weights, bias):
        b, wq, wk, wv, wo = unpack(spec, bias)
        z = b + _encoding(spec, bias) + sum(h @ w.T for h, w in zip(inputs, weights))
        q, k, v = (_heads(spec, z @ m.T) for m in (wq, wk, wv))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
        p = np.exp(scores - scores.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        o = _merge(p @ v)
        return z + o @ wo.T, (z, q, k, v, p, o)

    def torch_forward(self, spec, inputs, weights, bias):
        import torch.nn.functional as F

        b, wq, wk, wv, wo = unpack(spec, bias)
        z = b + _encoding(spec, bias) + sum(h @ w.T for h, w in zip(inputs, weights))
        o = F.scaled_dot_product_attention(*(_heads(spec, z @ m.T) for m in (wq, wk, wv)))
        return z + _merge(o) @ wo.T

    def backward(self, spec, grad_out, h, cache, bias):
        _, wq, wk, wv, wo = unpack(spec, bias)
        z, q, k, v, p, o = cache
        d = spec.width
        rows = lambda x: x.reshape(-1, d)
        d_wo = rows(grad_out).T @ rows(o)
        do = _heads(spec, grad_out @ wo)
        dp = do @ v.transpose(0, 1, 3, 2)
        dv = p.transpose(0, 1, 3, 2) @ do
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) / np.sqrt(q.shape[-1])
        dq, dk = _merge(ds @ k), _merge(ds.transpose(0, 1, 3, 2) @ q)
        dv = _merge(dv)
        dz = grad_out + dq @ wq + dk @ wk + dv @ wv
        grads = [rows(dz).sum(axis=0)] + [(rows(g).T @ rows(z)).ravel() for g in (dq, dk, dv)] + [d_wo.ravel()]
        return dz, np.concatenate(grads)

    def edge_grads(self, spec, dz, h_src, weight):
        return dz.reshape(-1, spec.width).T @ h_src.reshape(-1, h_src.shape[-1]), dz @ weight

    def identity(self, spec):
        return np.eye(spec.width)

    def fold(self, spec, block, constant):
        per_token = constant.reshape(spec.tokens, -1)
        if not (per_token == per_token[0]).all():
            raise InexactFold("the constant differs from token to token: no bias adds it")
        own = np.zeros(self.bias_shape(spec))
        own[:spec.width] = block @ per_token[0]
        return own
