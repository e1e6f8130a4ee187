"""Convolution groups: `width` channels over the grid their inputs share,
h = relu(b + sum over in-edges of conv2d(h_src, W)) with kernel x kernel weights, same padding
(kernel // 2 zeros each side) and an optional stride (stride 2 halves the grid, rounding up).

An edge into a conv group reads a conv group or the image input; a dense group reading a conv
group sees it flattened. The NumPy reference works on sliding windows (im2col)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...errors import GraphError
from ..base import GroupKind, InexactFold


def windows(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """(batch, channels, out rows, out columns, kernel, kernel): the patch each output reads."""
    p = kernel // 2
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    return sliding_window_view(padded, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]


def conv(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """conv2d of x (batch, C, H, W) with weight (O, C, k, k): (batch, O, H', W')."""
    cols = windows(x, weight.shape[-1], stride)
    return np.tensordot(cols, weight, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)


def conv_input_grad(dz: np.ndarray, weight: np.ndarray, stride: int, shape: tuple) -> np.ndarray:
    """dL/dx of conv(x, weight, stride) from dL/d its output; x has `shape`."""
    k = weight.shape[-1]
    p = k // 2
    rows, cols = dz.shape[2], dz.shape[3]
    patches = np.tensordot(dz, weight, axes=([1], [0]))  # (batch, rows, cols, C, k, k)
    padded = np.zeros((shape[0], shape[1], shape[2] + 2 * p, shape[3] + 2 * p), np.result_type(dz, weight))
    for i in range(k):
        for j in range(k):
            padded[:, :, i:i + stride * rows:stride, j:j + stride * cols:stride] += \
                patches[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return padded[:, :, p:p + shape[2], p:p + shape[3]]


class Conv(GroupKind):
    name = "conv"
    cuda_kernels = ("conv_forward", "conv_forward_staged", "conv_backward", "conv_backward_staged", "conv_weight_grad",
                    "conv_bias_grad")
    code = 1  # the kernels' KIND_CONV (cuda/constants.cuh)
    node_shape = "box3d"
    spatial = True

    def options(self, given):
        unknown = set(given) - {"kernel", "stride"}
        if unknown:
            raise GraphError(f"a conv group takes kernel and stride; got {', '.join(sorted(unknown))}")
        kernel, stride = given.get("kernel", 3), given.get("stride", 1)
        for name, value in (("kernel", kernel), ("stride", stride)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= 15:
                raise GraphError(f"a conv group's {name} is a whole number from 1 to 15, got {value!r}")
        if kernel % 2 == 0:
            raise GraphError(f"a conv group's kernel is odd (same padding needs a centre), got {kernel}")
        return {"kernel": int(kernel), "stride": int(stride)}

    def depth_options(self, options):
        return {**options, "stride": 1}  # the copy keeps the grid it reads

    def out_grid(self, spec):
        s = spec.options["stride"]
        return ((spec.grid[0] - 1) // s + 1, (spec.grid[1] - 1) // s + 1)

    def label(self, spec):
        k, s = spec.options["kernel"], spec.options["stride"]
        return f"conv {spec.width}ch {k}x{k}" + (f" /{s}" if s > 1 else "")

    def edge_shape(self, spec, src_width):
        k = spec.options["kernel"]
        return (spec.width, src_width, k, k)

    def draw_edge(self, spec, rng, shape, fan_in):
        return rng.normal(0.0, np.sqrt(2.0 / (fan_in * shape[2] * shape[3])), shape)  # He-normal

    def forward(self, spec, inputs, weights, bias):
        z = bias[:, None, None] + sum(conv(h, w, spec.options["stride"]) for h, w in zip(inputs, weights))
        return np.maximum(z, 0), None

    def torch_forward(self, spec, inputs, weights, bias):
        import torch
        import torch.nn.functional as F

        k, s = spec.options["kernel"], spec.options["stride"]
        z = bias[:, None, None] + sum(F.conv2d(h, w, stride=s, padding=k // 2) for h, w in zip(inputs, weights))
        return torch.relu(z)

    def backward(self, spec, grad_out, h, cache, bias):
        dz = grad_out * (h > 0)
        return dz, dz.sum(axis=(0, 2, 3))

    def edge_grads(self, spec, dz, h_src, weight):
        cols = windows(h_src, weight.shape[-1], spec.options["stride"])
        w_grad = np.tensordot(dz, cols, axes=([0, 2, 3], [0, 2, 3]))
        return w_grad, conv_input_grad(dz, weight, spec.options["stride"], h_src.shape)

    def identity(self, spec):
        k = spec.options["kernel"]
        block = np.zeros((spec.width, spec.width, k, k))
        block[np.arange(spec.width), np.arange(spec.width), k // 2, k // 2] = 1.0  # relu(relu(z)) = relu(z)
        return block

    def fold(self, spec, block, constant):
        source = constant.reshape(1, block.shape[1], *spec.grid)
        added = conv(source, block, spec.options["stride"])[0]
        per_channel = added.reshape(len(added), -1)
        if not (per_channel == per_channel[:, :1]).all():
            raise InexactFold("the convolution of the constant differs at the borders (zero padding): no bias adds it")
        return per_channel[:, 0]
