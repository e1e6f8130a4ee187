"""Dense groups: h = relu(b + sum over in-edges of h_src W^T) (the output group without relu)."""

from __future__ import annotations

import numpy as np

from .base import GroupKind


class Dense(GroupKind):
    name = "dense"
    cuda_kernels = ("forward_level", "backward_level", "backward_push", "backward_finish", "weight_grad",
                    "bias_grad", "forward_mid", "backward_mid", "weight_mid", "forward_wide", "backward_wide",
                    "weight_wide", "dataflow_step", "rows_step")

    def edge_shape(self, width, src_width):
        return (width, src_width)

    def bias_shape(self, width):
        return (width,)

    def draw_edge(self, rng, shape, fan_in):
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)  # He-normal

    def forward(self, inputs, weights, bias, linear):
        z = bias + sum(h @ w.T for h, w in zip(inputs, weights))
        return z if linear else np.maximum(z, 0)

    def torch_forward(self, inputs, weights, bias, linear):
        import torch

        z = bias + sum(h @ w.T for h, w in zip(inputs, weights))
        return z if linear else torch.relu(z)

    def backward(self, grad_out, h, linear):
        return grad_out if linear else grad_out * (h > 0)

    def edge_grads(self, dz, h_src, weight):
        return dz.T @ h_src, dz @ weight

    def bias_grad(self, dz):
        return dz.sum(axis=0)

    def identity(self, width):
        return np.eye(width)  # relu(I relu(z)) = relu(z)

    def split(self, block, noise):
        return block / 2 + noise, block / 2 - noise

    def fold(self, block, constant):
        return block @ constant
