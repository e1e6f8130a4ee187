"""Engines execute a Network. Each offers the same small interface:

load(net), forward(x) -> logits, backward(y) -> loss (fills gradients and statistics),
update(), step(x, y) -> (loss, correct predictions), predict_logits(x), write_back(net), and the attributes
name, dtype, optimizer, stats ({statistic: {group: value}}, see serial.STATISTICS) and grad_std.
"""

from .serial import STATISTICS, SerialEngine, softmax_cross_entropy

__all__ = ["STATISTICS", "SerialEngine", "softmax_cross_entropy"]
