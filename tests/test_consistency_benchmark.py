"""The consistency benchmark's own logic: references that differ from the ask, scores,
story consistency, three characters read back (ground-truth renders, no model); and the
``--extra`` methods on the bundled model (one panel, two steps)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from toyworld import reader
from toyworld import world as W

ROOT = Path(__file__).resolve().parents[1]


def bench():
    if "consistency_benchmark" not in sys.modules:
        path = ROOT / "benchmarks" / "consistency.py"
        spec = importlib.util.spec_from_file_location("consistency_benchmark", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["consistency_benchmark"]


def test_references_never_show_the_asked_expression_or_facing():
    b = bench()
    for count in (1, 2, 3):
        for split in b.SPLITS:
            for panel in b.make_panels(6, count, split):
                assert len(panel.references) == count
                for ch, views in zip(panel.characters, panel.references, strict=True):
                    assert len(views) == b.REFERENCES
                    assert all(v.expression != ch.expression for v in views)
                    assert all(v.identity() == ch.identity() for v in views)
                    assert ch.look == 0 or all(v.look != ch.look for v in views)
                assert f"looking {panel.characters[0].expression}" in panel.prompt
                for ch in panel.characters:  # the facing in the toy world's own words
                    if b.facing_supported() and ch.look:
                        assert f"looking {ch.expression} facing {ch.facing} " in panel.prompt
    tune = {p.prompt for p in b.make_panels(8, 1, "tune")}
    report = {p.prompt for p in b.make_panels(8, 1, "report")}
    assert tune != report  # the splits are different panels


def test_truth_renders_score_one_and_copies_are_caught():
    b = bench()
    facing = b.facing_supported()
    for count in (1, 2, 3):
        for panel in b.make_panels(3, count, "tune"):
            scores, identities = b.score(b.truth_image(panel), panel, facing)
            assert all(v == [1.0] * len(v) for k, v in scores.items()), (count, scores)
            assert all(i is not None for i in identities)
    # a panel that shows the first reference view (another face) loses the expression
    panel = b.make_panels(1, 1, "tune")[0]
    pasted = b.Panel(**{**panel.__dict__, "characters": [panel.references[0][0]]})
    scores, _ = b.score(b.truth_image(pasted), panel, facing)
    assert scores["expression"] == [0.0] and scores["color"] == [1.0]


def test_story_consistency_counts_agreeing_pairs():
    b = bench()
    a, c = ("circle", "red", "none", "plain", "none"), ("square", "red", "none", "plain", "none")
    assert b.story_consistency({0: [a, a, a]}) == 1.0
    assert b.story_consistency({0: [a, a, c]}) == 1 / 3
    assert b.story_consistency({0: [a, None, a], 1: [c, c]}) == (1 / 3 + 1) / 2
    stories = b.make_stories(2, "report")
    assert len(stories) == 12 and {p.story for p in stories} == {0, 1}
    first = [p for p in stories if p.story == 0]
    assert len({p.characters[0].identity() for p in first}) == 1


def test_read_at_reads_three_characters_and_their_facing():
    chars = (
        W.Character(shape="circle", color="red", look=-1, expression="sad"),
        W.Character(shape="square", color="blue", hat="yellow", look=1),
        W.Character(shape="triangle", color="green", look=0, expression="surprised"),
    )
    scene = W.Scene(characters=chars, positions=("left", "center", "right"), shot="wide")
    got = reader.read_at(W.render(scene), "wide", ("left", "center", "right"))
    for (reading, width), ch in zip(got, chars, strict=True):
        assert (reading.shape, reading.color, reading.hat, reading.expression, reading.facing) == (
            ch.shape, ch.color, ch.hat, ch.expression, W.FACINGS[ch.look + 1],
        )  # fmt: skip
        assert width > 0


def test_extra_methods_from_json_run_with_their_settings(tmp_path, capsys):
    out = tmp_path / "scores.json"
    extra = '{"w0": {"weight": 0.0}, "every2": {"reference_every": 2}}'
    bench().main(
        ["--panels", "1", "--stories", "0", "--steps", "2", "--methods", "plain"]
        + ["--extra", extra, "--json", str(out)]
    )
    scores = json.loads(out.read_text())
    assert set(scores) == {"plain", "w0", "every2"}
    # weight 0 attaches nothing: the same panel as plain, so the same scores
    assert scores["w0"]["identity"] == scores["plain"]["identity"]
    assert "every2" in capsys.readouterr().out


def test_truth_through_the_vae_is_the_models_ceiling(tmp_path):
    """``truth-vae``: the toy world's render after the bundled VAE's round trip — not the
    render itself, but read back as it (the VAE keeps what the reader scores)."""
    out = tmp_path / "scores.json"
    bench().main(
        ["--panels", "4", "--stories", "0", "--methods", "truth,truth-vae"]
        + ["--json", str(out), "--save", str(tmp_path / "panels")]
    )
    scores = json.loads(out.read_text())
    assert scores["truth"]["identity"] == 1.0
    assert scores["truth-vae"]["identity"] >= 0.75
    from PIL import Image, ImageChops

    for seed_png in (tmp_path / "panels" / "truth").iterdir():
        truth = Image.open(seed_png).convert("RGB")
        trip = Image.open(tmp_path / "panels" / "truth-vae" / seed_png.name).convert("RGB")
        assert trip.size == truth.size
        assert ImageChops.difference(truth, trip).getbbox() is not None  # it went through
