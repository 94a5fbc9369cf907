"""The README's integrator example runs as written, and its dependency list is pyproject's."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def first_python_block(heading: str) -> str:
    """The first ```python block after ``heading`` (a whole line of the README)."""
    section = README.split(f"\n{heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def test_integrator_example_and_admin_snippet_run_as_written(
    tmp_path: Path, redis_url: str
) -> None:
    """Written to a file of its own, as a newcomer would, with the admin snippet after it."""
    script = tmp_path / "app.py"
    script.write_text(
        first_python_block("## Integrator example") + "\n" + first_python_block("### Admin pages")
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "SMS_"))}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={
            **clean,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.db'}",
            "REDIS_URL": redis_url,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"\d+ queued\n", done.stdout), done.stdout


def test_dependency_list_matches_pyproject() -> None:
    paragraph = README.split("Runtime dependencies:", 1)[1].split("\n\n", 1)[0]
    listed = {
        name.strip().lower()
        for name in re.sub(r"\([^)]*\)", "", paragraph).replace("\n", " ").rstrip(". ").split(",")
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {
        re.split(r"[<>=\[ ;]", spec, maxsplit=1)[0].lower() for spec in project["dependencies"]
    }
    assert listed == required


def test_readme_lua_examples_are_the_tested_files() -> None:
    """The README's Lua examples are copies of docs/lua/*.lua, the files the tests run."""
    blocks = re.findall(r"```lua\n(.*?)```", README, re.S)
    comment = re.compile(r"^--.*\n", re.M)  # the files open with a comment the README omits
    files = sorted((ROOT / "docs" / "lua").glob("*.lua"))
    assert sorted(blocks) == sorted(comment.sub("", f.read_text()) for f in files)
