"""The real-checkpoint consistency protocol (benchmarks/consistency_real.py) end to end on
tiny random components: a tiny diffusers pipeline, a tiny CLIP and a tiny DINOv2 built
from config with a fixed seed and saved to a folder. The numbers mean nothing; the
plumbing (story → panels → each method → crops → CLIP/DINO/CLIP-T scores) is real. And
what is missing is named in one line, exit 2."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.tiny import TINY, tiny_tokenizer, vocab_size

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "consistency_real.py"
STORY = """\
title: Protocol
pages:
  - panels:
      - prompt: "{pip} happy on the left, grass, day sky"
        characters: [{name: pip, position: left}]
      - prompt: "a tree, grass"
"""


def bench():
    name = "consistency_real_benchmark"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def scorers(tmp_path_factory):
    """(clip folder, dino folder): tiny random CLIP and DINOv2, saved like hub models."""
    import torch
    from transformers import (
        BitImageProcessor,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        Dinov2Config,
        Dinov2Model,
    )

    root = tmp_path_factory.mktemp("scorers")
    n = vocab_size()
    text = dict(
        vocab_size=n,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=n - 2,
        eos_token_id=n - 1,
        pad_token_id=n - 1,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    crop = {"height": 32, "width": 32}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        dino = Dinov2Model(
            Dinov2Config(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                mlp_ratio=2,
                image_size=32,
                patch_size=8,
            )
        )
    clip.save_pretrained(root / "clip")
    CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=crop),
        tokenizer=tiny_tokenizer(),
    ).save_pretrained(root / "clip")
    dino.save_pretrained(root / "dino")
    BitImageProcessor(size={"shortest_edge": 32}, crop_size=crop).save_pretrained(root / "dino")
    return root / "clip", root / "dino"


def args(tmp_path, clip, dino, *extra) -> list[str]:
    story = tmp_path / "story.yaml"
    story.write_text(STORY)
    return [
        "--model", str(TINY), "--characters", str(ROOT / "characters"), "--story", str(story),
        "--clip", str(clip), "--dino", str(dino), "--steps", "4", *extra,
    ]  # fmt: skip


def test_every_method_is_painted_and_scored(tmp_path, scorers, capsys):
    b = bench()
    out = tmp_path / "scores.json"
    saved = tmp_path / "panels"
    assert b.main(args(tmp_path, *scorers, "--json", str(out), "--save", str(saved))) == 0
    results = json.loads(out.read_text())
    assert list(results) == list(b.METHODS)
    for method, row in results.items():
        assert row["n_panels"] == 2 and row["n_characters"] == 1, method
        for key in ("clip_i", "dino", "clip_t"):
            assert math.isfinite(row[key]) and -1.0 <= row[key] <= 1.0, (method, key)
    printed = capsys.readouterr().out
    assert "| infused |" in printed and "CLIP-I" in printed
    # the methods really differ on the panel with the character, and not on the other
    first = {m: np.asarray(Image.open(saved / m / "1.1.png"), dtype=np.int16) for m in results}
    for method in ("img2img-0.5", "img2img-0.75", "infused", "out", "seed"):
        assert np.abs(first[method] - first["plain"]).max() > 2, method
    assert np.abs(first["img2img-0.5"] - first["img2img-0.75"]).max() > 2
    assert np.abs(first["infused"] - first["out"]).max() > 2
    second = {m: np.asarray(Image.open(saved / m / "1.2.png")) for m in results}
    assert all((second[m] == second["plain"]).all() for m in results)


def test_the_box_and_the_sheet_views_are_what_is_compared():
    b = bench()
    from comicgen.infusion import CharacterRefs

    sheet = Image.new("RGB", (40, 40), (255, 255, 255))
    sheet.paste((200, 20, 20), (10, 5, 30, 35))
    refs = CharacterRefs("pip", [sheet], None, position="left")
    (view,) = b.sheet_views(refs)
    assert view.size == (20, 30)  # the character only, not its white background
    assert b.character_box(refs) == (0.02, 0.30, 0.48, 0.98)
    panel = Image.new("RGB", (100, 50))
    assert b.crop(panel, (0.0, 0.5, 0.5, 1.0)).size == (50, 25)


def test_a_scoring_model_not_on_this_machine_is_one_line(tmp_path, scorers, monkeypatch, capsys):
    b = bench()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code = b.main(args(tmp_path, "openai/clip-vit-base-patch32", scorers[1]))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "'openai/clip-vit-base-patch32' (--clip) is not on this machine" in err
    assert "hf download openai/clip-vit-base-patch32" in err and "--dino" not in err


def test_everything_missing_is_named_at_once_without_a_traceback(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty"), "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--model",
            "someone/no-such-model",
            "--characters",
            str(tmp_path / "nope"),
            "--story",
            str(tmp_path / "nope.yaml"),
            "--dino",
            str(tmp_path / "no-dino"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
        timeout=300,
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr
    for part in ("--characters", "--story", "someone/no-such-model", "--clip", "--dino"):
        assert part in lines[0], part
