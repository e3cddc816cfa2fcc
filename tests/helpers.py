"""Helpers shared by tests that run real renders (in-process or as subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from comicgen.workspace import Workspace
from tests.support.tiny import TINY


def make_sheet(folder: Path, color: str, views: int = 2) -> list[Path]:
    """A tiny model sheet: a coloured circle on a plain background, a few views."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(views):
        image = Image.new("RGB", (64, 64), (236, 236, 236))
        ImageDraw.Draw(image).ellipse((16 + i, 16, 48 + i, 48), fill=color)
        path = folder / f"{i}.png"
        image.save(path)
        paths.append(path)
    return paths


def tiny_workspace(root: Path, steps: int = 2, characters: dict[str, str] | None = None):
    """A workspace painting with the tiny random model, with example characters."""
    ws = Workspace.create(root)
    ws.config_path.write_text(
        f"[model]\nname = '{TINY}'\n[render]\nsteps = {steps}\n[page]\ndpi = 48\n",
        encoding="utf-8",
    )
    for name, color in (characters or {"pip": "red"}).items():
        make_sheet(ws.characters_dir / name, color)
        (ws.characters_dir / f"{name}.yaml").write_text(
            f"name: {name.title()}\ndescription: a {color} circle character\n", encoding="utf-8"
        )
    return Workspace.load(ws.root)


def long_story(pages: int, per_page: int = 3, character: str | None = "pip") -> str:
    lines = ["title: A Long Story", "pages:"]
    for p in range(pages):
        lines.append("  - panels:")
        for n in range(per_page):
            lines.append(f'      - prompt: "scene {p} {n}, grass, day sky"')
            if character and n == 0:
                lines.append(f"        characters: [{{name: {character}, position: left}}]")
                lines.append(f"        dialogue: [{{speaker: {character}, text: 'Line {p}.{n}'}}]")
    return "\n".join(lines) + "\n"


def comicgen_process(ws: Workspace, *args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
    return subprocess.Popen(
        [sys.executable, "-m", "comicgen", *args, "--workspace", str(ws.root)],
        cwd=ws.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def cached_panel_files(ws: Workspace) -> list[Path]:
    return sorted((ws.cache_dir / "panels").rglob("*.png"))


def integrity(ws: Workspace) -> str:
    import sqlite3

    with sqlite3.connect(ws.db_path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def half_written(folder: Path) -> list[Path]:
    """Temporary files, and PNG files that do not decode completely."""
    bad = [p for p in folder.rglob("*.tmp")]
    for path in folder.rglob("*.png"):
        try:
            with Image.open(path) as image:
                image.load()
        except Exception:  # noqa: BLE001 - any decode failure is a half-written file
            bad.append(path)
    return bad
