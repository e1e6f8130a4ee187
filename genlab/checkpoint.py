"""Checkpoints: a trainer written to one file and read back to continue as if never stopped.

A checkpoint is a network file (genlab.network.file: Network.load reads it) with more members:
  __trainer__          JSON: settings, step count, random streams, growth bookkeeping, history
  start/...            the starting network (what Trainer.reset goes back to)
  opt/<state>/<block>  the optimizer's state of each parameter block (W_src_dst, b_g)
  range/lo_<g>, range/hi_<g>   pruning's activation ranges since it last judged
  dni/<g>/<name>       synthetic gradients in one process (genlab.DNI): each module's parameters
                       and Adam state (asynchronous/dni.py's module_entry)
Everything is validated on reading, like a network file; a failure is FileFormatError.
"""

from __future__ import annotations

import json
import math

import numpy as np

from .asynchronous.dni import DNI, decoupled
from .engines.base import EngineState
from .errors import ArgumentError, ArgumentTypeError, BackendError, FileFormatError, GenlabError
from .files import NpzReader, write_npz
from .network import Network
from .network.file import OPT, RANGE, START, json_member, read_from, read_json, to_arrays

FORMAT = "genlab.checkpoint"
FORMAT_VERSION = 1
DNI_MEMBER = "dni/"
MODULE_BYTES = 1 << 30  # the most one saved module array may hold


def _block(key: tuple) -> str:
    return f"W_{key[1]}_{key[2]}" if key[0] == "W" else f"b_{key[1]}"


def save(trainer, path, metadata: dict | None = None):
    """Write `trainer` to exactly `path`, atomically (Trainer.save)."""
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ArgumentTypeError(f"metadata must be JSON-ready (dicts, lists, strings, finite numbers): {e}") from None
    trainer.take_edits()  # edits since the last step are taken up (or refused) first
    net, engine = trainer.net, trainer.engine  # (net: the engine's parameters copied in)
    state = engine.export_state()
    policy = trainer.growth
    meta = {
        "format": FORMAT, "version": FORMAT_VERSION, "engine": engine.name,
        "optimizer": {"name": trainer.optimizer.name, **trainer.optimizer.settings()},
        "batch_size": trainer.batch_size, "seed": trainer.seed, "dtype": engine.dtype.name,
        "executor": trainer.executor, "step_count": trainer.step_count, "precision": trainer.precision,
        "every_step": trainer.every_step,
        "rng": trainer.rng.bit_generator.state, "net_rng": net.rng_state,
        "growth": policy.settings(), "criterion_function": callable(policy.criterion),
        "grower": trainer.grower.state(), "history": trainer.history.to_dict(),
        "ema": [[g, v] for g, v in state.ema.items()], "taylor": [[g, v] for g, v in state.taylor.items()],
        "ranges": sorted(state.ranges), "optimizer_blocks": [list(k) for k in state.optimizer],
        "placement": state.placement, "metadata": metadata,
    }
    meta["decouple"], modules = _modules(trainer)
    arrays = {**to_arrays(net), **to_arrays(trainer.start, prefix=START), "__trainer__": json_member(meta), **modules}
    for key, entry in state.optimizer.items():
        for name, value in entry.items():
            arrays[f"{OPT}{name}/{_block(key)}"] = np.asarray(value)
    for g, (lo, hi) in state.ranges.items():
        arrays[f"{RANGE}lo_{g}"], arrays[f"{RANGE}hi_{g}"] = lo, hi
    return write_npz(path, arrays)


def load(trainer_class, path, backend: str = "auto", executor: str | None = None, growth=None, distributed=None,
         world=None, precision=None):
    """The trainer a checkpoint describes, built as trainer_class (Trainer.load passes its class:
    this module builds trainers and does not import them)."""
    from .backends import ENGINES, resolve
    from .growth import GrowthPolicy
    from .history import History

    with NpzReader(path) as reader:
        net = read_from(reader, Network)
        if not reader.has("__trainer__"):
            raise FileFormatError(f"{reader.path} holds a network but no trainer (Network.load reads it)")
        meta = read_json(reader, "__trainer__")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise FileFormatError(f"{reader.path}: member '__trainer__' is not a genlab checkpoint of version "
                                  f"{FORMAT_VERSION}")
        start = read_from(reader, Network, START)
        if meta.get("criterion_function") and growth is None:
            raise ArgumentError("this checkpoint's growth criterion was a function, which a file cannot hold: "
                                "pass growth=GrowthPolicy(criterion=your_function, ...)")
        try:
            settings = {"sibling": "split", **meta["growth"]}  # written before fresh siblings: they split
            policy = growth if growth is not None else GrowthPolicy(**settings)
            opt = dict(meta["optimizer"])
            saved_executor = meta["executor"]
            engine_class = ENGINES[resolve(backend)](net.recurrent)
            saved_dni = meta.get("decouple")
            decouple = None if saved_dni is None else DNI(saved_dni["cuts"], saved_dni["conditioned"], saved_dni["lr"],
                                                          saved_dni.get("pipelined", False))
            if executor is None and saved_executor is not None and engine_class.has_executors:
                executor = saved_executor
            trainer = trainer_class(net, backend=backend, optimizer=opt.pop("name"), batch_size=meta["batch_size"],
                                    seed=meta["seed"], dtype=meta["dtype"], growth=policy, executor=executor,
                                    every_step=meta.get("every_step", False), distributed=distributed, world=world,
                                    precision=precision or meta.get("precision", "fp32"), decouple=decouple, **opt)
            state = _engine_state(reader, meta, net)
            trainer.engine.import_state(state, trainer.net)
            if saved_dni is not None:
                trainer.engine.import_modules({_group(g, net): {name: _module_array(reader, g, name) for name in names}
                                               for g, names in saved_dni["modules"]})
            trainer.start = start
            trainer.step_count = _count(meta["step_count"])
            trainer.rng.bit_generator.state = meta["rng"]
            net.rng_state = meta["net_rng"]
            trainer.history = History.from_dict(meta["history"])
            trainer.grower.restore(meta["grower"])
            trainer.metadata = meta["metadata"]
            reader.refuse_unread()
        except (FileFormatError, BackendError):
            raise  # already says what is wrong: the file, or the engine asked for
        except (GenlabError, KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            raise FileFormatError(f"{reader.path}: member '__trainer__' is inconsistent ({type(e).__name__}: {e})") \
                from None
    return trainer


def _modules(trainer) -> tuple[dict | None, dict]:
    """(meta's "decouple", the arrays) of a trainer with synthetic gradients in one process:
    the DNI settings and each module as module_entry gives it; (None, {}) for any other."""
    if not decoupled(trainer):
        return None, {}
    dni, modules = trainer.decouple, trainer.engine.export_modules()
    meta = {"cuts": list(dni.cuts), "conditioned": dni.conditioned, "lr": dni.lr, "pipelined": dni.pipelined,
            "modules": [[g, sorted(entry)] for g, entry in sorted(modules.items())]}
    return meta, {f"{DNI_MEMBER}{g}/{name}": value for g, entry in modules.items() for name, value in entry.items()}


def _module_array(reader: NpzReader, g: int, name: str) -> np.ndarray:
    """A saved module's array: finite floats, or (t_<name>) a step count."""
    member = f"{DNI_MEMBER}{g}/{name}"
    value = reader.array(member, MODULE_BYTES)
    if name.startswith("t_"):
        if value.shape != () or value.dtype.kind not in "iu" or int(value) < 0:
            raise FileFormatError(f"{reader.path}: member {member!r} must be a step count")
    elif value.dtype.kind != "f" or not np.isfinite(value).all():
        raise FileFormatError(f"{reader.path}: member {member!r} must be finite floats")
    return value


def _count(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"step count {value!r}")
    return value


def _engine_state(reader: NpzReader, meta: dict, net) -> EngineState:
    state = EngineState(placement=meta.get("placement"))
    shapes = {("W", s, d): w.shape for (s, d), w in net.weights.items()}
    shapes.update({("b", g): b.shape for g, b in net.biases.items()})
    names = [n for n in _state_names(meta["optimizer"]["name"])]
    for item in meta["optimizer_blocks"]:
        key = tuple(item)
        if key not in shapes:
            raise ValueError(f"optimizer state for {key}, which is not a parameter of the network")
        state.optimizer[key] = {n: _finite(reader, f"{OPT}{n}/{_block(key)}", shapes[key]) for n in names}
    for field in ("ema", "taylor"):
        getattr(state, field).update({_group(g, net): _real(v) for g, v in meta[field]})
    for g in meta["ranges"]:
        width = (net.widths[_group(g, net)],)
        state.ranges[g] = (_finite(reader, f"{RANGE}lo_{g}", width), _finite(reader, f"{RANGE}hi_{g}", width))
    return state


def _state_names(name: str) -> tuple:
    from .optim import OPTIMIZERS

    return OPTIMIZERS[name].state_names


def _group(g, net) -> int:
    if not isinstance(g, int) or isinstance(g, bool) or g not in net.widths:
        raise ValueError(f"{g!r} is not a group of the network")
    return g


def _real(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{v!r} is not a finite number")
    return float(v)


def _finite(reader: NpzReader, name: str, shape) -> np.ndarray:
    value = reader.array(name, 8 * math.prod(shape))
    if value.dtype.kind != "f" or value.shape != tuple(shape) or not np.isfinite(value).all():
        raise FileFormatError(f"{reader.path}: member {name!r} must be finite floats of shape {tuple(shape)}, got "
                              f"{value.dtype} {value.shape}")
    return value
