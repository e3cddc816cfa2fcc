"""``render --processes 2`` (Accelerate, gloo on the CPU) gives the single-process result."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.helpers import comicgen_process, long_story, tiny_workspace


def render(ws, *args):
    proc = comicgen_process(ws, "render", "stories/s.yaml", *args)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def test_two_processes_match_one(tmp_path):
    single = tiny_workspace(tmp_path / "one", steps=3)
    double = tiny_workspace(tmp_path / "two", steps=3)
    for ws in (single, double):
        (ws.stories_dir / "s.yaml").write_text(long_story(2), encoding="utf-8")
    render(single)
    out = render(double, "--processes", "2")
    assert "6 panels painted, 0 reused" in out
    assert out.count("pages: build/s/index.html") == 1  # only the main process reports
    one = sorted((single.build_dir / "s" / "panels").glob("*.png"))
    two = sorted((double.build_dir / "s" / "panels").glob("*.png"))
    assert [p.name for p in one] == [p.name for p in two] and len(one) == 6
    for a, b in zip(one, two, strict=True):
        pa = np.asarray(Image.open(a), dtype=np.int16)
        pb = np.asarray(Image.open(b), dtype=np.int16)
        # one thread vs two threads may round a float differently: at most 1/255
        assert np.abs(pa - pb).max() <= 1, a.name
    for name in ("index.html", "page-01.png", "page-02.png", "s.cbz"):
        assert (double.build_dir / "s" / name).is_file()
