"""genlab.optim's updates (PyTorch's formulas) on lists of PyTorch tensors at once, for the
partitioned engine's level tensors."""

from __future__ import annotations

from ..optim import Adam


def update(optimizer, params: list, grads: list, state: dict) -> None:
    """genlab.optim's update (PyTorch's formulas) over lists of tensors at once (multi-tensor
    kernels); the state starts at zeros, where a fresh parameter's starts (Adam counts its steps
    per element, so parameters added by growth start their own count)."""
    import torch

    if isinstance(optimizer, Adam):
        b1, b2 = optimizer.beta1, optimizer.beta2
        t, m, v = state["t"], state["m"], state["v"]
        torch._foreach_add_(t, 1)
        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, grads, alpha=1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        first = torch._foreach_pow(b1, t)  # 1 - beta1^t, then 1 - beta2^t
        torch._foreach_neg_(first)
        torch._foreach_add_(first, 1)
        second = torch._foreach_pow(b2, t)
        torch._foreach_neg_(second)
        torch._foreach_add_(second, 1)
        denom = torch._foreach_div(v, second)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, optimizer.eps)
        step = torch._foreach_div(m, denom)
        torch._foreach_div_(step, first)
        torch._foreach_mul_(step, optimizer.lr)
        torch._foreach_sub_(params, step)
        return
    vel = state["vel"]
    torch._foreach_mul_(vel, optimizer.momentum)
    torch._foreach_add_(vel, grads)
    torch._foreach_add_(params, vel, alpha=-optimizer.lr)
