"""Dense groups: h = relu(b + sum over in-edges of h_src W^T) (the output group without relu).

A dense group reading a conv group sees it flattened (channel, row, column); in a sequence
network it acts on every token alike, and the output group averages over the tokens first."""

from __future__ import annotations

import numpy as np

from .base import GroupKind, InexactFold, Spec


def _flat(spec: Spec, h: np.ndarray) -> np.ndarray:
    """h as a dense group reads it: (batch, values) or, in a sequence network, (batch, tokens, width)."""
    return h if spec.tokens else h.reshape(len(h), -1)


class Dense(GroupKind):
    name = "dense"
    cuda_kernels = ("forward_level", "backward_level", "backward_push", "backward_finish", "weight_grad",
                    "bias_grad", "sum_parts", "forward_mid", "backward_mid", "weight_mid", "forward_wide", "backward_wide",
                    "weight_wide", "dataflow_step", "rows_step")
    code = 0  # the kernels' KIND_DENSE (cuda/constants.cuh)
    node_shape = "circle"
    sized_by_width = True
    own_kernels = False  # the dense task lists run it (forward.cu, backward.cu, wide.cu, ...)

    def edge_shape(self, spec, src_width):
        return (spec.width, src_width)

    def draw_edge(self, spec, rng, shape, fan_in):
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)  # He-normal

    def forward(self, spec, inputs, weights, bias):
        z = bias + sum(_flat(spec, h) @ w.T for h, w in zip(inputs, weights))
        if spec.output:
            return (z.mean(axis=1) if spec.tokens else z), None
        return np.maximum(z, 0), None

    def torch_forward(self, spec, inputs, weights, bias):
        import torch

        z = bias + sum((h if spec.tokens else h.flatten(1)) @ w.T for h, w in zip(inputs, weights))
        if spec.output:
            return z.mean(dim=1) if spec.tokens else z
        return torch.relu(z)

    def backward(self, spec, grad_out, h, cache, bias):
        if spec.output:
            dz = np.repeat(grad_out[:, None, :] / spec.tokens, spec.tokens, axis=1) if spec.tokens else grad_out
        else:
            dz = grad_out * (h > 0)
        return dz, dz.reshape(-1, spec.width).sum(axis=0)

    def edge_grads(self, spec, dz, h_src, weight):
        flat = _flat(spec, h_src)
        w_grad = dz.reshape(-1, spec.width).T @ flat.reshape(-1, flat.shape[-1])
        return w_grad, (dz @ weight).reshape(h_src.shape)

    def identity(self, spec):
        return np.eye(spec.width)  # relu(I relu(z)) = relu(z)

    def constant_without_inputs(self, spec, own):
        return np.maximum(own, 0)

    def fold(self, spec, block, constant):
        if spec.tokens:
            per_token = constant.reshape(spec.tokens, -1)
            if spec.output:  # it averages over the tokens: the mean constant adds exactly
                return block @ per_token.mean(axis=0)
            if not (per_token == per_token[0]).all():
                raise InexactFold("the constant differs from token to token: no bias adds it")
            constant = per_token[0]
        return block @ constant
