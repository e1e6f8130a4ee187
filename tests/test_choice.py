"""executor="auto" without a GPU: the cost model, the candidates, the cache on disk, the names."""

import json

import pytest

from genlab import BackendError, Network, Trainer
from genlab.engines.cuda import choice
from genlab.engines.cuda.executors import AUTO, DEFAULT, EXECUTORS, check_name


def shape(width, widest=None, kinds=("dense",), depth=16, groups=2048, batch=256):
    return choice.Shape(kinds, depth, groups, width, widest or width, batch)


def test_auto_is_the_default_and_names_are_checked():
    assert DEFAULT == AUTO == "auto" and AUTO not in EXECUTORS
    assert check_name("auto") == "auto" and check_name("level") == "level"
    with pytest.raises(BackendError, match=r"choose 'auto', 'wavefront' \(recurrent networks\) or one of level"):
        check_name("fastest")


def test_the_model_takes_rows_for_narrow_groups_and_level_for_wide_ones():
    assert choice.model(shape(16)) == "dataflow_rows"  # W1
    assert choice.model(shape(8, depth=64)) == "dataflow_rows"  # W2
    assert choice.model(shape(32)) == "dataflow"  # the sweep's groups of 32
    assert choice.model(shape(64)) == "level"  # W3
    assert choice.model(shape(4096, depth=16, groups=8)) == "level"  # W4
    assert choice.model(shape(16, widest=512)) == "level"  # one very wide group
    assert choice.model(shape(16, kinds=("conv", "dense"))) == "level"  # only level runs conv


def test_the_candidates_are_the_executors_that_run_every_kind():
    assert [c.name for c in choice.candidates({"dense"})] == list(EXECUTORS)
    assert [c.name for c in choice.candidates({"dense", "attention"})] == ["level"]


def test_rounding_puts_near_shapes_together():
    assert [choice._round(n) for n in (0, 1, 3, 5, 6, 100, 2050)] == [0, 1, 4, 4, 8, 128, 2048]


def test_the_cache_round_trips_and_survives_a_bad_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(choice, "_CACHE", None)
    key = shape(16).key("GPU X")
    assert key.startswith("GPU X|kinds=('dense',)|depth=16")
    choice._store(key, {"executor": "dataflow_rows", "ms": {"level": 1.0, "dataflow_rows": 0.5}})
    monkeypatch.setattr(choice, "_CACHE", None)
    assert choice._cache()[key]["executor"] == "dataflow_rows"
    assert json.loads((tmp_path / "executors.json").read_text())[key]["ms"]["level"] == 1.0
    (tmp_path / "executors.json").write_text("[1, 2")
    monkeypatch.setattr(choice, "_CACHE", None)
    assert choice._cache() == {}
    choice.forget()
    assert not (tmp_path / "executors.json").exists()


def test_the_serial_engine_takes_auto_but_not_a_named_executor():
    net = Network.mlp([4, 3, 2], seed=0)
    assert Trainer(net, backend="serial", executor="auto").backend == "serial"
    with pytest.raises(BackendError, match="schedule of the CUDA engine"):
        Trainer(net, backend="serial", executor="level")
