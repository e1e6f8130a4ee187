import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import genlab

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"graphviz": "python-graphviz", "build": "python-build", "torch": "pytorch"}  # PyPI name -> conda-forge name, where they differ


def requirement_names(specs):
    return {re.split(r"[<>=!~ \[]", s, maxsplit=1)[0].lower() for s in specs}


def test_environment_yml_is_in_step_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = requirement_names(project["dependencies"] + sum(project["optional-dependencies"].values(), []))
    listed = {re.split(r"[<>=! ]", line.strip()[2:], maxsplit=1)[0].lower()
              for line in (ROOT / "environment.yml").read_text().splitlines() if line.strip().startswith("- ")}
    missing = {CONDA_NAMES.get(n, n) for n in wanted} - listed
    assert not missing, f"environment.yml lacks {missing}"
    assert {"python", "jupyterlab", "cuda-nvcc", "-e ."} <= listed | {"-e ."}
    assert "- -e ." in (ROOT / "environment.yml").read_text()


def test_cuda_sources_are_found_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (Path(str(genlab.cuda_dir())) / "README.md").is_file()


def test_wheel_ships_the_cuda_folder_inside_the_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("genlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "genlab/cuda/README.md" in names
    assert sorted(n for n in names if n.startswith("genlab/cuda/")) == sorted(
        f"genlab/cuda/{p.name}" for p in (ROOT / "cuda").iterdir() if p.is_file())
    assert any(n.endswith("entry_points.txt") for n in names)
    # the committed results the notebooks read (genlab.results_dir()), every file of them
    assert sorted(n for n in names if n.startswith("genlab/results/")) == sorted(
        f"genlab/results/{p.relative_to(ROOT / 'benchmarks' / 'results').as_posix()}"
        for p in (ROOT / "benchmarks" / "results").rglob("*") if p.is_file())


def test_importing_genlab_needs_no_gpu_packages():
    code = "import sys, genlab; bad = {'pycuda', 'ipywidgets', 'graphviz', 'torch', 'sklearn'} & set(sys.modules); print(sorted(bad))"
    env = {**__import__("os").environ, "GENLAB_BACKEND": "serial"}  # no kernels loaded at import
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "[]"


def test_sdist_carries_what_its_own_tests_read(tmp_path):
    """The source archive holds the licence, the CI script and the README the tests read."""
    import tarfile

    subprocess.run([sys.executable, "-m", "build", "--sdist", "-o", str(tmp_path), str(ROOT)], check=True,
                   capture_output=True)
    (sdist,) = tmp_path.glob("genlab-*.tar.gz")
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    assert {"LICENSE", ".ci/run", "README.md", "CONTRIBUTING.md", "environment.yml", "cuda/constants.cuh",
            "tests/test_readme.py", "benchmarks/kernels/harness.py"} <= names
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_notebooks_read_no_path_of_the_checkout():
    """A notebook copied anywhere still runs: it reads committed results through
    genlab.results_dir() (inside the installed package), never a path relative to notebooks/."""
    import json

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        assert "../" not in code and "benchmarks/results" not in code, path.name
    assert (genlab.results_dir() / "NVIDIA_H200" / "study" / "study.json").is_file()
