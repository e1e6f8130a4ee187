"""Engines execute a Network. Each offers the same small interface:

load(net), forward(x) -> logits, backward(y) -> loss (fills gradients and grad_std),
update(), step(x, y) -> (loss, logits), predict_logits(x), write_back(net), and the attributes
name, dtype, optimizer and grad_std ({group: std of dL/dh}).
"""

from .serial import SerialEngine, softmax_cross_entropy

__all__ = ["SerialEngine", "softmax_cross_entropy"]
