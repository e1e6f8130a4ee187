"""The network: a DAG of neuron groups (each of a kind), its edges (recurrent ones with a delay),
its parameters and its edits, in rooms imported one way (each only from those above it here,
and from the floors below the network: genlab.kinds, shapes, dag, checks):

    blocks.py        the counted parameter dicts (an edit bumps the network's version)
    holding.py       the trainer holding newer parameters than the network's arrays (read: settled)
    constructors.py  Network.mlp, elman, random_dag; init_params; summary
    validation.py    whether a network can run
    file.py          the network file format (one .npz, JSON metadata), validated on reading
    core.py          Network, composing them
    duplication.py   growth's duplications of a group, written without the checked edits' searches
"""

from ..group_ids import INPUT, OUTPUT
from .core import Network

__all__ = ["INPUT", "OUTPUT", "Network"]
