"""The pinned versions live in pyproject.toml; environment.yml must mirror them exactly."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pins_from_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = meta["dependencies"] + [r for extra in meta["optional-dependencies"].values() for r in extra]
    return dict(r.split("==") for r in reqs)


def pins_from_environment_yml():
    text = (ROOT / "environment.yml").read_text()
    pip_section = text.split("- pip:", 1)[1]
    return dict(re.findall(r"^\s+-\s+([A-Za-z0-9_.\-]+)==([^\s#]+)", pip_section, re.M)), text


def test_every_dependency_is_pinned_exactly():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in meta["dependencies"] + meta["optional-dependencies"]["test"]:
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.+\-]*", req), f"not pinned exactly: {req}"


def test_environment_yml_mirrors_pyproject():
    pyproject = pins_from_pyproject()
    env, text = pins_from_environment_yml()
    assert env == pyproject
    assert re.search(r"^\s+-\s+python=3\.11\s*$", text, re.M)
    assert pyproject["torch"] == "2.14.1" and pyproject["torchvision"] == "0.29.1"
