"""Every lever kept as a patch in benchmarks/levers applies to the code as it stands, as
docs/optimizer-benchmark.md promises: a change of the optimizer that breaks one fails here until the patch is
regenerated (apply it with ``git apply -3``, resolve, ``git diff HEAD``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATCHES = sorted((ROOT / "benchmarks" / "levers").glob("*.patch"))


def test_the_levers_are_there() -> None:
    assert len(PATCHES) >= 4, PATCHES


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="checks the patches against a git checkout")
@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_a_lever_patch_applies_to_the_current_code(patch: Path) -> None:
    result = subprocess.run(["git", "apply", "--check", str(patch)], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, f"{patch.name} no longer applies: {result.stderr}"
