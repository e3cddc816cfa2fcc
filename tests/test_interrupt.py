"""Ctrl-C and kills in the middle of a render: nothing lost, nothing half-written."""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.helpers import (
    cached_panel_files,
    comicgen_process,
    half_written,
    integrity,
    long_story,
    tiny_workspace,
)

PANELS = 9


def start_and_stop(ws, sig: int, after_panels: int):
    """Start a render, wait until ``after_panels`` panels are cached, send ``sig``."""
    proc = comicgen_process(ws, "render", "stories/long.yaml")
    deadline = time.monotonic() + 240
    while len(cached_panel_files(ws)) < after_panels:
        if proc.poll() is not None:
            pytest.fail(f"render ended early:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("render made no progress")
        time.sleep(0.05)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


@pytest.fixture
def workspace(tmp_path):
    # enough steps per panel that the signal lands while panels remain (a fast machine
    # painted the last panels before it arrived)
    ws = tiny_workspace(tmp_path / "w", steps=40)
    (ws.stories_dir / "long.yaml").write_text(long_story(3), encoding="utf-8")
    return ws


def resume(ws):
    proc = comicgen_process(ws, "render", "stories/long.yaml")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_keeps_finished_panels_and_resumes(workspace, sig):
    stop_at = random.Random(sig).randint(2, PANELS - 4)
    code, out = start_and_stop(workspace, sig, stop_at)
    assert code == 130, out
    kept = len(cached_panel_files(workspace))
    assert kept >= stop_at
    assert f"interrupted — {kept} of {PANELS} panels kept; run the same command to resume" in out
    assert "Traceback" not in out
    assert integrity(workspace) == "ok"
    assert half_written(workspace.root / "build") == []
    assert half_written(workspace.cache_dir) == []
    out = resume(workspace)
    assert f"{PANELS - kept} panels painted, {kept} reused" in out


def test_sigkill_loses_nothing_finished(workspace):
    stop_at = random.Random(9).randint(2, PANELS - 4)
    code, _ = start_and_stop(workspace, signal.SIGKILL, stop_at)
    assert code == -signal.SIGKILL
    kept = len(cached_panel_files(workspace))
    assert integrity(workspace) == "ok"
    out = resume(workspace)
    # every panel whose file and row were both written is reused; the one being
    # written when the kill came (if any) is painted again
    painted = int(out.split(" panels painted")[0].split()[-1])
    assert painted <= PANELS - kept + 1
    assert painted + int(out.split(" reused")[0].split()[-1]) == PANELS
    assert half_written(workspace.root / "build") == []
    assert integrity(workspace) == "ok"
