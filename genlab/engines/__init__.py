"""Engines execute a Network. Each offers the same small interface:

- load(net); forward(x) -> logits; backward(y) -> loss (fills gradients and statistics);
  update(); step(x, y) -> (loss, correct predictions); predict_logits(x); write_back(net);
- growth (genlab.growth defines the rules; engines keep what they read, step by step):
  growth_criterion and pruning (what to keep, set by Grower.attach), choose_growth(eligible,
  threshold, relative), prune_report(), apply_growth(net, log) (take the grown network and
  replay the log of parameter operations), grows_in_place;
- attributes name, dtype, optimizer, params, grads, stats ({statistic: {group: value}}, see
  serial.STATISTICS) and grad_std ({group: std of dL/dh} for every group but the input, in
  ascending group id: the trainer keeps one at every step).

The serial engine (NumPy) is the reference; the CUDA engine runs genlab's kernels (cuda/*.cu).
"""

from .serial import STATISTICS, SerialEngine, softmax_cross_entropy

__all__ = ["STATISTICS", "SerialEngine", "softmax_cross_entropy"]
