"""The lock (``constraints.txt``) matches ``pyproject.toml``, and CI runs the README's command.

Every requirement of the project and its extras must be pinned in the lock at a version the
requirement allows; every pin the lock took from ``pyproject.toml`` must still be asked for
there. When this fails, rerun the one-line command in docs/DEPENDENCIES.md.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "constraints.txt"
PROJECT = "flight-lake (pyproject.toml)"


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: str
    via: tuple[str, ...]


def _lock() -> list[Pin]:
    """The lock's pins with the ``# via`` sources uv writes under each."""
    pins: list[Pin] = []
    current: Requirement | None = None
    via: list[str] = []

    def close() -> None:
        if current is not None:
            (specifier,) = tuple(current.specifier)
            assert specifier.operator == "==", f"not an exact pin: {current}"
            pins.append(Pin(canonicalize_name(current.name), Version(specifier.version),
                            str(current.marker or ""), tuple(via)))

    for raw in LOCK.read_text().splitlines():
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("#"):
            close()
            current, via = Requirement(line), []
            continue
        source = line.lstrip("#").strip()
        if raw.startswith("    #") and source and source != "via":
            via.append(source.removeprefix("via ").strip())
    close()
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        requirements += [Requirement(text) for text in extra]
    return requirements


def _readme_test_command() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Run the tests", 1)[1]
    block = re.search(r"```bash\n(.*?)\n```", section, re.S)
    assert block is not None, "README's 'Run the tests' has no bash block"
    return block.group(1).strip()


def test_every_requirement_is_pinned_at_a_version_it_allows() -> None:
    pins: dict[str, list[Pin]] = {}
    for pin in _lock():
        pins.setdefault(pin.name, []).append(pin)
    for requirement in _requirements():
        found = pins.get(canonicalize_name(requirement.name))
        assert found, f"{requirement} is not in constraints.txt: regenerate the lock"
        for pin in found:
            assert requirement.specifier.contains(pin.version, prereleases=True), (
                f"constraints.txt pins {pin.name}=={pin.version}, pyproject asks {requirement}"
            )


def test_every_pin_taken_from_pyproject_is_still_asked_for() -> None:
    asked = {canonicalize_name(r.name) for r in _requirements()}
    direct = {pin.name for pin in _lock() if PROJECT in pin.via}
    assert direct, "the lock names no direct requirement: was it made by the documented command?"
    assert direct <= asked, f"pinned for pyproject but no longer asked: {sorted(direct - asked)}"
    assert asked <= direct, f"asked by pyproject but not pinned for it: {sorted(asked - direct)}"


def test_the_lock_was_made_by_the_documented_command() -> None:
    header = LOCK.read_text().splitlines()[:2]
    command = header[1].lstrip("#").strip()
    assert "uv pip compile" in command
    assert command in (REPO / "docs" / "DEPENDENCIES.md").read_text()


def test_ci_runs_exactly_the_readme_test_command_from_the_lock() -> None:
    command = _readme_test_command()
    assert "-c constraints.txt" in command
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert ci[-1].strip() == command
