"""The lock files hold every dependency pyproject.toml declares, pinned to a version its
specifier allows and hash-checked, and the runtime lock agrees with the development one.
When this fails after a change to pyproject.toml: run `make lock` and commit both files."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(name: str) -> dict[str, str]:
    """{canonical name: version} of a lock file; every pin carries at least one hash."""
    text = (ROOT / name).read_text()
    out: dict[str, str] = {}
    for block in re.split(r"\n(?=\S)", text):
        match = _PIN.match(block)
        if match is None:
            continue
        assert "--hash=sha256:" in block, f"{name}: {match.group(1)} has no hash"
        out[canonicalize_name(match.group(1))] = match.group(2)
    return out


def declared() -> tuple[list[Requirement], list[Requirement]]:
    """The runtime and the development requirements; the project's own extras named in the
    development group (``sentiment-monitor[transformer]``) are expanded to theirs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    runtime = [Requirement(r) for r in project["dependencies"]]
    dev: list[Requirement] = []
    for req in map(Requirement, extras["dev"]):
        if canonicalize_name(req.name) == canonicalize_name(project["name"]):
            dev += [Requirement(r) for extra in sorted(req.extras) for r in extras[extra]]
        else:
            dev.append(req)
    return runtime, dev


def test_the_weights_lock_pins_every_transformer_flavour_with_a_hash() -> None:
    from endpoint.transformer import FLAVOURS

    weights = pins("requirements-weights.lock")
    assert set(weights) == {
        canonicalize_name(d) for f in FLAVOURS.values() for d in f.distributions
    }


@pytest.mark.parametrize(
    ("lock", "groups"),
    [("requirements.lock", ("runtime",)), ("requirements-dev.lock", ("runtime", "dev"))],
)
def test_every_declared_dependency_is_pinned_within_its_specifier(
    lock: str, groups: tuple[str, ...]
) -> None:
    locked = pins(lock)
    runtime, dev = declared()
    wanted = runtime + (dev if "dev" in groups else [])
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in {lock}: run `make lock`"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"{lock} pins {req.name}=={locked[name]}, outside {req.specifier}: run `make lock`"
        )


def test_the_runtime_lock_agrees_with_the_development_lock() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert set(runtime) <= set(dev)
    assert {k: dev[k] for k in runtime} == runtime
