"""The network file: one .npz holding a JSON metadata member (__meta__: format, version, dtype,
widths, edges in each group's input order, kinds, next id, growth history) and one array per
weight block (W_src_dst) and bias (b_g). No pickled code."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import FileFormatError, GraphError
from .kinds import DEFAULT, get_kind
from .network import INPUT, OUTPUT, Network, _check_width

FORMAT = "genlab.network"
FORMAT_VERSION = 1


def to_meta(net: Network) -> dict:
    return {
        "format": FORMAT, "version": FORMAT_VERSION, "dtype": net.dtype.name,
        "widths": {str(g): w for g, w in net.widths.items()},
        # edges in connection order per destination, so inputs() survives a round trip
        "edges": [[s, d] for d in net.groups for s in net.inputs(d)],
        "kinds": {str(g): k for g, k in net.kinds.items()},
        "next_id": net._next_id, "history": net.history,
    }


def to_arrays(net: Network) -> dict[str, np.ndarray]:
    arrays = {f"W_{s}_{d}": w for (s, d), w in net.weights.items()}
    arrays.update({f"b_{g}": b for g, b in net.biases.items()})
    return arrays


def write(net: Network, path) -> Path:
    """Write `net` to path (.npz appended when missing); return the path written."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz")
    meta = np.frombuffer(json.dumps(to_meta(net)).encode(), dtype=np.uint8)
    np.savez(path, __meta__=meta, **to_arrays(net))
    return path


def read(path) -> Network:
    """The network in a file written by write(); a damaged or foreign file raises FileFormatError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise FileFormatError(f"{path} is not a readable genlab network file ({e})") from None
    try:
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    except KeyError:
        raise FileFormatError(f"{path} is an .npz file but not a genlab network (no metadata)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FileFormatError(f"{path}: damaged metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FileFormatError(f"{path} is not a genlab network file")
    if meta.get("version") != FORMAT_VERSION:
        raise FileFormatError(f"{path} has format version {meta.get('version')}; "
                              f"this genlab reads version {FORMAT_VERSION}")
    try:
        return from_meta(meta, arrays)
    except (KeyError, TypeError, ValueError) as e:  # GraphError is a ValueError
        raise FileFormatError(f"{path}: inconsistent contents ({type(e).__name__}: {e})") from None


def from_meta(meta: dict, arrays: dict[str, np.ndarray]) -> Network:
    """The network that to_meta and to_arrays describe (validated)."""
    widths = {int(g): int(w) for g, w in meta["widths"].items()}
    net = Network(widths[INPUT], widths[OUTPUT], dtype=meta["dtype"])
    # files written before group kinds hold dense groups only
    kinds = {int(g): str(k) for g, k in meta.get("kinds", {}).items()}
    net.kinds = {g: get_kind(kinds.get(g, DEFAULT)).name for g in widths if g != INPUT}
    for g in sorted(widths):
        if g not in (INPUT, OUTPUT):
            _check_width(widths[g], f"group {g}")
            net.widths[g] = widths[g]
            net._in[g], net._out[g] = [], []
    for s, d in meta["edges"]:
        s, d = int(s), int(d)
        if s not in widths or d not in widths:
            raise GraphError(f"edge {s} -> {d} names a group that does not exist")
        net.weights[(s, d)] = np.array(arrays[f"W_{s}_{d}"])
        net._in[d].append(s)
        net._out[s].append(d)
    net.biases = {g: np.array(arrays[f"b_{g}"]) for g in widths if g != INPUT}
    net.history = list(meta["history"])
    net._next_id = int(meta["next_id"])
    net.validate()
    return net
