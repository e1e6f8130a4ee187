"""The attention kind, in one folder:

    reference.py  the kind itself (Attention): options, shapes, the NumPy forward and backward
                  every engine is tested against, growth's identity and split, pruning's fold
    cuda.py       its CUDA side (a KindCuda the CUDA engine finds here): the lists and the cache
                  its kernels read, its launches; its kernels are cuda/attention.cu

Registered by its line in genlab/kinds/__init__.py's KINDS; cuda.py is imported by the CUDA
engine only (it reads the engine's records), never from here."""

from .reference import Attention, positions, unpack

__all__ = ["Attention", "positions", "unpack"]
