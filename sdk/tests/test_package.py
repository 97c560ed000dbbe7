"""What the `octotrace` distribution ships: the SDK, not its fakes. The mock NIM and the fake
`pynvml` are the separate `octotrace-testing` distribution (sdk/testing/)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SDK = Path(__file__).resolve().parent.parent


def built_files(source: Path, tmp_path: Path) -> set[str]:
    """The files setuptools puts in the distribution of `source` (build_py on a copy, so no
    egg-info is written into the tree)."""
    copy = tmp_path / source.name
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py", "-d", str(out)],
        cwd=copy,
        check=True,
        capture_output=True,
    )
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


def test_the_sdk_distribution_ships_no_fakes(tmp_path: Path) -> None:
    files = built_files(SDK, tmp_path)
    assert "octotrace/__init__.py" in files and "octotrace/nvml.py" in files
    assert not [f for f in files if "testing" in f or "nim_mock" in f or "fake_pynvml" in f]
    assert not (SDK / "octotrace" / "testing").exists()


def test_the_fakes_are_their_own_distribution(tmp_path: Path) -> None:
    files = built_files(SDK / "testing", tmp_path)
    assert files == {f"octotrace_testing/{name}.py" for name in ("__init__", "nim_mock", "fake_pynvml")}
