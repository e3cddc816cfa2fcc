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


def test_the_relaunch_repeats_the_command_line_without_rebuilding_it(tmp_path, monkeypatch):
    """``--processes N`` starts the same command in N processes: every option given is
    passed on (from click's parsed context, so a new option needs no extra code), the
    workspace made absolute, --processes left out."""
    from typer.testing import CliRunner

    import comicgen.commands.render as render_command
    import comicgen.launch as launch
    from comicgen.cli import app

    ws = tiny_workspace(tmp_path / "w")
    (ws.stories_dir / "s.yaml").write_text(long_story(1), encoding="utf-8")
    seen = {}

    def relaunch(processes, args, cpu):
        seen.update(processes=processes, args=args)
        return 0

    monkeypatch.setattr(launch, "relaunch", relaunch)
    monkeypatch.setattr(render_command, "_has_cuda", lambda: False)
    monkeypatch.chdir(ws.root)
    result = CliRunner().invoke(
        app,
        ["render", "stories/s.yaml", "--processes", "3", "--pdf", "--dpi", "72"]
        + ["--pages", "1", "-w", ".", "--allow-outside"],
    )
    assert result.exit_code == 0, result.output
    assert seen["processes"] == 3
    args = seen["args"]
    assert args[:2] == ["render", "stories/s.yaml"]
    assert args[args.index("--workspace") + 1] == str(ws.root)
    pairs = {args[i]: args[i + 1] for i in range(2, len(args) - 1) if args[i + 1][:2] != "--"}
    assert pairs["--dpi"] == "72" and pairs["--pages"] == "1"
    assert "--pdf" in args and "--allow-outside" in args
    assert "--processes" not in args and "--strip" not in args and "--open" not in args
