"""The toy world, its attribute reader and the bundled model (real components, CPU)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from toyworld import model as M
from toyworld import reader as R
from toyworld import world as W

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "comicgen" / "bundled" / "toyworld"


def test_world_is_deterministic_from_seed():
    a, scenes_a = W.render_dataset(seed=3, start=10, count=6)
    b, scenes_b = W.render_dataset(seed=3, start=10, count=6)
    c, _ = W.render_dataset(seed=4, start=10, count=6)
    assert scenes_a == scenes_b
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (6, 64, 64, 3) and a.dtype == np.uint8
    # same scene at two sizes: the big one reduces to the small one (within rounding)
    scene = W.sample_scene(W.scene_rng(0, 1))
    big = np.asarray(W.render(scene, 128).reduce(2), dtype=np.int16)
    assert np.abs(big - np.asarray(W.render(scene, 64), dtype=np.int16)).mean() < 3


def test_captions_stay_in_the_vocabulary():
    vocab = set(W.vocabulary())
    rng = random.Random(0)
    empty = 0
    for i in range(600):
        scene = W.sample_scene(W.scene_rng(1, i))
        text = W.training_caption(scene, rng)
        empty += text == ""
        words = text.replace(",", " , ").replace("-", " - ").split()
        assert set(words) <= vocab, text
    assert 20 < empty < 110  # about 10% empty captions (classifier-free guidance)
    # identity details never appear in captions
    for detail in ("stripes", "dots", "plain", "scarf", "cyan", "magenta", "black"):
        assert detail not in vocab


def test_tokenizer_matches_training_ids(tmp_path):
    M.write_tokenizer_files(tmp_path)
    tok = M.load_tokenizer(tmp_path)
    rng = random.Random(2)
    for i in range(100):
        text = W.training_caption(W.sample_scene(W.scene_rng(2, i)), rng)
        ids = tok(text, padding="max_length", truncation=True, max_length=M.MAX_TOKENS).input_ids
        assert ids == M.caption_ids(text)
    for word in W.vocabulary():  # every caption word is one token
        assert len(tok(word).input_ids) == 3, word


def _prompts():
    chars = {}
    for path in sorted((ROOT / "characters").glob("*.yaml")):
        chars[path.stem] = yaml.safe_load(path.read_text(encoding="utf-8"))
    story = yaml.safe_load((ROOT / "stories" / "example.yaml").read_text(encoding="utf-8"))
    for page in story["pages"]:
        for panel in page["panels"]:
            yield (
                re.sub(r"\{(\w+)\}", lambda m: chars[m.group(1)]["description"], panel["prompt"]),
                panel,
            )


def test_example_characters_and_story():
    assert 3 <= len(W.EXAMPLE_CHARACTERS) <= 4
    for key, (display, ch) in W.EXAMPLE_CHARACTERS.items():
        data = yaml.safe_load((ROOT / "characters" / f"{key}.yaml").read_text(encoding="utf-8"))
        assert data["name"] == display and data["description"] == W.describe(ch)
        assert 4 <= len(data["images"]) <= 6
        for rel in data["images"]:
            img = R.Image.open(ROOT / "characters" / rel)
            assert img.mode == "RGB" and img.size[0] % 64 == 0 and img.size[0] == img.size[1]
            got = R.read(img)
            assert got.kind == "sheet"
            c = got.characters[0]
            # the sheet carries the identity details that captions cannot
            assert (c.shape, c.color, c.hat, c.pattern, c.scarf) == ch.identity(), rel
    vocab = set(W.vocabulary())
    pages = yaml.safe_load((ROOT / "stories" / "example.yaml").read_text(encoding="utf-8"))["pages"]
    assert len(pages) == 3
    two = 0
    for text, panel in _prompts():
        assert set(text.replace(",", " , ").replace("-", " - ").split()) <= vocab, text
        two += len(panel["characters"]) == 2
    assert two >= 2


def test_reader_accuracy_on_fresh_renders():
    acc = R.accuracy(n=200, seed=2024)
    for attr, value in acc.items():
        assert value >= 0.98, (attr, value)


def _scene(characters, positions):
    return W.Scene(
        characters=characters,
        positions=positions,
        sky="sunset",
        ground="snow",
        prop="tree",
        shot="wide",
    )


def test_read_character_by_position():
    pip, bo = (W.EXAMPLE_CHARACTERS[k][1] for k in ("pip", "bo"))
    scene = _scene((pip, bo), ("left", "right"))
    img = W.render(scene)
    left, right = R.read_character(img, "left"), R.read_character(img, "right")
    assert (left.shape, left.color, left.pattern, left.scarf) == ("circle", "red", "dots", "cyan")
    assert (right.shape, right.color, right.pattern, right.scarf) == (
        "square",
        "yellow",
        "stripes",
        "magenta",
    )
    assert R.read_character(img, "center") is None
    # each asked character against what was read at its place
    pip_alone = _scene((pip,), ("left",))
    matches = R.character_matches(R.read(img), R.truth(scene), ("shape", "pattern"))
    assert [ok for _, _, ok in matches] == [{"shape": True, "pattern": True}] * 2
    # bo is asked at the right of a panel that shows pip alone: nothing read there
    swapped = _scene((bo, pip), ("left", "right"))
    (wl, gl, okl), (wr, gr, okr) = R.character_matches(
        R.read(W.render(pip_alone)), R.truth(swapped), ("shape", "pattern")
    )
    assert (
        wl.shape == "square" and gl.shape == "circle" and okl == {"shape": False, "pattern": False}
    )
    assert gr is None and okr == {"shape": False, "pattern": False}


@pytest.mark.skipif(
    not (BUNDLED / "model_index.json").exists(), reason="bundled model not trained yet"
)
def test_bundled_model_loads_and_paints():
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        str(BUNDLED), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    size = sum(f.stat().st_size for f in BUNDLED.rglob("*") if f.is_file())
    # four 13 MB float16 U-Nets (its own, the infusion-trained one and the face pass's two:
    # plain and sheet-trained), the VAE, two text encoders
    assert size <= 64e6
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 64
    assert pipe.vae.config.scaling_factor != 0.18215  # set from the latents' std
    out = pipe(
        "a red circle character with a blue hat on the left, wide shot, grass, day sky",
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images[0]
    assert out.shape == (64, 64, 3)
    assert np.isfinite(out).all() and out.std() > 0.02


def test_hat_masks_mark_the_hats_at_latent_resolution():
    """``--hat-weight``'s masks: a cell is marked exactly where a hat changed the picture."""
    images, _, masks = M.data_chunk(5, 0, 40, 1, 0.15, hat_masks=True)
    assert masks.shape == (40, M.LATENT_SIZE, M.LATENT_SIZE)
    for i in range(40):
        scene = W.sample_scene(W.scene_rng(5, i), 0.15)
        hats = [c.hat for c in scene.characters if c.hat != "none"]
        assert bool(masks[i].any()) == bool(hats)
        if hats:
            assert masks[i].mean() < 0.2  # a hat, not the whole character
            cells = np.kron(masks[i], np.ones((4, 4), dtype=np.uint8)).astype(bool)
            hat_rgb = [np.array(W.COLORS[h]) for h in hats]
            near = min(np.abs(images[i][cells].astype(int) - c).sum(axis=1).min() for c in hat_rgb)
            assert near < 30  # the marked cells hold the hat's colour
    assert M.data_chunk(5, 0, 4, 1, 0.15)[2] is None


@pytest.mark.skipif(
    not (BUNDLED / "model_index.json").exists(), reason="bundled model not trained yet"
)
def test_evaluate_prints_adherence_and_psnr(capsys):
    from toyworld import evaluate

    evaluate.main(
        ["--samples", "2", "--steps", "2", "--vae-samples", "4", "--batch", "2"]
        + ["--bucket-samples", "1"]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    for a in evaluate.ATTRIBUTES:
        assert any(re.fullmatch(rf"\s+{a}\s+[01]\.\d{{3}}", line) for line in lines), a
    assert {"expression", "facing"} <= set(evaluate.ATTRIBUTES)
    for name in W.BUCKETS:
        if name != "square":
            assert any(f"bucket {name} " in line for line in lines), name
    score = r"[01]\.\d{3}"
    assert re.fullmatch(
        rf"prompt_adherence={score} vae_psnr=\d+\.\d\d expression={score} facing={score} "
        rf"buckets={score} upscale_gain_db=(-?\d+\.\d\d|nan)",
        lines[-1],
    ), lines[-1]


def test_hat_errors_are_sorted_by_kind():
    from toyworld.evaluate import hat_error

    def ch(pos, color, hat):
        return R.CharacterReading(pos, "circle", color, hat, "plain", "none", "happy")

    left, right = ch("left", "red", "blue"), ch("right", "green", "yellow")
    scene = R.Reading("scene", "day", "grass", "wide", "none", [left, right])
    assert hat_error(left, None, scene) == "no character"
    assert hat_error(left, ch("left", "red", "none"), scene) == "missing"
    assert hat_error(ch("left", "red", "none"), ch("left", "red", "blue"), scene) == "unasked"
    assert hat_error(left, ch("left", "red", "red"), scene) == "body colour"
    assert hat_error(left, ch("left", "red", "yellow"), scene) == "other character's"
    assert hat_error(left, ch("left", "red", "purple"), scene) == "wrong colour"


def test_training_script_runs_and_resumes_an_interrupted_extension(tmp_path):
    """The project's own training script, end to end at toy size: a finished run, then an
    extension stopped part-way (its checkpoint as a kill would leave it) resumes with the
    extension's own budget, although the run's total budget is long spent."""
    import torch

    from toyworld import train

    out, export = tmp_path / "run", tmp_path / "model"
    small = ["--device", "cpu", "--out", str(out), "--export", str(export), "--data", "48"]
    small += ["--workers", "1", "--batch", "4", "--vae-batch", "4", "--reserve-minutes", "0"]
    train.main([*small, "--vae-steps", "2", "--unet-steps", "2", "--hat-weight", "2"])
    assert (export / "model_index.json").is_file() and (out / "samples.png").is_file()
    ckpt = out / "checkpoint.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["phase"] == "done" and state["unet_steps_done"] == 2

    # as an extension of 10 min killed with 2 s left would leave it
    state |= {"phase": "unet", "elapsed": 999 * 60.0, "unet_budget": 600.0}
    state |= {"unet_elapsed": 598.0, "extensions": [{"from_step": 2, "minutes": 10}]}
    torch.save(state, ckpt)
    with pytest.raises(SystemExit, match="without --extend-minutes to resume"):
        train.main([*small, "--extend-minutes", "5"])
    train.main(small)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["phase"] == "done"
    assert state["unet_steps_done"] > 2  # trained on for the extension's last seconds


def test_a_new_decoder_is_kept_only_when_better():
    from toyworld.finetune_decoder import better

    same = {"expression": 0.8, "facing": 0.95}
    assert better(30.0, 30.2, same, same)
    assert not better(30.0, 29.9, same, same)
    sharper_faces = {"expression": 0.9, "facing": 0.95}
    assert better(30.0, 29.97, same, sharper_faces)  # faces better, PSNR within 0.05 dB
    assert not better(30.0, 29.8, same, sharper_faces)
    assert not better(30.0, 31.0, same, {"expression": 0.7, "facing": 0.95})
    assert not better(30.0, 31.0, same, {"expression": 0.8, "facing": 0.9})


def test_decoder_finetune_keeps_the_encoder_and_the_file_format(tmp_path, capsys):
    import torch
    from diffusers import AutoencoderKL

    from toyworld import finetune_decoder, train

    export = tmp_path / "model"
    train.main(
        ["--device", "cpu", "--out", str(tmp_path / "run"), "--export", str(export)]
        + ["--data", "32", "--workers", "1", "--batch", "4", "--vae-batch", "4"]
        + ["--reserve-minutes", "0", "--vae-steps", "2", "--unet-steps", "1"]
    )
    before = AutoencoderKL.from_pretrained(export / "vae")
    weights = next((export / "vae").glob("*.safetensors")).name
    size = (export / "vae" / weights).stat().st_size
    finetune_decoder.main(
        ["--model", str(export), "--steps", "5", "--data", "32", "--workers", "1"]
        + ["--batch", "8", "--lr", "1e-3", "--eval-samples", "16", "--face-weight", "4"]
    )
    out = capsys.readouterr().out
    assert "decoder: wrote" in out, out  # 5 steps from a 2-step VAE: clearly better
    assert out.count("expression") == 2 and out.count("facing") == 2  # faces, before and after
    after = AutoencoderKL.from_pretrained(export / "vae")
    for name, p in before.encoder.state_dict().items():
        assert torch.equal(p, after.encoder.state_dict()[name]), name
    assert not torch.equal(before.decoder.conv_out.weight, after.decoder.conv_out.weight)
    assert (export / "vae" / weights).stat().st_size == size  # still float16
    assert not list(export.glob(".vae*"))


def test_probe_measures_how_far_a_word_moves_the_bundled_u_net():
    import torch

    from toyworld import probe

    torch.manual_seed(0)
    pipe = probe.load(None)
    moved = probe.sensitivity(pipe, timesteps=(600,))
    # the bundled model paints colours and shapes from words: changing one moves it a lot
    assert moved["colour"][600] > 0.05 and moved["shape"][600] > 0.05
    assert all(0.0 <= v[600] < 2.0 for v in moved.values())
    # the text encoder's expression words: a symmetric table, zero on its diagonal
    dist = probe.word_distances(pipe)
    assert len(dist) == len(W.EXPRESSIONS) ** 2
    for a in W.EXPRESSIONS:
        assert dist[a, a] == 0.0
        for b in W.EXPRESSIONS:
            assert dist[a, b] == pytest.approx(dist[b, a], rel=0.2)
            assert a == b or dist[a, b] > 0.0
    acc = probe.classify(pipe, n=3)
    assert set(acc) == {"expression", "facing"}
    assert all(v in (0.0, 1 / 3, 2 / 3, 1.0) for v in acc.values())


def test_attribute_guidance_at_scale_zero_is_the_pipeline_s_own_panel():
    import torch

    from toyworld import attribute_guidance as AG
    from toyworld.evaluate import load_pipeline, paint

    caption = "a red circle character with no hat looking sad facing left in the center, close-up"
    assert AG.neutral(caption) == "a red circle character with no hat in the center, close-up"
    pipe = load_pipeline()
    torch.manual_seed(0)
    ours = AG.paint(pipe, [caption], [7], 0.0, steps=3)[0]
    theirs = paint(pipe, [caption], [7], steps=3)[0]
    assert np.abs(np.asarray(ours, float) - np.asarray(theirs, float)).max() <= 1
    pushed = AG.paint(pipe, [caption], [7], 30.0, steps=3)[0]
    assert np.abs(np.asarray(pushed, float) - np.asarray(theirs, float)).max() > 8


def test_face_model_phase_trains_on_crops_and_installs_unet_and_text_encoder(tmp_path):
    """``toyworld.face_model`` (recipe stages 12-15) at toy size: a model, then one face
    phase from it that exports to its run folder and installs ``faces/`` into the model."""
    import torch
    from safetensors.torch import load_file

    from toyworld import face_model, train

    model = tmp_path / "model"
    small = ["--device", "cpu", "--data", "48", "--workers", "1", "--batch", "4"]
    small += ["--reserve-minutes", "0"]
    train.main(
        [*small, "--out", str(tmp_path / "run"), "--export", str(model), "--vae-batch", "4"]
        + ["--vae-steps", "2", "--unet-steps", "2"]
    )
    face_model.main(
        [*small, "--model", str(model), "--out", str(tmp_path / "faces-1")]
        + ["--unet-steps", "2", "--face-weight", "6", "--install"]
    )
    faces = model / "faces"
    assert sorted(p.name for p in faces.iterdir()) == ["text_encoder", "unet"]
    trained = load_file(faces / "unet" / "diffusion_pytorch_model.safetensors")
    before = load_file(model / "unet" / "diffusion_pytorch_model.safetensors")
    assert trained.keys() == before.keys()
    assert any(not torch.equal(trained[k], before[k]) for k in trained)  # it trained
    assert not list(faces.glob(".*"))  # no half-installed folder left behind
    with pytest.raises(SystemExit, match="was the run exported"):
        face_model.install(tmp_path / "nowhere", model)
    # a later phase, averaged with the first (a weight soup), installs its two parts and
    # leaves the rest of faces/ (the sheet-trained U-Net) alone
    (faces / "unet-infusion").mkdir()
    (faces / "comicgen.json").write_text("{}", encoding="utf-8")
    first = tmp_path / "faces-1" / "export"
    face_model.main(
        [*small, "--model", str(model), "--out", str(tmp_path / "faces-2"), "--init", str(first)]
        + ["--unet-steps", "2", "--seed", "5", "--average-with", str(first), "--install"]
        + ["--max-timestep", "600", "--face-groups", "4"]  # the sixth phase's options
    )
    assert sorted(p.name for p in faces.iterdir()) == [
        "comicgen.json",
        "text_encoder",
        "unet",
        "unet-infusion",
    ]
    name = "diffusion_pytorch_model.safetensors"
    installed = load_file(faces / "unet" / name)
    own = load_file(tmp_path / "faces-2" / "export" / "unet" / name)  # the phase's own
    for k in installed:
        mean = ((own[k].float() + trained[k].float()) / 2).to(own[k].dtype)
        assert torch.equal(installed[k], mean), k
    assert any(not torch.equal(own[k], installed[k]) for k in own)
    # the averaged folder is a whole pipeline: a later phase starts from it
    averaged = tmp_path / "faces-2" / "averaged"
    exported = tmp_path / "faces-2" / "export"
    assert sorted(p.name for p in averaged.iterdir()) == sorted(p.name for p in exported.iterdir())
    face_model.main(
        [*small, "--model", str(model), "--out", str(tmp_path / "faces-3"), "--init", str(averaged)]
        + ["--unet-steps", "1"]
    )
    assert (tmp_path / "faces-3" / "export" / "unet" / name).is_file()


def test_average_weights_is_the_mean_of_each_weight_and_keeps_the_config(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from toyworld.trainkit import average_weights

    a, b = tmp_path / "a", tmp_path / "b"
    for folder, value in ((a, 1.0), (b, 4.0)):
        folder.mkdir()
        (folder / "config.json").write_text(f'{{"from": "{folder.name}"}}', encoding="utf-8")
        w = {"w": torch.full((2, 3), value, dtype=torch.float16), "n": torch.tensor([value])}
        save_file(w, str(folder / "model.safetensors"))
    average_weights([a, b], a)  # in place, as the recipe's fifth phase does
    out = load_file(str(a / "model.safetensors"))
    assert out["w"].dtype == torch.float16 and torch.equal(out["w"], torch.full((2, 3), 2.5).half())
    assert torch.equal(out["n"], torch.tensor([2.5]))
    assert (a / "config.json").read_text(encoding="utf-8") == '{"from": "a"}'
    save_file({"other": torch.zeros(1)}, str(b / "model.safetensors"))
    with pytest.raises(SystemExit, match="differ in names"):
        average_weights([a, b], tmp_path / "c")
    assert not (tmp_path / "c").exists()
