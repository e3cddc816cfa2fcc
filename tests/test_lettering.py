"""Lettering a letterer would accept: captions where asked, voices from off-panel, balloons
in reading order with tails to their speakers, whispers, nudges and sound effects."""

from __future__ import annotations

import itertools
import math

import pytest

from comicgen.book import Book, PageContent, SoundEffect, Speech
from comicgen.layout import layout_book
from tests.test_layout import panel

LEFT, RIGHT = (0.25, 0.6), (0.75, 0.6)


def laid_panel(dialogue=(), caption=None, caption_at="top", sfx=(), shape="square", rtl=False):
    content = panel("1.1", shape, dialogue=dialogue, caption=caption)
    content.caption_at = caption_at
    content.sfx = list(sfx)
    book = Book(
        name="t",
        title="T",
        pages=[PageContent(1, [content])],
        direction="rtl" if rtl else "ltr",
    )
    laid = layout_book(book)
    return laid.pages[0].panels[0], laid


def in_order(prev, rect, rtl: bool) -> bool:
    below = rect.y >= prev.y + 0.6 * prev.h
    beside = rect.y >= prev.y - 0.3 * rect.h and (
        rect.right <= prev.x + 0.1 * rect.w if rtl else rect.x >= prev.right - 0.1 * rect.w
    )
    return below or beside


def on_edge(point, frame) -> bool:
    x, y = point
    return min(abs(x - frame.x), abs(x - frame.right), abs(y - frame.y)) < 1e-6


@pytest.mark.parametrize("where", ["top", "bottom"])
def test_caption_at_is_honoured(where):
    lines = [Speech("Hello there, friend!", "speech", "A", LEFT)]
    p, _ = laid_panel(lines, caption="Later that day.", caption_at=where)
    cap, frame = p.caption.box, p.box
    assert p.caption.position == where
    if where == "top":
        assert cap.y - frame.y < 0.05 * frame.h
    else:
        assert frame.bottom - cap.bottom < 0.05 * frame.h
    assert all(b.box.overlap(cap) == 0 for b in p.balloons)


def test_narrator_and_voice_lines_are_caption_boxes_below_the_caption():
    lines = [
        Speech("Meanwhile...", caption=True),
        Speech("This is the radio.", speaker="Radio", caption=True),
        Speech("Who's there?", "speech", "A", LEFT),
    ]
    p, laid = laid_panel(lines, caption="Chapter two")
    assert [b.text for b in p.balloons] == ["Who's there?"]
    assert [c.text for c in p.narration] == ["Meanwhile...", "This is the radio."]
    assert [c.speaker for c in p.narration] == [None, "Radio"]
    boxes = [p.caption.box] + [c.box for c in p.narration]
    for a, b in zip(boxes, boxes[1:], strict=False):
        assert b.y >= a.bottom  # stacked, in order, none on another
    for box in boxes:
        assert p.box.contains(box, 1.0)
        assert all(box.overlap(b.box) == 0 for b in p.balloons)
    assert any(block.lines == ["Meanwhile..."] for block in laid.text_blocks())


def test_an_offpanel_speaker_gets_a_tail_to_the_frames_edge():
    lines = [Speech("Dinner's ready!", "shout", "Mum", None, offpanel=True)]
    p, _ = laid_panel(lines)
    b = p.balloons[0]
    assert b.offpanel and b.speaker == "Mum" and b.tail and b.tip is not None
    assert on_edge(b.tip, p.box)


@pytest.mark.parametrize("rtl", [False, True])
def test_unnamed_voices_are_spread_in_reading_order_each_with_a_tail(rtl):
    lines = [Speech("One.", "speech"), Speech("Two.", "speech"), Speech("Three.", "speech")]
    p, _ = laid_panel(lines, shape="wide", rtl=rtl)
    xs = [b.center[0] for b in p.balloons]
    assert xs == sorted(xs, reverse=rtl)  # not stacked in one corner
    assert max(xs) - min(xs) > 0.3 * p.box.w
    for b in p.balloons:
        assert b.offpanel and b.tail and on_edge(b.tip, p.box)
    for a, b in itertools.pairwise(p.balloons):
        assert in_order(a.box, b.box, rtl)


@pytest.mark.parametrize("rtl", [False, True])
@pytest.mark.parametrize("order", list(itertools.product("LR", repeat=3)))
def test_balloons_read_in_order_and_point_at_their_speakers(rtl, order):
    where = {"L": ("Lefty", LEFT), "R": ("Righty", RIGHT)}
    lines = [
        Speech(f"Line {i}: {'so ' * (i + 1)}it goes.", "speech", *where[k])
        for i, k in enumerate(order)
    ]
    p, _ = laid_panel(lines, shape="wide", rtl=rtl)
    for a, b in itertools.pairwise(p.balloons):
        assert in_order(a.box, b.box, rtl), (order, a.box, b.box)
    # each tail points nearer its own speaker than the other one
    frame = p.box
    heads = {k: (frame.x + x * frame.w, frame.y + y * frame.h) for k, (_n, (x, y)) in where.items()}
    for k, b in zip(order, p.balloons, strict=True):
        other = "R" if k == "L" else "L"
        assert math.dist(b.tip, heads[k]) < math.dist(b.tip, heads[other])


def test_whisper_and_a_nudged_balloon():
    lines = [
        Speech("psst", "whisper", "A", LEFT),
        Speech("Here!", "speech", "B", RIGHT, at=(0.7, 0.25)),
    ]
    p, _ = laid_panel(lines)
    whisper, nudged = p.balloons
    assert whisper.kind == "whisper" and not whisper.text_block.bold and whisper.tail
    assert nudged.nudged and not whisper.nudged
    frame = p.box
    assert nudged.center[0] == pytest.approx(frame.x + 0.7 * frame.w, abs=1)
    assert nudged.center[1] == pytest.approx(frame.y + 0.25 * frame.h, abs=1)


def test_sound_effects_are_turned_letters_on_the_art_that_balloons_avoid():
    effects = [
        SoundEffect("BOOM!", (0.5, 0.3), -12, "#e33", 0.1),
        SoundEffect("WHAM WHAM WHAM WHAM", (0.98, 0.9), 30, "blue", 0.3),
    ]
    p, laid = laid_panel([Speech("Hi!", "speech", "A", LEFT)], sfx=effects)
    boom, wham = p.sfx
    frame = p.box
    assert boom.text == "BOOM!" and boom.angle == -12 and boom.color == "#e33"
    assert boom.text_block.bold and boom.text_block.size == pytest.approx(0.1 * frame.h)
    assert boom.center == pytest.approx((frame.x + 0.5 * frame.w, frame.y + 0.3 * frame.h))
    for effect in p.sfx:
        assert frame.contains(effect.box, 0.5)  # kept in the frame, turned letters and all
    assert wham.text_block.box.w <= 0.95 * frame.w + 1e-6
    assert p.balloons[0].box.overlap(boom.box) == 0
    assert sum(1 for block in laid.text_blocks() if block.bold) == 2


def test_png_draws_sound_effects_in_colour_and_whispers_dashed(tmp_path):
    import numpy as np
    from PIL import Image

    from comicgen.publish import publish
    from comicgen.settings import PageSettings
    from tests.test_publish import solid_book

    out = tmp_path / "out"
    lines = [
        Speech("psst, listen to me now", "whisper", "Alice", (0.3, 0.7)),
        Speech("I said it out loud", "speech", "Bob", (0.7, 0.7)),
    ]
    book = solid_book(out, (1,), dialogue=lines)
    book.pages[0].panels[0].sfx = [SoundEffect("ZAP", (0.7, 0.3), 20, "#00ff00", 0.25)]
    result = publish(book, out, PageSettings(), dpi=96)
    p = result.layout.pages[0].panels[0]
    with Image.open(result.png_pages[0]) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    box = p.sfx[0].box
    crop = rgb[int(box.y) : int(box.bottom), int(box.x) : int(box.right)]
    green = (crop[..., 1] > 200) & (crop[..., 0] < 80) & (crop[..., 2] < 80)
    assert green.mean() > 0.05

    def inked_share(balloon) -> float:
        """How much of the outline has ink just outside it (a solid line: nearly all)."""
        cx, cy = balloon.center
        hits = []
        for x, y in balloon.outline:
            dx, dy = x - cx, y - cy
            norm = (dx * dx + dy * dy) ** 0.5 or 1.0
            near = [
                rgb[round(y + dy / norm * d), round(x + dx / norm * d)].sum() < 200
                for d in (0.0, 0.5, 1.0, 1.5)
            ]
            hits.append(any(near))
        return sum(hits) / len(hits)

    whisper, speech = p.balloons
    assert inked_share(speech) > 0.75  # all but where the tail joins
    assert inked_share(whisper) < 0.75 * inked_share(speech)
