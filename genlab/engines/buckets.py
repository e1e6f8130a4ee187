"""A data-parallel step's gradient sums overlapped with its backward (as PyTorch's DDP does): the
backward hands over each group's gradients as soon as they are final; once `bucket_bytes` of them
are gathered, their sum over the replicas starts (Replicas.start_sum) and runs while the backward
goes on with the groups below. finish() starts the last bucket, waits for every sum and puts the
summed gradients in place. Every replica makes the same buckets in the same order (the same
topology, the same backward order), so the collectives pair up."""

from __future__ import annotations

import numpy as np

from .base import Key, Pending, Replicas


class Buckets:
    """Gradient sums of one step over `replicas`, started bucket by bucket."""

    def __init__(self, replicas: Replicas):
        self.replicas = replicas
        self.limit = int(replicas.bucket_bytes)
        self.open: list[Key] = []  # gathered, not yet started
        self.open_bytes = 0
        self.started: list[tuple[list[Key], np.ndarray, Pending]] = []
        self.taken: set[Key] = set()

    def add(self, grads: dict, keys) -> None:
        """These keys' gradients in `grads` are final: gather them, and start a full bucket."""
        for key in keys:
            self.open.append(key)
            self.taken.add(key)
            self.open_bytes += grads[key].nbytes
        if self.open_bytes >= self.limit:
            self._start(grads)

    def _start(self, grads: dict) -> None:
        if not self.open:
            return
        keys, self.open, self.open_bytes = self.open, [], 0
        flat = np.concatenate([grads[k].ravel() for k in keys])
        self.started.append((keys, flat, self.replicas.start_sum(flat, scale=self.replicas.fraction)))

    def finish(self, grads: dict) -> int:
        """Start what is left (with any gradient never handed over, in key order), wait for every
        sum and put the sums in `grads`; the number of buckets."""
        rest = sorted(k for k in grads if k not in self.taken)
        self.open.extend(rest)
        self.taken.update(rest)
        self._start(grads)
        for keys, flat, pending in self.started:
            pending.wait()
            start = 0
            for k in keys:
                size = grads[k].size
                grads[k] = flat[start:start + size].reshape(grads[k].shape)
                start += size
        count, self.started = len(self.started), []
        return count
