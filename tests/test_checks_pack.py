"""benchmarks/checks_run.sh's `pack`: every file under $OUT goes into one archive, the loose files
go (a device call hands back at most 8 files), summary.txt stays, and KEEP=1 keeps them all."""
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "checks_run.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("tar") is None,
                                reason="needs bash and tar")


def _fill(out: Path) -> set:
    (out / "sanitizers").mkdir(parents=True)
    files = {"summary.txt": "gpu_suite rc 0\n", "gpu_suite.txt": "509 passed\n",
             "base1/summary.json": "{}", "sanitizers/release_checks.tgz": "inner archive"}
    files.update({f"bench_{i}.txt": f"run {i}\n" for i in range(9)})
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    return set(files)


def _pack(out: Path, keep: bool = False) -> None:
    env = {"OUT": str(out), "PATH": "/usr/bin:/bin", **({"KEEP": "1"} if keep else {})}
    subprocess.run(["bash", "-c", f'source "{SCRIPT}" && pack state_checks'], env=env, check=True)


def _members(archive: Path) -> set:
    with tarfile.open(archive) as tar:
        return {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}


def test_pack_archives_everything_and_leaves_the_archive_and_summary(tmp_path):
    out = tmp_path / "out"
    written = _fill(out)
    _pack(out)
    assert sorted(p.name for p in out.iterdir()) == ["state_checks.tgz", "summary.txt"]
    assert _members(out / "state_checks.tgz") == written  # nested archives too
    assert (out / "summary.txt").read_text() == "gpu_suite rc 0\n"


def test_keep_leaves_the_loose_files_and_a_second_pack_does_not_nest_the_first(tmp_path):
    out = tmp_path / "out"
    written = _fill(out)
    _pack(out, keep=True)
    _pack(out, keep=True)
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == written | {"state_checks.tgz"}
    assert _members(out / "state_checks.tgz") == written
