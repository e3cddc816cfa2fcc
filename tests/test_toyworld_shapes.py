"""The toy world's second generation: facing, aspect-ratio buckets, face masks, the
tokenizer grown without moving old ids, training from a saved pipeline."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from toyworld import model as M
from toyworld import reader as R
from toyworld import world as W

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "comicgen" / "bundled" / "toyworld"


def test_captions_name_the_facing():
    ch = W.Character(shape="square", color="red", look=-1, expression="sad")
    scene = W.Scene(characters=(ch,), positions=("right",))
    text = W.caption(scene)
    assert "looking sad" in text and "facing left" in text and "on the right" in text
    assert "facing right" in W.caption(replace(scene, characters=(replace(ch, look=1),)))
    assert "facing ahead" in W.caption(replace(scene, characters=(replace(ch, look=0),)))
    assert {"facing", "ahead", "left", "right"} <= set(W.vocabulary())


def test_facing_turns_the_face_so_the_reader_can_tell():
    base = W.Character(shape="circle", color="blue", look=0)
    scene = W.Scene(characters=(base,), positions=("center",), shot="close-up")
    ahead = np.asarray(W.render(scene), dtype=np.int16)
    for look in (-1, 1):
        img = W.render(replace(scene, characters=(replace(base, look=look),)))
        # more than the pupils move: the whole face turns (tens of pixels change)
        assert (np.abs(np.asarray(img, dtype=np.int16) - ahead).max(axis=2) > 40).sum() > 20
        assert R.read(img).characters[0].facing == W.FACINGS[look + 1]


def test_reader_reads_facing_and_expression_on_fresh_renders():
    acc = R.accuracy(n=120, seed=77)
    assert acc["facing"] >= 0.98, acc
    assert acc["expression"] >= 0.95, acc


def test_buckets_render_at_their_size_and_read_back():
    for name, (w, h) in W.BUCKETS.items():
        assert w % 16 == 0 and h % 16 == 0  # the bundled model's size multiple
        scene = W.sample_scene(random.Random(name), 0.0, bucket=name)
        assert scene.bucket == name
        assert W.render(scene).size == (w, h)
        assert W.render(scene, 128).size == (2 * w, 2 * h)
        got = R.read(W.render(scene, 128))
        want = R.truth(scene)
        assert got.figures == len(scene.characters)
        assert (got.sky, got.ground, got.shot, got.position) == (
            want.sky,
            want.ground,
            want.shot,
            want.position,
        )


def test_reader_counts_a_second_copy():
    ch = W.Character(shape="triangle", color="green", hat="red")
    wide = W.Scene(characters=(ch,), positions=("center",), width=128, height=64)
    assert R.read(W.render(wide)).figures == 1
    twice = W.Scene(characters=(ch, ch), positions=("left", "right"), width=128, height=64)
    got = R.read(W.render(twice))
    assert got.figures == 2
    assert not R.compare(got, R.truth(wide))["once"]


def test_face_masks_mark_the_faces_at_latent_resolution():
    images, _, masks = M.data_chunk(6, 0, 30, 1, 0.15, True, "wide", face_masks=True)
    assert images.shape == (30, 64, 96, 3)
    assert masks.shape == (30, 16, 24)
    for i in range(30):
        scene = W.sample_scene(W.scene_rng(6, i), 0.0, "wide")  # sheets are square only
        face = (masks[i] & M.FACE) > 0
        assert face.any() and face.mean() < 0.25
        cells = np.kron(face, np.ones((4, 4), dtype=np.uint8)).astype(bool)
        # every pixel another expression changes lies in a marked cell (the face as drawn)
        other = tuple(
            replace(
                c,
                expression="surprised" if c.expression != "surprised" else "angry",
            )
            for c in scene.characters
        )
        changed = (
            np.abs(
                images[i].astype(int) - np.asarray(W.render(replace(scene, characters=other)))
            ).max(axis=2)
            > 24
        )
        assert changed.any() and not (changed & ~cells).any(), i
        assert bool((masks[i] & M.HAT).any()) == any(c.hat != "none" for c in scene.characters)


def test_new_words_keep_the_old_token_ids():
    vocab, merges = M.build_bpe(W.vocabulary())
    old = json.loads((BUNDLED / "tokenizer" / "vocab.json").read_text(encoding="utf-8"))
    assert all(vocab[token] == i for token, i in old.items() if token in vocab)
    first = [w for w in W.vocabulary() if w not in M.LATER_WORDS]
    assert M.build_bpe(first, later=())[0] == {
        t: i for t, i in vocab.items() if i < len(M.build_bpe(first, later=())[0])
    }
    assert all(vocab[w + "</w>"] >= vocab[M.EOS] for w in M.LATER_WORDS)


def test_training_starts_from_a_saved_pipeline_and_trains_buckets(tmp_path):
    """``--init``: the U-Net phase starts from a pipeline's weights (the token embedding
    grown, old rows kept), batches come from every bucket, faces weighted (and
    contrasted)."""
    import torch
    from transformers import CLIPTextModel

    from toyworld import train

    first = tmp_path / "first"
    small = ["--device", "cpu", "--data", "40", "--workers", "1", "--batch", "4"]
    small += ["--vae-batch", "4", "--reserve-minutes", "0"]
    train.main(
        [*small, "--out", str(tmp_path / "r1"), "--export", str(first)]
        + ["--vae-steps", "1", "--unet-steps", "1"]
    )
    # pretend the first model knew fewer words: cut the embedding to the first generation's
    text = CLIPTextModel.from_pretrained(first / "text_encoder")
    n_old = M.build_bpe([w for w in W.vocabulary() if w not in M.LATER_WORDS], later=())[0]
    old_rows = text.get_input_embeddings().weight[: len(n_old)].detach().clone()
    text.resize_token_embeddings(len(n_old))
    text.save_pretrained(first / "text_encoder")
    out = tmp_path / "r2"
    spec = "square:0.4,wide:0.15,tall:0.15,strip-wide:0.15,strip-tall:0.15"
    train.main(
        [*small, "--out", str(out), "--export", str(tmp_path / "second"), "--init", str(first)]
        + ["--unet-steps", "6", "--buckets", spec, "--face-weight", "4", "--hat-weight", "2"]
        + ["--face-contrast", "0.1", "--contrast-images", "2"]
    )
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["init"]["token_rows"] == [len(n_old), len(M.token_vocab())]
    assert set(state["buckets"]) == set(W.BUCKETS)
    assert state["unet_steps_done"] == 6 and "vae_steps_done" in state
    second = CLIPTextModel.from_pretrained(tmp_path / "second" / "text_encoder")
    assert second.get_input_embeddings().weight.shape[0] == len(M.token_vocab())
    rows = second.get_input_embeddings().weight[: len(n_old)]
    assert torch.allclose(rows, old_rows, atol=0.05)  # trained on from the old rows
    assert not torch.equal(rows, old_rows)
    # --separate-words: the two words start the run apart (x7), and the run says so
    train.main(
        [*small, "--out", str(tmp_path / "r3"), "--export", str(tmp_path / "third")]
        + ["--init", str(tmp_path / "second"), "--unet-steps", "1"]
        + ["--separate-words", "happy,sad"]
    )
    state = torch.load(tmp_path / "r3" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["init"]["separated"] == ["happy", "sad", 6.0]
    vocab = M.token_vocab()
    a, b = vocab["happy</w>"], vocab["sad</w>"]
    third = CLIPTextModel.from_pretrained(tmp_path / "third" / "text_encoder")
    before = second.get_input_embeddings().weight
    after = third.get_input_embeddings().weight
    assert (after[b] - after[a]).norm() > 5 * (before[b] - before[a]).norm()


def test_train_without_training_options_is_the_shipped_recipe(capsys):
    from toyworld import recipe, train

    train.main(["--dry-run"])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("stage ")]
    assert len(lines) == len(recipe.STAGES) >= 5
    assert "--hat-weight 4" in lines[2] and "finetune_decoder" in lines[3]
    assert "--init" in lines[4] and "--face-weight" in lines[4] and "strip-tall" in lines[4]
    assert "finetune_decoder" in lines[7] and "--face-weight 8" in lines[7]
    assert "infusion_unet" in lines[8] and "--install" not in lines[8]
    assert "--unet .train/infusion-1/unet" in lines[9] and "--character-weight 4" in lines[9]
    assert "--install" not in lines[9]
    assert "--unet .train/infusion-2/unet" in lines[10] and "--pairs-three 0.15" in lines[10]
    assert "--lr-schedule cosine" in lines[10] and lines[10].count("--install") == 1
    assert all("face_model" in x and "--install" not in x for x in lines[11:14])
    assert "--init .train/faces-2/export" in lines[13]
    assert "--init .train/faces-3/export" in lines[14] and lines[14].count("--install") == 1
    assert "face_infusion" in lines[15] and lines[15].count("--install") == 1
    assert "--average-with .train/faces-4/export" in lines[16] and "--install" in lines[16]
    assert "--unet .train/face-infusion-1/unet" in lines[17] and "--pairs-buckets all" in lines[17]
    assert "--with-pairs .train/face-pairs-1" in lines[17] and lines[17].count("--install") == 1
    assert "--text-encoder .train/faces-5/export/text_encoder" in lines[17]
    assert "--init .train/faces-5/averaged" in lines[18] and "--max-timestep 600" in lines[18]
    assert "--average-with .train/faces-5/averaged" in lines[18] and "--install" in lines[18]
    train.main(["--dry-run", "--device", "cuda", "--stages", "5"])
    (gpu,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("stage ")]
    assert "--device cuda" in gpu and "--batch 512" in gpu and "--batch 32" not in gpu
    assert not recipe.is_recipe_call(["--device", "cpu", "--data", "48"])  # one custom run


def test_face_groups_show_one_scene_with_every_expression_and_the_facings_turning():
    images, ids, _ = M.data_chunk(7, 8, 8, 2, 0.0, False, "tall", close_up=0.6, group=4)
    assert images.shape == (8, 96, 64, 3)
    for run in (0, 4):
        base = W.sample_scene(W.scene_rng(7, 8 + run), 0.0, "tall", 0.6)
        scenes = [M.vary_face(base, k) for k in range(4)]
        for k, scene in enumerate(scenes):
            assert np.array_equal(images[run + k], np.asarray(W.render(scene)))
        for c in range(len(base.characters)):
            faces = [s.characters[c] for s in scenes]
            assert {f.expression for f in faces} == set(W.EXPRESSIONS)
            assert len({f.facing for f in faces}) == 3
            # only the face changes: identity, place and scene stay
            assert len({replace(f, expression="happy", look=0) for f in faces}) == 1
        assert len({(s.sky, s.ground, s.prop, s.shot) for s in scenes}) == 1
    # the two runs are different scenes
    assert not np.array_equal(images[0], images[4])


def test_face_crops_in_groups_show_one_crop_with_every_expression():
    """``face_chunk(group=4)`` (``face_model --face-groups 4``): a run of four crops is one
    scene cut at one place, each character's expression and facing turned; group 1 is the
    ungrouped data, crop for crop."""
    from toyworld.face_crops import face_chunk

    plain = face_chunk(9, 0, 8, 2)
    assert all(
        np.array_equal(a, b) for a, b in zip(plain, face_chunk(9, 0, 8, 2, group=1), strict=True)
    )
    images, _, faces = face_chunk(9, 0, 8, 2, group=4)
    for run in (0, 4):
        crops = images[run : run + 4].astype(int)
        # only the face changes: outside the face's cells (and a cell's margin) the crops
        # agree, inside they differ from one another
        face = np.kron(faces[run : run + 4].max(0) > 0, np.ones((4, 4), bool))
        near = np.zeros_like(face)
        for dy in (-4, 0, 4):
            for dx in (-4, 0, 4):
                near |= np.roll(np.roll(face, dy, 0), dx, 1)
        mouth = np.kron((faces[run] & M.MOUTH) > 0, np.ones((4, 4), bool))
        for k in range(1, 4):
            diff = np.abs(crops[k] - crops[0]).max(-1)
            assert diff[~near].max() <= 8
            assert diff[face].max() > 100
            assert diff[mouth].max() > 100  # another expression: another mouth, in its cells
    assert not np.array_equal(images[0], images[4])  # two runs, two scenes


def test_face_contrast_turns_only_the_face_words_and_reaches_them():
    """``--face-contrast``: each caption's alternatives differ from it in exactly the
    expression (facing) words, a caption without them takes no part, and the loss's
    gradient reaches the face words' token embeddings."""
    import torch

    from toyworld.face_contrast import FaceContrast

    vocab = M.token_vocab()
    fc = FaceContrast("cpu")
    text = [
        "a red circle character looking sad facing left , blue sky",
        "a green square character with no hat , sunset sky",  # no face words
    ]
    ids = torch.tensor([M.caption_ids(t) for t in text])
    alt, valid = fc.alternatives(ids)
    assert alt.shape == (2, 5, ids.shape[1])
    assert valid.tolist() == [[True] * 5, [False] * 5]
    changed = [set(alt[0, a][alt[0, a] != ids[0]].tolist()) for a in range(5)]
    assert changed[:3] == [{vocab[w + "</w>"]} for w in ("surprised", "angry", "happy")]
    assert changed[3:] == [{vocab[w + "</w>"]} for w in ("ahead", "right")]
    assert torch.equal(alt[1], ids[1][None].expand(5, -1))
    # a variant naming both is picked over one naming neither
    variants = torch.stack([ids[1], ids[0]])[None]
    assert fc.pick_variants(variants, torch.tensor([0])).tolist() == [1]

    torch.manual_seed(0)
    unet, encoder = M.build_unet(), M.build_text_encoder()
    noisy, target = torch.randn(2, 8, 16, 16), torch.randn(2, 8, 16, 16)
    faces = torch.zeros(2, 1, 16, 16)
    faces[:, :, 6:9, 6:9] = 1
    ts = torch.tensor([900, 800])
    pred = unet(noisy, ts, encoder(ids)[0]).sample
    ce, acc = fc.loss(unet, encoder, noisy, ts, target, pred, ids, faces, torch.enable_grad)
    assert torch.isfinite(ce) and 0.0 <= float(acc) <= 1.0
    ce.backward()
    grad = encoder.get_input_embeddings().weight.grad
    for w in ("sad", "surprised", "left", "right"):
        assert grad[vocab[w + "</w>"]].abs().sum() > 0
    assert grad[vocab["sunset</w>"]].abs().sum() == 0  # only in the caption that takes no part


def test_face_crops_show_the_captioned_face_large():
    from comicgen.faces import face_square
    from comicgen.infusion.refs import position_box
    from toyworld.drawing import part_boxes
    from toyworld.face_crops import face_chunk
    from toyworld.trainkit import parse_buckets

    assert parse_buckets("face:1,square:1") == {"face": 0.5, "square": 0.5}
    images, ids, masks = M.data_chunk(3, 0, 6, 2, 0.0, bucket="face")
    assert images.shape == (6, 64, 64, 3) and ids.shape == (6, 2, M.MAX_TOKENS) and masks is None
    again, _, faces = face_chunk(3, 0, 6, 2)
    assert np.array_equal(images, again)  # deterministic per index
    # the face's cells: a block inside the crop, a fair share of it; the mouth's: a
    # smaller block inside the face's
    assert faces.shape == (6, 16, 16) and set(np.unique(faces)) == {0, M.FACE, M.FACE | M.MOUTH}
    assert all(0.1 < (f > 0).mean() < 0.7 for f in faces)
    mouth = (faces & M.MOUTH) > 0
    assert all(0 < m.sum() < 0.5 * (f > 0).sum() for m, f in zip(mouth, faces, strict=True))
    assert M.data_chunk(3, 0, 6, 2, 0.0, bucket="face", face_masks=True)[2] is not None
    vocab = {v: k for k, v in M.token_vocab().items()}
    words = [
        " ".join(vocab[t].replace("</w>", "") for t in row if t > 1 and vocab[t] != M.EOS)
        for row in ids[:, 0]
    ]
    assert any("character" in w for w in words)
    assert not any("sky" in w or "shot" in w for w in words)  # one character's clause only
    # the crop is the face square of the character's box: at 64 pixels a face of a wide shot
    # (2-4 latent cells at the panel's size) fills about half of it
    scene = W.Scene(characters=(W.Character(expression="sad"),), positions=("left",))
    x0, y0, x1, y1 = face_square(position_box("left"), 64, 64)
    fx0, fy0, fx1, fy1 = part_boxes(scene)["face"][0]
    assert x0 <= fx0 and fx1 <= x1 and y0 <= fy0 and fy1 <= y1
    assert (fx1 - fx0) / (x1 - x0) > 0.4


def test_the_face_pass_ceiling_pastes_the_worlds_own_faces():
    """``evaluate --faces truth``: the world's own face crops pasted as the pass pastes turn
    a panel painted with other faces into one read with the asked expression and facing."""
    from toyworld import reader as R
    from toyworld.evaluate import TruthFaces, repaint_faces

    ch = W.Character(shape="circle", color="red", expression="sad", look=-1)
    scene = W.Scene(characters=(ch,), positions=("left",), shot="close-up")
    caption = f"{W.describe(ch)} looking sad facing left on the left, close-up"
    other = replace(scene, characters=(replace(ch, expression="happy", look=1),))
    painted = W.render(other)
    got = R.read(painted).characters[0]
    assert (got.expression, got.facing) == ("happy", "right")
    ceiling = TruthFaces(None, vae=False, paste=(0.5, 0.9))
    fixed = repaint_faces(ceiling, painted, scene, caption, 0, 20, 7.5)
    got = R.read(fixed).characters[0]
    assert (got.expression, got.facing) == ("sad", "left")
    assert fixed.size == painted.size and fixed.tobytes() != painted.tobytes()


def test_the_loss_weights_add_up_per_part():
    """``train --face-weight F --mouth-weight W``: a face cell weighs 1 + F, a mouth cell
    1 + F + W, the rest 1; no mouth weight leaves the face weights as they were."""
    from argparse import Namespace

    import torch

    from toyworld.train import part_weights

    masks = torch.tensor([[[0, M.FACE, M.FACE | M.MOUTH, M.HAT]]], dtype=torch.uint8)
    w = part_weights(Namespace(hat_weight=2.0, face_weight=6.0, mouth_weight=4.0), masks)
    assert w.shape == (1, 1, 1, 4) and w.flatten().tolist() == [1.0, 7.0, 11.0, 3.0]
    w = part_weights(Namespace(hat_weight=0.0, face_weight=6.0, mouth_weight=0.0), masks)
    assert w.flatten().tolist() == [1.0, 7.0, 7.0, 1.0]
    assert part_weights(Namespace(hat_weight=0.0, face_weight=6.0, mouth_weight=0.0), None) is None


def test_separate_words_moves_two_token_embeddings_apart_and_nothing_else():
    """``train --init F --separate-words happy,sad``: the two words' embeddings move apart
    along their difference (distance x ``1 + factor``), every other row stays."""
    import torch

    from toyworld.train import parse_args
    from toyworld.trainkit import separate_words

    torch.manual_seed(0)
    encoder = M.build_text_encoder()
    vocab = M.token_vocab()
    a, b = vocab["happy</w>"], vocab["sad</w>"]
    before = encoder.get_input_embeddings().weight.detach().clone()
    apart = separate_words(encoder, ("happy", "sad"), 6.0)
    after = encoder.get_input_embeddings().weight.detach()
    assert apart == pytest.approx(7 * float((before[b] - before[a]).norm()), rel=1e-4)
    assert torch.allclose((after[a] + after[b]) / 2, (before[a] + before[b]) / 2, atol=1e-5)
    others = [i for i in range(after.shape[0]) if i not in (a, b)]
    assert torch.equal(after[others], before[others])
    with pytest.raises(SystemExit, match="glad"):
        separate_words(encoder, ("happy", "glad"), 6.0)
    with pytest.raises(SystemExit):  # no --init to move them in
        parse_args(["--out", "x", "--separate-words", "happy,sad"])
