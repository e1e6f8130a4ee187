"""A CUDA engine's step split in two, so that several engines' steps run side by side on one GPU
(genlab.asynchronous.streams: Hogwild's workers): launch_step queues the captured step on the
engine's stream and returns, finish_step waits for it and reads its scalars; share_parameters
makes a new engine work on another's parameter buffer."""

from __future__ import annotations

from dataclasses import replace

from ...guard import gradient_ok
from .deferred import settled


class Concurrent:
    """CudaEngine's methods for steps launched now and read later."""

    def launch_step(self, batch: int) -> None:
        """Queue the captured step on the batch put up (put_batch); finish_step waits for it."""
        self.executor.before_step()
        self._graph(batch).launch()

    def finish_step(self) -> tuple[float, int, float]:
        """Wait for the step launch_step queued: its (loss, correct, gradsq), the executor told
        whether it was applied."""
        loss, correct, gradsq = self.read_scalars()
        self.executor.after_step(gradient_ok(loss, gradsq))
        self._stats_cache = None
        return loss, correct, gradsq

    @settled
    def share_parameters(self, owner) -> None:
        """Read and update `owner`'s parameter buffer from now on (an engine before its first step:
        its own optimizer state and activations stay its own)."""
        shared = replace(self.dev.parameters, params=owner.dev.parameters.params)
        self.dev = replace(self.dev, parameters=shared)
        self._graphs.clear()  # they hold the old buffer's address
