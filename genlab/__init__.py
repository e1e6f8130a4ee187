"""genlab: grow generalized neural networks (DAGs of small neuron groups) in a Jupyter lab.

    >>> import genlab
    >>> data = genlab.datasets.load("iris")
    >>> net = genlab.Network.mlp([data.n_features, 16, data.n_classes])
    >>> trainer = genlab.Trainer(net, backend="serial", seed=0)
"""

__version__ = "0.1.0"

from . import datasets, notices, wavefront
from .errors import (ArgumentError, ArgumentTypeError, BackendError, DataError, FileFormatError, GenlabError,
                     GraphError, PeerError, SaveError, StaleNetworkError, TrainingError)
from .asynchronous import DNI, Hogwild
from .export import to_onnx, to_torch
from .growth import GrowthEvent, GrowthPolicy
from .lab import Lab
from .network import INPUT, OUTPUT, Network
from .trainer import History, Trainer

notices.install()

def cuda_dir():
    """The folder of genlab's CUDA C sources (inside the installed package, or the checkout's cuda/)."""
    from importlib.resources import files
    from pathlib import Path

    packaged = files("genlab") / "cuda"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "cuda"  # an editable install of a checkout


def results_dir():
    """The folder of the committed benchmark and study results (benchmarks/results/: inside the
    installed package as genlab/results, or the checkout's), which the notebooks read."""
    from importlib.resources import files
    from pathlib import Path

    packaged = files("genlab") / "results"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "benchmarks" / "results"  # an editable install of a checkout


def _compile_at_import() -> None:
    """On a machine whose GPU the CUDA engine can use, load the kernels now (from the cache in
    milliseconds; compiled by nvcc the first time), never failing the import. Without a GPU or
    PyCUDA it says nothing and the serial engine serves; GENLAB_BACKEND=serial skips it."""
    import os
    import sys

    from .backends import Backend, cuda_status

    if os.environ.get("GENLAB_BACKEND") == Backend.SERIAL:
        return
    ok, why = cuda_status()
    if not ok:
        if os.environ.get("GENLAB_BACKEND") == Backend.CUDA:
            print(f"genlab: GENLAB_BACKEND=cuda but {why}", file=sys.stderr)
        return
    try:
        from .engines.cuda import kernels

        kernels()
    except Exception as e:  # shown again, in full, when the CUDA engine is used
        print(f"genlab: the CUDA kernels did not load: {e}", file=sys.stderr)


_compile_at_import()

__all__ = [
    "Network", "Trainer", "History", "Hogwild", "DNI", "GrowthPolicy", "GrowthEvent", "Lab", "datasets", "wavefront", "INPUT", "OUTPUT", "cuda_dir",
    "to_torch",
    "GenlabError", "ArgumentError", "ArgumentTypeError", "GraphError", "DataError", "BackendError", "FileFormatError",
    "SaveError", "TrainingError", "StaleNetworkError", "PeerError", "to_onnx", "notices",
]
