"""docs/cli.md (every --help) and stories/story.schema.json are generated; these tests
keep them from drifting.

Regenerate both with:  COMICGEN_UPDATE_DOCS=1 pytest tests/test_docs.py
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import typer
from typer.testing import CliRunner

from comicgen.cli import app

DOCS = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
ENV = {"COLUMNS": "100", "TERMINAL_WIDTH": "100", "NO_COLOR": "1", "FORCE_COLOR": None}


def commands(group: click.Group, prefix: list[str]):
    yield prefix
    for name in group.list_commands(click.Context(group)):
        sub = group.get_command(click.Context(group), name)
        if hasattr(sub, "list_commands"):  # a group (Typer's own click or click itself)
            yield from commands(sub, [*prefix, name])
        else:
            yield [*prefix, name]


def generate() -> str:
    root = typer.main.get_command(app)
    parts = [
        "# comicgen command line\n",
        "Generated from each command's `--help` by `tests/test_docs.py`; do not edit by hand.\n",
    ]
    runner = CliRunner()
    for path in commands(root, []):
        result = runner.invoke(app, [*path, "--help"], env=ENV, prog_name="comicgen")
        assert result.exit_code == 0, result.output
        title = " ".join(["comicgen", *path])
        text = "\n".join(line.rstrip() for line in result.output.splitlines())
        parts.append(f"## `{title}`\n\n```\n{text.strip()}\n```\n")
    return "\n".join(parts)


def test_cli_docs_are_current():
    text = generate()
    if os.environ.get("COMICGEN_UPDATE_DOCS"):
        DOCS.write_text(text, encoding="utf-8")
    assert DOCS.read_text(encoding="utf-8") == text, (
        "docs/cli.md is out of date: run COMICGEN_UPDATE_DOCS=1 pytest tests/test_docs.py"
    )


def test_example_schema_is_current():
    """stories/story.schema.json (the example story's $schema) matches the code."""
    import json

    from comicgen.story import story_json_schema

    path = DOCS.parent.parent / "stories" / "story.schema.json"
    text = json.dumps(story_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if os.environ.get("COMICGEN_UPDATE_DOCS"):
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, (
        "stories/story.schema.json is out of date: run COMICGEN_UPDATE_DOCS=1 pytest "
        "tests/test_docs.py (comicgen render also rewrites it)"
    )
