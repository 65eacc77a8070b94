"""The promises the repository makes to a newcomer hold together."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def readme_commands() -> list[str]:
    block = re.search(r"## Quickstart.*?```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_quickstart_has_two_lines_start_then_test() -> None:
    start, test = readme_commands()
    assert start.endswith("flask run")
    assert "flask db upgrade" in start
    assert test.endswith("pytest")


def test_ci_runs_the_readme_test_line() -> None:
    _, test = readme_commands()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci_lines


def test_top_level_is_the_design_cards() -> None:
    tracked = {p.name for p in ROOT.iterdir() if not p.name.startswith(".") or p.name == ".ci"}
    expected = {"pyproject.toml", "app.py", "site", "templates", "migrations", "tests"}
    assert expected <= tracked
    assert (ROOT / ".env.example").exists()


def test_every_setting_is_documented_in_the_readme() -> None:
    from microsite.config import DEFAULTS

    readme = (ROOT / "README.md").read_text()
    assert [name for name in DEFAULTS if f"`{name}`" not in readme] == []
