"""genlab.bench: the PyTorch baselines compute the same function as the serial engine; the reports, targets and merged runs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab import Network
from genlab.bench import torch_group_model, torch_level_model
from genlab.engines import SerialEngine
from genlab.optim import SGD


@pytest.mark.parametrize("make", [torch_group_model, torch_level_model])
@pytest.mark.parametrize("seed", range(3))
def test_torch_models_match_the_serial_engine(make, seed):
    net = Network.random_dag(5, 6, (1, 12), (1, 4), seed=seed, n_inputs=7, n_outputs=4, dtype=np.float64)
    rng = np.random.default_rng(seed)
    for b in net.biases.values():
        b[:] = rng.normal(size=b.shape) * 0.1
    x, y = rng.normal(size=(10, 7)), rng.integers(0, 4, 10)
    ref = SerialEngine(net, SGD(), dtype="float64")
    logits = ref.forward(x)
    loss = ref.backward(y)
    params, forward = make(net, torch.device("cpu"), torch.float64)
    out = forward(torch.from_numpy(x))
    np.testing.assert_allclose(out.detach().numpy(), logits, rtol=1e-10, atol=1e-12)
    torch_loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y))
    assert torch_loss.item() == pytest.approx(loss, rel=1e-12)
    torch_loss.backward()
    total = sum(float((p.grad ** 2).sum()) for p in params.parameters())  # padding entries get no gradient
    assert total == pytest.approx(sum(float((g ** 2).sum()) for g in ref.grads.values()), rel=1e-9)


def test_step_cost_counts_flops_and_fewest_bytes():
    from genlab.bench import step_cost

    net = Network.mlp([4, 3, 2])
    flops, nbytes = step_cost(net, batch=5)
    assert flops == 6 * 5 * (4 * 3 + 3 * 2)                      # 2 forward + 4 backward per weight and row
    assert nbytes == 4 * (4 * 5 * (4 + 3 + 2) + 7 * net.n_params)  # activations and gradients; Adam's traffic


def test_chart_and_help_need_no_gpu(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    from genlab.bench import chart

    summary = {"device": "a GPU", "workloads": {"W1": {"genlab_level": 1.5, "serial": 400.0, "compile_s": 12.0},
                                                "W5": {"genlab_level": {"total_s": 1.0, "growth_event_ms": 4.0}}}}
    chart(summary, tmp_path / "chart.png")
    assert Image.open(tmp_path / "chart.png").format == "PNG"
    result = subprocess.run([sys.executable, "-m", "genlab", "bench", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--workload" in result.stdout and "torch_compile" in result.stdout


def test_sweep_chart_draws_the_shapes_timed_beside_pytorch_only(tmp_path):
    from PIL import Image

    from genlab.bench.report import sweep_chart

    entry = {"best": "genlab_level", "auto_chose": "level", "auto_over_best": 1.0}
    without = {"device": "a GPU", "workloads": {"sweep": {"L3 G4 n8": entry}}}
    sweep_chart(without, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()  # no PyTorch column: nothing to compare
    timed = {"device": "a GPU", "workloads": {"sweep": {"L3 G4 n8": {**entry, "torch_over_best": 2.5},
                                                        "L12 G4 n8": {**entry, "best": "genlab_dataflow",
                                                                      "torch_over_best": 3.5}}}}
    sweep_chart(timed, tmp_path / "sweep.png")
    assert Image.open(tmp_path / "sweep.png").format == "PNG"


def _workload(ms, compute, memory, breakdown=None):
    result = {"ms_per_step": {"genlab_level": ms, "torch_level_graph": 4 * ms}, "genlab_best": "genlab_level",
              "floor_ms": {"compute": compute, "memory": memory, "floor": max(compute, memory)}}
    if breakdown:
        result["breakdown"] = breakdown
    return result


def test_bound_names_the_resource_that_bounds_a_step():
    from genlab.bench import bound

    assert bound(_workload(20.0, 16.0, 2.0))["bound"] == "arithmetic"
    assert bound(_workload(1.0, 0.1, 0.6))["bound"] == "memory traffic"
    levels = {"executor": "dataflow_rows", "levels": 17, "forward_per_level_us": 11.0, "backward_per_level_us": 18.0,
              "forward_item_work_us": 7.0, "backward_item_work_us": 10.0}
    latency = bound(_workload(0.6, 0.06, 0.02, levels))
    assert latency["bound"] == "latency along the levels"
    assert "17 forward levels at 11.0 us" in latency["why"] and "16 backward levels at 18.0 us" in latency["why"]
    assert latency["over_floor"] == pytest.approx(10.0) and latency["floor_ms"] == 0.06
    assert bound(_workload(0.6, 0.06, 0.02))["bound"] == "not measured"


def test_missed_targets_say_by_how_much_and_what_bounds_them():
    from genlab.bench import targets

    levels = {"executor": "dataflow_rows", "levels": 17, "forward_per_level_us": 11.0, "backward_per_level_us": 18.0}
    w4 = _workload(21.0, 16.0, 1.0)
    w4["ms_per_step"]["torch_level_graph"] = 20.0
    details = {"workloads": {"W1": _workload(0.6, 0.06, 0.02, levels), "W4": w4,
                             "W5": {"genlab_level": {"total_s": 1.0, "steps": 2000, "growth_event_ms": 2.0,
                                                     "mean_step_ms": 0.5,
                                                     "growth_event_phases_ms": {"total": 2.0, "new_groups": 3, "apply": 1.5}}}},
               "import": {"cold_s": 1.0, "warm_s": 0.4}}
    found = {t["target"]: t for t in targets(details)}
    fast = found["W1: genlab <= 0.15 ms a step"]
    assert not fast["met"] and fast["wanted"] == 0.15 and fast["shortfall"] == pytest.approx(4.0)
    assert fast["bound"] == "latency along the levels"
    graph = found["W1: >= 10x the PyTorch level-batched CUDA graph"]
    assert graph["measured"] == pytest.approx(4.0) and graph["shortfall"] == pytest.approx(2.5)
    met = found["W4: at most 1.2x PyTorch's best time"]
    assert met["met"] and "shortfall" not in met and "bound" not in met
    (w5,) = [t for k, t in found.items() if k.startswith("W5")]
    assert not w5["met"] and w5["shortfall"] == pytest.approx(4.0) and w5["bound"] == "host work of a growth event"
    assert "apply 1.50" in w5["why"]
    forward = found["W1: a forward level <= 3 us (dataflow_rows)"]
    assert not forward["met"] and forward["shortfall"] == pytest.approx(11 / 3)


def test_auto_and_the_small_network_have_targets_that_say_what_was_chosen():
    from genlab.bench import targets

    w1 = _workload(0.6, 0.06, 0.02)
    w1["ms_per_step"]["genlab_auto"] = 0.72
    w1.update(auto_over_best=1.2, auto={"executor": "level", "how": "trial", "ms": {"level": 0.7}})
    sweep = {"a": {"best": "genlab_level", "auto_chose": "level", "auto_over_best": 1.01, "auto": {"how": "cache"},
                   "ms_per_step": {}},
             "b": {"best": "genlab_dataflow", "auto_chose": "level", "auto_over_best": 1.05, "auto": {"how": "trial"},
                   "ms_per_step": {}}}
    runs = {"genlab_level": {"trainer_step_us": 40.0, "engine_step_us": 30.0, "device_us": 20.0},
            "genlab_dataflow": {"trainer_step_us": 60.0, "engine_step_us": 50.0, "device_us": 15.0}}
    small = {"description": "50 groups", "target_us": 50.0, "executors": runs, "best": "genlab_level",
             "trainer_step_us": 40.0}
    found = {t["target"]: t for t in targets({"workloads": {"W1": w1, "sweep": sweep, "small": small}})}
    auto = found["W1: auto within 10% of the best executor"]
    assert not auto["met"] and "auto chose level (trial)" in auto["why"]
    worst = found["sweep: auto's choice within 10% of the best executor on every shape (2 shapes; auto's own engine "
                  "timed apart: at most 1.050x)"]
    assert worst["met"] and worst["measured"] == 1.05
    tiny = found["small: a 50 groups trains at <= 50 us a step"]
    assert tiny["met"] and tiny["measured"] == 40.0
    small["trainer_step_us"] = runs["genlab_level"]["trainer_step_us"] = 80.0
    missed = {t["target"]: t for t in targets({"workloads": {"small": small}})}["small: a 50 groups trains at <= 50 us a step"]
    assert not missed["met"] and missed["bound"] == "host work" and "genlab_dataflow, 15 us" in missed["why"]


def test_the_precision_run_has_an_auto_target_per_workload_and_precision():
    """From the committed H200 run of `genlab bench --workload precision`."""
    import json

    from genlab import results_dir
    from genlab.bench import targets

    path = Path(str(results_dir())) / "NVIDIA_H200" / "speed_v2" / "precision" / "details.json"
    run = json.loads(path.read_text())["workloads"]["precision"]
    found = {t["target"]: t for t in targets({"workloads": {"precision": run}})}
    assert len(found) == 16
    w3 = found["W3 in tf32: auto within 10% of the best executor that offers it"]
    assert w3["met"] and w3["measured"] == pytest.approx(run["workloads"]["W3"]["by_precision"]["tf32"]["auto_over_best"])
    run["workloads"]["W3"]["by_precision"]["tf32"]["auto_over_best"] = 1.3
    missed = {t["target"]: t for t in targets({"workloads": {"precision": run}})}[w3["target"]]
    assert not missed["met"] and missed["shortfall"] == pytest.approx(1.3 / 1.1) and "auto chose level" in missed["why"]


def test_growth_phases_time_each_event_and_unwrap_on_exit():
    from genlab import GrowthPolicy, Trainer, network
    from genlab.bench import growth_phases

    topology, grow = network.Network.topology, Trainer.grow
    rng = np.random.default_rng(0)
    trainer = Trainer(Network.mlp([6, 4, 3], seed=0), backend="serial", seed=0,
                      growth=GrowthPolicy(threshold=0.0, every=2, cooldown=0, max_groups=8, mode="width"))
    with growth_phases(trainer) as events:
        for _ in range(6):
            trainer.step(rng.normal(size=(16, 6)).astype(np.float32), rng.integers(0, 3, 16))
    assert len(events) == 3 and [e["new_groups"] for e in events] == [1, 2, 2]
    for event in events:
        assert {"check", "duplicate", "apply", "topology"} <= set(event)
        assert 0 < event["duplicate"] <= event["check"] <= event["total"]
    assert network.Network.topology is topology and "grow" not in vars(trainer) and Trainer.grow is grow


def test_growth_phases_on_the_cuda_engine_time_the_rows_pending_update(fake_gpu):
    """The row executor's deferred update, applied by the first @settled call of an event, is a
    part of its own."""
    from genlab import GrowthPolicy, Trainer
    from genlab.bench import growth_phases

    rng = np.random.default_rng(0)
    trainer = Trainer(Network.mlp([6, 4, 3], seed=0), backend="cuda", seed=0, executor="dataflow_rows",
                      growth=GrowthPolicy(threshold=0.0, every=2, cooldown=0, max_groups=8, mode="width"))
    assert trainer.engine.executor.defer_update
    # the stand-in's statistics are zeros: grow the hidden groups the policy lets grow
    trainer.engine.choose_growth = lambda eligible, threshold, relative: [(g, 1.0) for g in sorted(eligible)]
    with growth_phases(trainer) as events:
        for _ in range(4):
            trainer.step(rng.normal(size=(16, 6)).astype(np.float32), rng.integers(0, 3, 16))
    assert len(events) == 2
    for event in events:
        assert {"check", "duplicate", "apply", "flush", "build", "replay"} <= set(event)
        assert 0 < event["flush"] <= event["total"]
    assert "flush" not in vars(trainer.engine) and "grow" not in vars(trainer)


def test_a_missed_import_target_names_what_genlab_cannot_avoid():
    from genlab.bench import targets

    slow = {"workloads": {}, "import": {"cold_s": 1.5, "warm_s": 0.66, "numpy_pycuda_context_s": 0.55}}
    (entry,) = targets(slow)
    assert not entry["met"] and entry["shortfall"] == pytest.approx(1.1)
    assert "0.55 s" in entry["why"] and "0.11 s" in entry["why"]
    (entry,) = targets({"workloads": {}, "import": {"cold_s": 1.5, "warm_s": 0.5, "numpy_pycuda_context_s": 0.4}})
    assert entry["met"] and "why" not in entry


def test_the_recurrence_benchmarks_torch_rnn_holds_the_networks_weights():
    torch = pytest.importorskip("torch")
    from genlab.bench.recurrence import case, torch_rnn
    from genlab.engines import SerialEngine
    from genlab.optim import SGD

    net, x, y = case(layers=3, steps=5, hidden=8, batch=4)
    rnn, head = torch_rnn(net, 3, torch.device("cpu"))
    with torch.no_grad():
        logits = head(rnn(torch.from_numpy(x))[0][:, -1]).numpy()
    np.testing.assert_allclose(logits, SerialEngine(net, SGD()).forward(x), rtol=1e-4, atol=1e-5)


def test_the_recurrence_benchmarks_share_of_the_ideal_overlap():
    from genlab.bench.recurrence import share_of_ideal
    from genlab.wavefront import ideal_speedup
    from genlab.network import Network

    cell = 0.01  # ms a cell: one layer over 64 steps costs 64 of them
    ideal = (2 + 64 - 1) * cell
    assert share_of_ideal(2, 64, ideal, 64 * cell) == pytest.approx(1.0)
    time_major = 2 * 64 * cell  # no overlap at all: the share is one over the ideal speedup
    expected = 1 / ideal_speedup(Network.elman(4, [8, 8], 3), 64)
    assert share_of_ideal(2, 64, time_major, 64 * cell) == pytest.approx(expected)
    assert share_of_ideal(2, 64, 2 * ideal, 64 * cell) == pytest.approx(0.5)


def test_the_sweep_judges_auto_by_the_executor_it_chose():
    from genlab.bench import sweep

    entry = {"ms_per_step": {"genlab_level": 1.0, "genlab_dataflow": 0.8, "genlab_dataflow_rows": 0.9,
                             "genlab_auto": 0.95}, "auto": {"executor": "dataflow_rows", "how": "trial"}}
    sweep.judge(entry)
    assert entry["best"] == "genlab_dataflow" and entry["auto_chose"] == "dataflow_rows"
    assert entry["auto_over_best"] == pytest.approx(0.9 / 0.8)
    assert entry["auto_measured_over_best"] == pytest.approx(0.95 / 0.8) and "torch_over_best" not in entry
    entry["ms_per_step"]["torch_level_graph"] = 0.5  # faster than every executor: still not the best executor
    sweep.judge(entry)
    assert entry["best"] == "genlab_dataflow" and entry["torch_over_best"] == pytest.approx(0.5 / 0.8)
    shapes = sweep.shapes()
    grid = [name for name in shapes if name.startswith("L")]
    assert len(grid) == len(sweep.DEPTHS) * len(sweep.PER_LEVEL) * len(sweep.WIDTHS)
    assert {"tiny:", "odd:", "mixed", "wide"} <= {name.split()[0] for name in shapes}
    net, batch = shapes["odd: L7 G13 n13, batch 100"][0](), shapes["odd: L7 G13 n13, batch 100"][1]
    assert batch == 100 and net.n_inputs == 37 and set(net.widths.values()) >= {13, 37, 7}


def test_a_run_records_the_commit_of_its_code(monkeypatch, tmp_path):
    from genlab.bench import report

    monkeypatch.setenv("GENLAB_COMMIT", "abc123")
    assert report.commit() == "abc123"
    monkeypatch.delenv("GENLAB_COMMIT")
    found = report.commit()
    root = Path(report.__file__).resolve().parents[2]
    if (root / ".git").exists():  # a checkout: HEAD's 40 hex digits, "+changes" if the tree differs
        head, _, rest = found.partition("+")
        assert len(head) == 40 and int(head, 16) >= 0 and rest in ("", "changes")
    monkeypatch.setenv("PATH", str(tmp_path))  # no git to ask
    assert report.commit() == "unknown"


def _run(device="GPU", commit="c0ffee", date="2026-12-06", **workloads):
    return {"environment": {"device": device, "commit": commit, "date": date}, "command": f"genlab bench {sorted(workloads)}",
            "ceilings": {"copy_bytes_per_s": 3e12, "fp32_matmul_flops_per_s": 5e13}, "import": {"cold_s": 1.0, "warm_s": 0.5},
            "workloads": workloads}


def test_runs_of_one_commit_on_one_device_merge_into_one_report(tmp_path):
    from genlab.bench import merge

    w1 = {"ms_per_step": {"genlab_dataflow_rows": 0.5, "torch_level_graph": 2.0}}
    w4 = {"ms_per_step": {"genlab_level": 21.0, "torch_level_graph": 22.0}}
    for name, run in (("a", _run(W1=w1)), ("b", _run(date="2026-12-07", W4=w4))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "details.json").write_text(json.dumps(run))
    assert merge.main(["--note", "two parts", str(tmp_path / "out"), str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    got = json.loads((tmp_path / "out" / "details.json").read_text())
    assert list(got["workloads"]) == ["W1", "W4"] and got["workloads"]["W4"] == w4
    assert got["environment"]["date"] == "2026-12-06 to 2026-12-07" and got["runs"] == ["two parts"]
    assert [p["workloads"] for p in got["parts"]] == [["W1"], ["W4"]]
    assert any(t["target"].startswith("W1: >= 10x") and t["measured"] == 4.0 for t in got["targets"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["workloads"]["W1"]["genlab_dataflow_rows"] == 0.5


@pytest.mark.parametrize("other, error", [(_run(device="other", W4={}), "devices"), (_run(commit="beef", W4={}), "commits"),
                                          (_run(W1={}), "W1 was measured by more than one run"),
                                          (_run(commit="unknown", W4={}), "unknown code"),
                                          (_run(commit="c0ffee+changes", W4={}), "unknown code"),
                                          (_run(commit=None, W4={}), "unknown code")])
def test_runs_that_are_not_one_report_are_refused(other, error):
    from genlab.bench import merge

    with pytest.raises(merge.MergeError, match=error):
        merge.merge([_run(W1={"ms_per_step": {}}), other])
    with pytest.raises(merge.MergeError, match="no runs"):
        merge.merge([])


def test_the_sweep_has_a_target_against_pytorch_judged_by_its_worst_shape():
    from genlab.bench import sweep
    from genlab.bench.targets import targets

    def shape(mine, theirs):
        return sweep.judge({"ms_per_step": {"genlab_level": mine, "genlab_auto": mine, "torch_level_graph": theirs},
                            "auto": {"executor": "level", "how": "trial"}})

    details = {"workloads": {"sweep": {"a": shape(1.0, 5.0), "b": shape(1.0, 2.5), "c": {"skipped": "too big"}}}}
    found = [t for t in targets(details) if "PyTorch level-batched CUDA graph on every shape" in t["target"]]
    assert len(found) == 1 and found[0]["measured"] == pytest.approx(2.5) and not found[0]["met"]
    assert found[0]["why"].startswith("b:") and "1 of 2 shapes" in found[0]["why"]
    details["workloads"]["sweep"]["b"] = shape(1.0, 3.5)
    assert [t["met"] for t in targets(details) if "on every shape (2 shapes)" in t["target"]] == [True]
