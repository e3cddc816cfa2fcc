"""The infusion trainer at tiny size on the CPU: toy-world pairs, steps, checkpoints, resume."""

from __future__ import annotations

import json
import math

import pytest
import torch
from diffusers import UNet2DConditionModel

from comicgen.infusion.refs import CharacterRefs
from comicgen.infusion.training import (
    PairFolder,
    character_weights,
    latest_checkpoint,
    parser,
    train,
)
from tests.support.tiny import TINY
from toyworld.pairs import write_pairs


def args(tmp_path, *extra):
    return parser().parse_args(
        [
            "--model", TINY,
            "--data", str(tmp_path / "pairs"),
            "--out", str(tmp_path / "run"),
            "--log-every", "1",
            "--threads", "1",
            "--device", "cpu",
            "--lr", "1e-3",
            *extra,
        ]
    )  # fmt: skip


def test_toy_pairs_show_other_faces_than_the_scene(tmp_path):
    meta = write_pairs(tmp_path / "pairs", 6, seed=1)
    items = [json.loads(line) for line in meta.read_text().splitlines()]
    assert len(items) == 6
    data = PairFolder(tmp_path / "pairs", 64)
    pair = data[0]
    assert pair["scene"].size == (64, 64) and pair["refs"][0].images
    from toyworld import reader

    for i, item in enumerate(items):
        scene = reader.read(data[i]["scene"])
        for k, ch in enumerate(item["characters"]):
            assert 0.0 <= ch["box"][0] < ch["box"][2] <= 1.0
            wanted = scene.characters[k].expression if k < len(scene.characters) else None
            faces = {reader.read(data[i]["refs"][k].images[j]).characters[0].expression
                     for j in range(len(ch["sheets"]))}  # fmt: skip
            assert wanted not in faces


def test_pair_captions_name_the_facing_the_scene_draws():
    from toyworld.pairs import make_pair

    for i in range(12):
        scene, _, caption = make_pair(3, i)
        for ch in scene.characters:
            assert f"looking {ch.expression} facing {ch.facing} " in caption, caption
        assert "facing" not in make_pair(3, i, facing=False)[2]
    looks = {ch.look for i in range(12) for ch in make_pair(3, i)[0].characters}
    assert looks == {-1, 0, 1}


def test_three_character_pairs_stand_left_center_right_in_a_wide_shot(tmp_path):
    meta = write_pairs(tmp_path / "pairs", 4, seed=5, three=1.0)
    items = [json.loads(line) for line in meta.read_text().splitlines()]
    for item in items:
        assert len(item["characters"]) == 3
        assert "wide shot" in item["caption"]
        for phrase in ("on the left", "in the center", "on the right"):
            assert phrase in item["caption"]
        centres = [(c["box"][0] + c["box"][2]) / 2 for c in item["characters"]]
        assert centres == sorted(centres) and centres[0] < 0.3 < 0.7 < centres[2]
        assert all(len(c["sheets"]) >= 1 for c in item["characters"])
    # the default keeps one or two characters
    default = write_pairs(tmp_path / "pairs2", 8, seed=5)
    counts = {len(json.loads(line)["characters"]) for line in default.read_text().splitlines()}
    assert counts <= {1, 2}


def test_learning_rate_schedule_runs_over_the_steps(tmp_path):
    write_pairs(tmp_path / "pairs", 2, seed=4)
    common = ["--steps", "2", "--checkpoint-every", "0"]
    constant = train(args(tmp_path, *common))
    assert constant["lr"] == 1e-3
    linear = train(args(tmp_path, *common, "--lr-schedule", "linear"))
    assert linear["lr"] == 0.0 and linear["steps"] == 2


def test_trains_checkpoints_and_resumes(tmp_path):
    write_pairs(tmp_path / "pairs", 3, seed=2)
    first = train(args(tmp_path, "--steps", "2", "--checkpoint-every", "1"))
    assert first["steps"] == 2 and math.isfinite(first["loss"])
    assert latest_checkpoint(tmp_path / "run").name == "step-000002"
    # each checkpoint holds a U-Net folder that can be scored as it is; the last one is
    # the final result
    at_1 = UNet2DConditionModel.from_pretrained(tmp_path / "run/checkpoints/step-000001/unet")
    at_2 = UNet2DConditionModel.from_pretrained(latest_checkpoint(tmp_path / "run") / "unet")
    before = UNet2DConditionModel.from_pretrained(TINY, subfolder="unet")
    after = UNet2DConditionModel.from_pretrained(first["saved"])
    changed = [
        name
        for (name, a), (_, b) in zip(
            before.named_parameters(), after.named_parameters(), strict=True
        )
        if not torch.equal(a, b)
    ]
    assert changed, "training changed no weight"
    final = dict(after.named_parameters())
    assert all(torch.equal(p, final[n]) for n, p in at_2.named_parameters())
    assert any(not torch.equal(p, final[n]) for n, p in at_1.named_parameters())
    again = train(args(tmp_path, "--steps", "3", "--checkpoint-every", "1", "--resume"))
    assert again["steps"] == 3
    assert latest_checkpoint(tmp_path / "run").name == "step-000003"


def test_lora_with_attention_level_saves_an_adapter(tmp_path):
    write_pairs(tmp_path / "pairs", 2, seed=3)
    result = train(
        args(
            tmp_path,
            "--steps", "1",
            "--lora", "4",
            "--checkpoint-every", "0",
            "--infusion", json.dumps({"levels": ["attention", "out"]}),
            "--character-weight", "4",
        )
    )  # fmt: skip
    assert result["steps"] == 1 and math.isfinite(result["loss"])
    files = list(result["saved"].glob("*.safetensors"))
    assert files, "no adapter written"
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(TINY)
    pipe.load_lora_weights(result["saved"])  # loadable as an adapter


def test_character_weight_covers_the_boxes():
    image = [None]
    left = CharacterRefs("a", image, None, box=(0.0, 0.25, 0.5, 1.0))
    right = CharacterRefs("b", image, None, box=(0.75, 0.0, 1.0, 0.5))
    w = character_weights([left, right], (8, 8), 3.0)
    assert w.shape == (1, 1, 8, 8)
    assert (w[0, 0, 2:, :4] == 3.0).all() and (w[0, 0, :4, 6:] == 3.0).all()
    assert w[0, 0, :2, :4].eq(1.0).all() and w[0, 0, 4:, 4:].eq(1.0).all()
    assert int((w == 3.0).sum()) == 6 * 4 + 4 * 2


def test_the_recipe_phase_trains_goes_on_and_installs_next_to_the_own_unet(tmp_path):
    import shutil

    from comicgen.models import inspect_model, resolve_infusion_unet
    from toyworld import infusion_unet

    model = tmp_path / "model"
    shutil.copytree(TINY, model)
    common = ["--model", str(model), "--pairs", str(tmp_path / "pairs"), "--pairs-n", "2"]
    common += ["--threads", "1", "--log-every", "1"]
    infusion_unet.main([*common, "--out", str(tmp_path / "p1"), "--steps", "1"])
    assert not (model / "unet-infusion").exists()  # no --install
    infusion_unet.main(
        [*common, "--out", str(tmp_path / "p2"), "--unet", str(tmp_path / "p1" / "unet")]
        + ["--steps", "1", "--character-weight", "4", "--install"]
    )
    info = inspect_model(str(model))
    assert info.infusion == {"levels": ["attention", "blocks"], "reference_noise": "clean"}
    assert resolve_infusion_unet("auto", info, None) == model / "unet-infusion"
    from safetensors.torch import load_file

    (stored,) = (model / "unet-infusion").glob("*.safetensors")
    assert {t.dtype for t in load_file(stored).values()} == {torch.float16}  # like the own
    config = json.loads((model / "unet-infusion" / "config.json").read_text())
    assert "_name_or_path" not in config  # no path of the training machine ships
    installed = UNet2DConditionModel.from_pretrained(model / "unet-infusion")
    phase_2 = UNet2DConditionModel.from_pretrained(tmp_path / "p2" / "unet")
    own = UNet2DConditionModel.from_pretrained(TINY, subfolder="unet")
    name, weight = next(iter(phase_2.named_parameters()))
    assert torch.equal(dict(installed.named_parameters())[name].float(), weight.half().float())
    assert not torch.equal(dict(own.named_parameters())[name], weight)


def test_the_infused_face_phase_trains_the_face_unet_and_says_so_in_the_face_folder(tmp_path):
    import shutil

    from comicgen.faces import face_infusion
    from toyworld import face_infusion as phase

    model = tmp_path / "model"
    shutil.copytree(TINY, model)
    with pytest.raises(SystemExit, match="no face model"):
        phase.install(model / "unet", model, {})
    for part in ("unet", "text_encoder"):  # a face model: here the tiny model's own parts
        shutil.copytree(model / part, model / "faces" / part)
    before = UNet2DConditionModel.from_pretrained(model / "faces" / "unet")
    phase.main(
        ["--model", str(model), "--out", str(tmp_path / "f1"), "--pairs", str(tmp_path / "fp")]
        + ["--pairs-n", "2", "--steps", "1", "--threads", "1", "--install"]
    )
    assert (tmp_path / "fp" / "metadata.jsonl").is_file()
    settings, unet, strength, _paste = face_infusion(model / "faces")
    assert strength == phase.STRENGTH
    assert settings.levels == ["attention", "blocks"] and settings.reference_noise == "clean"
    assert unet == model / "faces" / "unet-infusion"
    after = UNet2DConditionModel.from_pretrained(unet)
    name, weight = next(iter(after.named_parameters()))
    assert not torch.equal(dict(before.named_parameters())[name].half(), weight.half())
    plain = UNet2DConditionModel.from_pretrained(model / "faces" / "unet")  # kept as it was
    assert torch.equal(dict(plain.named_parameters())[name], dict(before.named_parameters())[name])
    assert not list((model / "faces").glob(".unet-*"))  # no half-installed folder left


def test_face_pairs_crop_one_character_with_its_box_and_other_faces(tmp_path):
    from toyworld.face_pairs import write_face_pairs

    meta = write_face_pairs(tmp_path / "faces", 4, seed=2)
    data = PairFolder(tmp_path / "faces", 64)
    for i, line in enumerate(meta.read_text().splitlines()):
        item = json.loads(line)
        (ch,) = item["characters"]
        x0, y0, x1, y1 = ch["box"]
        # the crop stands on the character: its box holds the crop's centre column
        assert 0.0 <= x0 < 0.5 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0
        assert " looking " in item["caption"] and " facing " in item["caption"]
        assert data[i]["scene"].size == (64, 64) and len(data[i]["refs"][0].images) >= 1
    # several folders train together, each pair's images read from its own folder
    write_face_pairs(tmp_path / "more", 2, seed=3, buckets=("tall",))
    both = PairFolder([tmp_path / "faces", tmp_path / "more"], 64)
    assert len(both) == 6
    assert (
        both[5]["caption"]
        == json.loads((tmp_path / "more/metadata.jsonl").read_text().splitlines()[1])["caption"]
    )
    assert both[5]["scene"].size == (64, 64) and both[5]["refs"][0].images


def test_face_pairs_from_every_frame_shape_box_the_drawn_face():
    from comicgen.faces import crop_box
    from toyworld import drawing as D
    from toyworld import world as W
    from toyworld.face_pairs import make_face_pair, parse_buckets

    buckets = parse_buckets("all")
    shapes = set()
    for i in range(24):
        scene, k, (x0, y0, x1, _), _, _, box = make_face_pair(5, i, buckets)
        shapes.add((scene.width, scene.height))
        fx0, fy0, fx1, fy1 = D.part_boxes(scene)["face"][k]
        w, h = scene.width, scene.height
        face = crop_box((fx0 / w, fy0 / h, fx1 / w, fy1 / h), (x0, y0, x1 - x0), w, h)
        # the character's box in the crop holds its drawn face (tilt margin aside)
        assert face is not None
        assert box[0] <= face[0] + 0.05 and face[2] - 0.05 <= box[2], (i, box, face)
        assert box[1] <= face[1] + 0.05 and face[3] - 0.05 <= box[3], (i, box, face)
    assert len(shapes) >= 4  # the pairs come from several frame shapes
    assert set(buckets) == set(W.BUCKETS)
