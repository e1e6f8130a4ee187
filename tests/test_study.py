"""The growth study: its arms compare what they claim to (same steps for random growth, the same
topology re-initialised, the same size), runs are reproducible in or out of worker processes,
and the command line refuses bad choices before any work."""

import json
from dataclasses import replace

import numpy as np
import pytest

from genlab import study
from genlab.cli import main
from genlab.study import arms, torch_arm

TINY = {"digits": replace(study.TASKS["digits"], epochs=3, max_groups=6)}


@pytest.fixture(scope="module")
def tiny():
    return study.run(TINY, seeds=(0, 1), progress=False)


def test_every_arm_runs_and_compares_what_it_claims(tiny):
    runs = {(r["arm"], r["seed"]): r for r in tiny["runs"]}
    assert sorted(runs) == sorted((a, s) for a in study.ARMS for s in (0, 1))
    for seed in (0, 1):
        grown, regrown, layered, rand, torch = (runs[(a, seed)] for a in study.ARMS)
        assert grown["groups"] == 6 and grown["topology"]["edges"]  # the budget, reached
        duplications = [e for e in grown["events"] if e["kind"] in ("depth", "width")]
        steps = lambda r: sorted(e["step"] for e in r["events"] if e["kind"] in ("depth", "width"))
        assert steps(rand) == steps(grown) == sorted(e["step"] for e in duplications)
        assert regrown["parameters"] == grown["parameters"] and regrown["groups"] == grown["groups"]
        assert regrown["curve"] != grown["curve"] and not regrown["events"]
        for same_size in (layered, torch):
            assert abs(same_size["parameters"] - grown["parameters"]) <= 0.05 * grown["parameters"] + 80
        for r in (grown, regrown, layered, rand, torch):
            assert len(r["curve"]) == 3 and r["accuracy"] == r["curve"][-1] and 0.12 < r["accuracy"] <= 1  # above chance (0.1)
            assert r["seconds"] > 0
    s = tiny["summary"]["digits"]["grown"]
    acc = [runs[("grown", seed)]["accuracy"] for seed in (0, 1)]
    assert s["accuracy_mean"] == pytest.approx(np.mean(acc)) and s["accuracy_std"] == pytest.approx(np.std(acc, ddof=1))
    json.dumps(tiny)  # JSON-ready as it is


def test_the_random_arm_draws_from_the_groups_that_may_grow():
    task = TINY["digits"]
    grown = arms.grown(task, 3, "serial")
    again = arms.random(task, 3, "serial", grown)
    assert arms.random(task, 3, "serial", grown).events == again.events  # seeded
    assert all(e["kind"] in ("depth", "width") for e in again.events)


def test_worker_processes_give_the_same_runs(tiny):
    other = study.run(TINY, seeds=(1,), arms=("grown", "regrown"), jobs=2, progress=False)
    mine = {(r["arm"], r["seed"]): r["curve"] for r in tiny["runs"]}
    for r in other["runs"]:
        assert r["curve"] == mine[(r["arm"], r["seed"])]


def test_pictures_have_a_panel_per_dataset_with_legends(tiny):
    for fig in (study.accuracy_vs_parameters(tiny), study.learning_curves(tiny)):
        (ax,) = [a for a in fig.axes if a.get_visible()]
        assert ax.get_title() == "digits" and ax.get_legend() is not None
        assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"grown", "random growth"}


def test_torch_models_match_the_size_asked_for():
    import torch

    for name, kind in (("digits", "dense"), ("digits_images", "conv"), ("digits_rows", "recurrent")):
        data = study.Task(name, kind, 8, 1)
        d = arms.data_for(data, 0)
        for target in (2_000, 20_000):
            model, _ = torch_arm.model(data, d, target)
            n = sum(p.numel() for p in model.parameters())
            assert abs(n - target) / target < 0.05, (name, n, target)
            x = torch.as_tensor(d.X_train[:3])
            assert model(x).shape == (3, 10)


def test_the_command_refuses_bad_choices_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["study", "--quick", "--datasets", "mnist", "--out", str(out)]) == 2
    assert "--datasets: mnist is not among the study's quick tasks (digits, mnist1d)" in capsys.readouterr().err
    assert main(["study", "--arms", "random,torch", "--out", str(out)]) == 2
    assert "grown among them" in capsys.readouterr().err
    assert not out.exists()


def test_the_command_writes_the_study(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(study.tasks, "QUICK", TINY)
    monkeypatch.setitem(study.QUICK, "digits", TINY["digits"])
    assert main(["study", "--quick", "--datasets", "digits", "--seeds", "1", "--arms", "grown,layered",
                 "--out", str(tmp_path), "--quiet", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((tmp_path / "study.json").read_text())
    assert printed["summary"] == written["summary"] and set(written["summary"]["digits"]) == {"grown", "layered"}
    assert (tmp_path / "learning_curves.png").stat().st_size > 10_000


def test_parts_run_apart_merge_into_one_study(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENLAB_COMMIT", "abc123")
    again = study.run(TINY, seeds=(0,), arms=("grown", "layered"), progress=False)
    assert again["commit"] == "abc123"
    merged = study.merge(tiny, again)
    assert [r["arm"] for r in merged["runs"]] == ["grown", "layered"]  # the later part replaced digits
    assert merged["summary"]["digits"] == again["summary"]["digits"]
    assert [p["tasks"] for p in merged["parts"]] == [["digits"]] and merged["parts"][0]["commit"] == "abc123"
    other = {**tiny, "tasks": {"other": {}}, "summary": {"other": {}},
             "runs": [{**r, "task": "other"} for r in tiny["runs"]]}
    both = study.merge(tiny, other)
    assert sorted(both["summary"]) == ["digits", "other"] and len(both["runs"]) == 2 * len(tiny["runs"])
    assert [p["tasks"] for p in both["parts"]] == [["digits"], ["other"]]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(tiny))
    b.write_text("{}")
    assert main(["study", "--merge", str(a), str(b), "--out", str(tmp_path / "m")]) == 2
    assert "is not a study.json" in capsys.readouterr().err
    assert main(["study", "--merge", str(a), "--out", str(tmp_path / "m"), "--quiet"]) == 0
    assert json.loads((tmp_path / "m" / "study.json").read_text())["summary"] == tiny["summary"]


def test_the_committed_study_and_its_verdicts():
    from pathlib import Path

    committed = Path(__file__).parent.parent / "benchmarks/results/NVIDIA_H200/study/study.json"
    shipped = study.published()
    assert shipped == json.loads(committed.read_text())
    rows = study.compare(shipped)
    assert {r["against"] for r in rows} == {"regrown", "layered", "random", "torch"}
    for r in rows:
        s = shipped["summary"][r["task"]]
        assert r["accuracy_difference"] == pytest.approx(s["grown"]["accuracy_mean"] - s[r["against"]]["accuracy_mean"])
        assert (r["verdict"] == "within noise") == (abs(r["accuracy_difference"]) <= r["noise"])
