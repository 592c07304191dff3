"""A fresh clone of the repository, with nothing beside it, carries what its tests need.

The clone is made from the committed HEAD into an empty temporary folder (so no `shared/` or
any other folder of this machine is beside it), and the part of the suite that reads the real
sample photos runs there, on SQLite.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    target = tmp_path_factory.mktemp("fresh") / "gridproof"
    _git("clone", "--quiet", "--no-hardlinks", str(ROOT), str(target), cwd=ROOT)
    return target


def test_a_fresh_clone_has_every_sample_its_manifest_names(clone: Path) -> None:
    samples = clone / "tests" / "samples"
    manifest = (samples / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
    names = {line.split("\t", 1)[0] for line in manifest[1:] if line}
    assert len(names) >= 50
    assert names == {p.name for p in samples.iterdir()} - {"MANIFEST.tsv", "README.md"}
    assert [p.name for p in clone.parent.iterdir()] == ["gridproof"]  # nothing beside it


def test_the_sample_tests_pass_in_a_fresh_clone(clone: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GRIDPROOF_"))}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-k",
            "sqlite or not postgresql",
            "tests/services/test_photos.py",
            "tests/services/test_checks.py",
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    assert "error" not in result.stdout.splitlines()[-1]
