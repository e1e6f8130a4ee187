import contextlib
import json
import subprocess
import sys

import pytest

import genlab


def run(*args):
    return subprocess.run([sys.executable, "-m", "genlab", *args], capture_output=True, text=True, timeout=300)


def test_train_digits_reaches_95_percent():
    result = run("train", "--dataset", "digits", "--backend", "serial", "--epochs", "30", "--seed", "0", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("dataset", "backend", "epochs", "groups", "edges", "parameters", "train_accuracy",
                "test_accuracy", "seconds"):
        assert key in report
    assert report["dataset"] == "digits" and report["backend"] == "serial" and report["epochs"] == 30
    assert report["groups"] == 4 and report["edges"] == 3 and report["parameters"] == 64 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10
    assert report["test_accuracy"] >= 0.95


def test_growing_from_a_single_group_reaches_95_percent():
    result = run("train", "--dataset", "digits", "--backend", "serial", "--start", "single", "--grow", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["groups_start"] == 3 and report["groups_end"] == report["groups"] > 3
    assert report["growth_events"] == report["groups_end"] - report["groups_start"] > 0
    assert report["test_accuracy"] >= 0.95


def test_train_saves_a_network_that_loads(tmp_path):
    path = tmp_path / "iris.npz"
    result = run("train", "--dataset", "iris", "--backend", "serial", "--epochs", "3", "--hidden", "8",
                 "--save", str(path), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "test_accuracy" in result.stdout
    assert genlab.Network.load(path).widths == {0: 4, 1: 3, 2: 8}


def test_train_takes_a_precision_and_a_checkpoint_keeps_it(tmp_path):
    path = tmp_path / "iris.ckpt"
    first = run("train", "--dataset", "iris", "--backend", "serial", "--epochs", "2", "--precision", "bf16",
                "--save", str(path), "--json", "--quiet")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["precision"] == "bf16"
    resumed = run("train", "--resume", str(path), "--backend", "serial", "--epochs", "1", "--json", "--quiet")
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["precision"] == "bf16"
    changed = run("train", "--resume", str(path), "--precision", "fp32")
    assert changed.returncode == 2 and "--precision cannot change it" in changed.stderr
    bad = run("train", "--precision", "fp16")
    assert bad.returncode == 2 and "invalid choice: 'fp16'" in bad.stderr


def test_train_takes_an_executor_from_the_registry():
    from genlab.engines.cuda.executors import EXECUTORS

    result = run("train", "--dataset", "iris", "--epochs", "1", "--executor", "auto", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["executor"] == "auto"
    serial = run("train", "--dataset", "iris", "--epochs", "1", "--backend", "serial", "--executor", "level")
    assert serial.returncode != 0 and "schedule of the CUDA engine" in serial.stderr
    bad = run("train", "--executor", "fastest")
    assert bad.returncode == 2 and "invalid choice: 'fastest'" in bad.stderr
    assert all(name in bad.stderr for name in EXECUTORS)  # the choices come from the registry


def test_version_and_usage_errors():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"genlab {genlab.__version__}"
    bad = run("train", "--dataset", "mnist")
    assert bad.returncode == 2 and "invalid choice: 'mnist'" in bad.stderr
    bad = run("train", "--hidden", "64,-1")
    assert bad.returncode == 2 and "expected positive widths" in bad.stderr
    bad = run("train", "--start", "single", "--hidden", "8,8")
    assert bad.returncode == 2 and "--start single takes one width" in bad.stderr


def test_missing_cuda_is_an_error_not_a_traceback(monkeypatch, capsys):
    from genlab import backends, cli

    monkeypatch.setattr(backends, "cuda_status", lambda: (False, "the CUDA driver sees no GPU"))
    assert cli.main(["train", "--dataset", "iris", "--backend", "cuda", "--epochs", "1"]) == 2  # before any work
    assert capsys.readouterr().err == ("genlab train: error: the CUDA backend is not available: the CUDA driver sees "
                                       "no GPU\n")


def test_demo_writes_its_pictures_and_report(tmp_path):
    from PIL import Image

    out = tmp_path / "demo"
    result = run("demo", "--dataset", "moons", "--backend", "serial", "--epochs", "8", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == json.loads((out / "report.json").read_text())
    assert sorted(report["files"]) == ["curves.png", "dag.svg", "growth.gif", "growth.html", "heatmap.png",
                                       "report.json"]
    assert report["grown"]["groups"] > report["grown"]["groups_start"] == 3
    assert report["grown"]["growth_events"] > 0 and 0.5 < report["grown"]["test_accuracy"] <= 1
    assert abs(report["traditional"]["parameters"] - report["grown"]["parameters"]) < 0.2 * report["grown"]["parameters"]
    assert Image.open(out / "growth.gif").n_frames > 1
    for name in ("heatmap.png", "curves.png"):
        assert Image.open(out / name).format == "PNG"
    assert (out / "dag.svg").read_text().lstrip().startswith("<?xml")
    assert "data:image/svg+xml;base64" in (out / "growth.html").read_text()
    assert "step " in result.stderr  # growth events printed as they happen


def test_help_describes_each_command_and_shows_the_defaults():
    for command, words in (("train", ["Train a network", "(default: digits)", "about 2000 steps", "(default: adam)"]),
                           ("demo", ["Grow a network from one group", "(default: genlab-demo)"])):
        result = run(command, "--help")
        assert result.returncode == 0 and all(w in " ".join(result.stdout.split()) for w in words), result.stdout
        assert "(default: None)" not in result.stdout and "(default: False)" not in result.stdout


def test_quiet_prints_the_results_and_nothing_else():
    """Not even the note that "auto" fell back to the serial engine (it goes to stderr otherwise)."""
    from genlab.backends import cuda_status

    result = run("train", "--dataset", "iris", "--epochs", "1", "--quiet")
    assert result.returncode == 0 and "test_accuracy" in result.stdout
    assert result.stderr == ""
    if not cuda_status()[0]:
        loud = run("train", "--dataset", "iris", "--epochs", "1")
        assert "genlab: using the serial engine" in loud.stderr


def test_quiet_silences_the_growth_notes_too():
    loud = run("train", "--dataset", "iris", "--epochs", "60", "--start", "single", "--grow", "--max-groups", "4")
    assert "growth stopped at step" in loud.stderr
    quiet = run("train", "--dataset", "iris", "--epochs", "60", "--start", "single", "--grow", "--max-groups", "4",
                "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_defaults_by_dataset_last_about_2000_steps():
    from genlab import datasets

    assert datasets.default_epochs(datasets.load("digits")) == 47
    assert datasets.default_epochs(datasets.load("iris")) == 500
    report = json.loads(run("train", "--dataset", "wine", "--backend", "serial", "--json", "--quiet").stdout)
    assert report["epochs"] == 400 and 2000 <= report["steps"] < 2032


def test_grown_iris_comes_within_a_sample_of_the_plain_chain():
    """The per-dataset defaults at work on the set where 30 epochs left growth at 0.71."""
    plain = json.loads(run("train", "--dataset", "iris", "--backend", "serial", "--json", "--quiet").stdout)
    grown = json.loads(run("train", "--dataset", "iris", "--backend", "serial", "--json", "--quiet", "--start",
                           "single", "--grow").stdout)
    assert grown["groups"] == 16 and plain["test_accuracy"] - grown["test_accuracy"] <= 1 / 38 + 1e-9


def test_train_images_and_rows_start_from_their_natural_kind_and_grow_it(tmp_path):
    """digits_images: a CNN by default, one conv group that grows with --start single --grow;
    digits_rows with --kind attention: attention groups; a kind the data cannot run is refused."""
    path = tmp_path / "grown.npz"
    result = run("train", "--dataset", "digits_images", "--backend", "serial", "--start", "single", "--grow",
                 "--epochs", "25", "--save", str(path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["growth_events"] > 0 and report["test_accuracy"] >= 0.9
    grown = genlab.Network.load(path)
    assert grown.input_shape == (1, 8, 8) and {grown.kinds[g] for g in grown.hidden_groups} == {"conv"}
    chain = json.loads(run("train", "--dataset", "digits_images", "--backend", "serial", "--epochs", "2",
                           "--json").stdout)
    assert chain["groups"] == 4 and chain["parameters"] == 8 * 9 + 8 + 16 * 8 * 9 + 16 + 10 * 16 * 16 + 10
    rows = run("train", "--dataset", "digits_rows", "--kind", "attention", "--backend", "serial", "--epochs", "3",
               "--save", str(tmp_path / "rows.npz"), "--json")
    assert rows.returncode == 0, rows.stderr
    assert "attention" in genlab.Network.load(tmp_path / "rows.npz").kinds.values()
    refused = run("train", "--dataset", "digits", "--kind", "conv")
    assert refused.returncode == 2 and "genlab train: error: digits holds flat samples: start from dense groups, not conv" \
        in refused.stderr


@pytest.mark.parametrize("argv, says", [
    (["train", "--seed", "1099511627776"], "--seed: must be from 0 to 4294967295, got 1099511627776"),
    (["train", "--hidden", "64,,32"], "expected positive widths"),
    (["train", "--epochs", "0"], "--epochs: must be from 1 to"),
    (["train", "--dataset", "digits_images", "--kind", "attention"], "genlab train: error: digits_images holds image"),
    (["train", "--dataset", "digits", "--kind", "conv"], "genlab train: error:"),
    (["demo", "--dataset", "digits", "--kind", "conv"], "genlab demo: error:"),
    (["study", "--datasets", "nope", "--quick"], "genlab study: error: --datasets: nope"),
])
def test_bad_options_are_usage_errors_before_any_work(argv, says, capsys):
    from genlab import cli

    with pytest.raises(SystemExit) if "--seed" in argv or "--hidden" in argv or "--epochs" in argv else \
            contextlib.nullcontext() as stopped:
        code = cli.main(argv)
    code = stopped.value.code if stopped is not None else code
    err = capsys.readouterr().err
    assert code == 2 and says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_bad_resume_or_save_is_one_line_and_exit_2(tmp_path, capsys):
    from genlab import cli

    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    assert cli.main(["train", "--resume", str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genlab train: error: --resume") and len(err.strip().splitlines()) == 1, err
    (tmp_path / "file").write_text("a file, not a folder")
    assert cli.main(["train", "--dataset", "iris", "--save", str(tmp_path / "file" / "x.npz")]) == 2
    assert capsys.readouterr().err.startswith("genlab train: error: --save: cannot write")


def test_a_failure_during_the_work_is_exit_1_and_keeps_what_was_saved(tmp_path, monkeypatch, capsys):
    from genlab import SaveError, Trainer, cli

    there = tmp_path / "run.ckpt"
    there.write_bytes(b"the last good checkpoint")

    def disk_full(self, path, **kwargs):
        raise SaveError(f"could not write {path} (No space left on device); the file there before is unchanged")

    monkeypatch.setattr(Trainer, "save", disk_full)
    assert cli.main(["train", "--dataset", "iris", "--epochs", "1", "--quiet", "--save", str(there)]) == 1
    assert capsys.readouterr().err.startswith("genlab train: error: could not write")
    assert there.read_bytes() == b"the last good checkpoint"


def test_bench_without_a_gpu_says_so(capsys, monkeypatch):
    from genlab import backends, cli

    monkeypatch.setattr(backends, "cuda_status", lambda: (False, "pycuda is not installed"))
    assert cli.main(["bench", "--workload", "W1"]) == 2
    err = capsys.readouterr().err
    assert err == "genlab bench: error: it times the CUDA engine, which cannot run here: pycuda is not installed\n"


def test_train_without_waiting_hogwild_and_synthetic_gradients(tmp_path):
    result = run("train", "--dataset", "digits", "--backend", "serial", "--epochs", "5", "--hogwild", "2", "--json",
                 "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["hogwild_workers"] == 2 and report["staleness_mean"] >= 0 and report["test_accuracy"] > 0.85
    result = run("train", "--dataset", "digits", "--backend", "serial", "--epochs", "10", "--decouple", "cdni",
                 "--json", "--quiet", "--save", str(tmp_path / "dni.ckpt"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["decouple"] == "cdni" and 0 < report["module_error"] and report["test_accuracy"] > 0.85
    assert report["pipelined"] is False
    result = run("train", "--dataset", "digits", "--backend", "serial", "--epochs", "10", "--decouple", "cdni",
                 "--pipelined", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["pipelined"] is True and report["test_accuracy"] > 0.85
    for bad, words in ((["--hogwild", "2", "--decouple", "dni"], "do not go together"),
                       (["--pipelined"], "give --decouple"),
                       (["--hogwild", "65"], "from 1 to 64"),
                       (["--decouple", "cdni", "--resume", str(tmp_path / "dni.ckpt")], "modules")):
        result = run("train", "--dataset", "digits", "--backend", "serial", "--quiet", *bad)
        assert result.returncode == 2 and words in result.stderr and result.stdout == "", (bad, result.stderr)
    result = run("train", "--backend", "serial", "--epochs", "1", "--json", "--quiet", "--resume",
                 str(tmp_path / "dni.ckpt"))  # the modules come back with the run
    assert result.returncode == 0, result.stderr
    again = json.loads(result.stdout)
    assert again["decouple"] == "cdni" and again["test_accuracy"] > 0.85
