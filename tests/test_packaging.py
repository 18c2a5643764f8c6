"""The wheel holds every subpackage: pyproject.toml lists packages by hand, so a new folder would work in the
editable install and the tests but be missing from a built wheel; this test notices."""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["setuptools"]


def _packages_on_disk(package_dir: dict[str, str]) -> set[str]:
    """Every folder with an ``__init__.py`` under a mapped folder, as its import name."""
    found = set()
    for name, folder in package_dir.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if any(part.startswith((".", "__")) for part in rel.parts):
                continue
            found.add(".".join((name, *rel.parts)))
    return found


def test_every_package_folder_is_listed_for_the_wheel():
    config = _config()
    listed = set(config["packages"])
    on_disk = _packages_on_disk(config["package-dir"])
    assert on_disk - listed == set(), f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
    assert listed - on_disk == set(), f"listed but not a package folder: {sorted(listed - on_disk)}"


def test_mapped_folders_do_not_overlap():
    """A folder mapped twice would put one module into the wheel under two names."""
    folders = [Path(f) for f in _config()["package-dir"].values()]
    for a in folders:
        for b in folders:
            assert a == b or a not in b.parents, f"{a} is inside {b}"
