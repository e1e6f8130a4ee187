"""What the growth study runs: one Task per dataset (the kind of group, the seed network, the
epochs, the budget), the arms it compares, and the published results that place its figures."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

ARMS = ("grown", "regrown", "layered", "random", "torch")
ARM_TEXT = {
    "grown": "grown from one group (genlab's default growth rule)",
    "regrown": "the grown topology, re-initialised, trained fixed",
    "layered": "one hidden layer of the same parameter count",
    "random": "random growth: as many groups at the same steps, chosen at random",
    "torch": "PyTorch's MLP / CNN / GRU of the same parameter count",
}
# Published figures that place the study's (test accuracy): Fashion-MNIST (Xiao et al. 2017, and
# its benchmark page), MNIST-1D (Greydanus 2020, the paper's table)
ANCHORS = {
    "fashion_mnist": {"MLP": 0.88},
    "fashion_mnist_images": {"two-conv CNN": 0.916},
    "mnist1d": {"logistic": 0.32, "MLP": 0.68, "CNN": 0.94},
    "mnist1d_rows": {"GRU": 0.91},
}


@dataclass(frozen=True)
class Task:
    """One dataset's arm of the study: start from one hidden group of `kind` and `width`, train
    `epochs` epochs (Adam, lr, batch 32) with growth up to `max_groups` groups."""

    dataset: str
    kind: str
    width: int
    epochs: int
    max_groups: int = 32
    n_samples: int | None = None
    lr: float = 1e-3
    batch_size: int = 32

    def to_dict(self) -> dict:
        return asdict(self)


# The full study (the committed run, on a GPU machine): about 2,000-19,000 steps a run
TASKS = {t.dataset: t for t in (
    Task("digits", "dense", 8, 47),
    Task("fashion_mnist", "dense", 16, 10),
    Task("fashion_mnist_images", "conv", 8, 3, max_groups=12),
    Task("mnist1d", "dense", 16, 64),
    Task("mnist1d_rows", "recurrent", 16, 32, max_groups=8),
)}

# A subset that runs on a laptop's CPU in well under a minute (notebook 08, the tests)
QUICK = {t.dataset: t for t in (
    replace(TASKS["digits"], epochs=12, max_groups=12),
    replace(TASKS["mnist1d"], epochs=12, max_groups=12),
)}
