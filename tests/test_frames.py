"""Paintings fit their frames: pages are laid out before painting, and each panel is
painted at its frame's own aspect, so the frame crops at most a few percent of it."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from comicgen.infusion.refs import POSITION_BOXES
from comicgen.layout import BookLayout, known_layouts, layout_book
from comicgen.library import Library
from comicgen.models import fit_size
from comicgen.render import build_book, plan, render_story
from tests.helpers import tiny_workspace

MAX_LOSS = 0.05  # of a painting's area, lost to its frame


def story(pages: list[str | None], header: str = "") -> str:
    """One page per entry: a named layout (its panel count), or None: an automatic
    three-panel page. Each page's first panel holds two characters, left and right."""
    counts = known_layouts()
    lines = ["title: Frames", header, "pages:"] if header else ["title: Frames", "pages:"]
    for name in pages:
        lines.append("  - panels:" if name is None else f"  - layout: {name}\n    panels:")
        for n in range(counts[name] if name else 3):
            lines.append(f'      - prompt: "scene {n}, grass, day sky"')
            if n == 0:
                cast = "[{name: pip, position: left}, {name: bo, position: right}]"
                lines.append(f"        characters: {cast}")
                lines.append("        dialogue: [{speaker: pip, text: 'Hello there.'}]")
    return "\n".join(lines) + "\n"


def rendered(tmp_path: Path, text: str) -> BookLayout:
    ws = tiny_workspace(tmp_path / "ws", steps=1, characters={"pip": "red", "bo": "blue"})
    path = ws.stories_dir / "frames.yaml"
    path.write_text(text, encoding="utf-8")
    with Library.open(ws.db_path, ws.cache_dir) as lib:
        render_story(ws, path, library=lib)
        the_plan = plan(ws, path, lib)
        book, skipped = build_book(the_plan, ws.build_dir / "frames", lib)
    assert skipped == 0
    return layout_book(book, the_plan.page)


def check_fits(laid: BookLayout) -> float:
    """Assert every painting fits its frame; the largest loss found."""
    worst = 0.0
    for page in laid.pages:
        for panel in page.panels:
            with Image.open(panel.content.image) as image:
                size = image.size
            assert size == panel.content.image_size
            iw, ih = size
            crop = panel.crop
            loss = 1 - crop.w * crop.h / (iw * ih)
            assert loss <= MAX_LOSS, (page.layout, panel.id, size, panel.box, loss)
            worst = max(worst, loss)
            # the characters' boxes (Infusion's regions) stay inside the frame
            for name in panel.content.characters:
                x0, y0, x1, y1 = POSITION_BOXES["left" if name == "Pip" else "right"]
                seen_w = min(x1 * iw, crop.x + crop.w) - max(x0 * iw, crop.x)
                seen_h = min(y1 * ih, crop.y + crop.h) - max(y0 * ih, crop.y)
                assert seen_w * seen_h >= 0.95 * (x1 - x0) * iw * (y1 - y0) * ih, panel.id
    return worst


def test_every_named_layout_paints_panels_that_fit_their_frames(tmp_path):
    laid = rendered(tmp_path, story([*known_layouts(), None]))
    assert [p.layout for p in laid.pages[:-1]] == list(known_layouts())
    check_fits(laid)
    # not everything is painted square: the frames decide
    sizes = {p.content.image_size for page in laid.pages for p in page.panels}
    assert any(w > h for w, h in sizes) and any(w < h for w, h in sizes)


@pytest.mark.parametrize(
    "header",
    ["page: {preset: webtoon}", "direction: rtl", "page: {preset: square}\ndirection: rtl"],
)
def test_webtoon_and_rtl_pages_paint_panels_that_fit_their_frames(tmp_path, header):
    laid = rendered(tmp_path, story(["2x2", None, "tall-left-3"], header=header))
    check_fits(laid)
    if "rtl" in header:  # the first panel of a row sits on the right
        first, second = laid.pages[0].panels[:2]
        assert first.box.x > second.box.x


def test_a_pinned_shape_steers_the_automatic_layout(tmp_path):
    first = 'prompt: "scene 0, grass, day sky"'
    text = story([None]).replace(first, first + "\n        shape: wide")
    laid = rendered(tmp_path, text)
    check_fits(laid)
    first = laid.pages[0].panels[0]
    assert first.box.w > 1.3 * first.box.h
    w, h = first.content.image_size
    assert w > 1.3 * h


@pytest.mark.parametrize("aspect", [0.3, 0.5, 2 / 3, 1.0, 1.5, 2.0, 2.7, 4.0])
@pytest.mark.parametrize("side, multiple", [(64, 16), (512, 8), (512, 64), (1024, 64)])
def test_painting_sizes_are_model_multiples_near_the_native_area(aspect, side, multiple):
    w, h = fit_size(aspect, side, multiple)
    assert w % multiple == 0 and h % multiple == 0
    assert 0.5 <= w * h / side**2 <= 2
    assert abs(w / h / aspect - 1) <= 0.12, (w, h)  # the frame meets the rest


def test_a_model_trained_on_buckets_paints_a_frame_of_their_aspect_at_their_size(tmp_path):
    """A model folder's comicgen.json lists the sizes it was trained at; a frame of one of
    their aspects is painted at exactly that size (not an off-bucket size of the same
    area), other aspects as before, and a broken file is one clear error."""
    import json
    import shutil

    from comicgen.errors import ModelError
    from comicgen.models import inspect_model, panel_size
    from tests.support.tiny import TINY

    folder = tmp_path / "model"
    shutil.copytree(TINY, folder)
    plain = inspect_model(str(folder))
    assert plain.buckets == ()
    side = plain.native_size
    buckets = [[side, side], [2 * side, side], [side, 2 * side]]
    (folder / "comicgen.json").write_text(json.dumps({"buckets": buckets}))
    info = inspect_model(str(folder))
    assert info.buckets == tuple(map(tuple, buckets))
    assert info.fingerprint != plain.fingerprint
    assert panel_size(info, None, 2.0) == (2 * side, side)  # the trained strip
    assert panel_size(plain, None, 2.0) != (2 * side, side)  # same area as a square
    assert panel_size(info, None, 0.5) == (side, 2 * side)
    assert panel_size(info, None, 1.5) == panel_size(plain, None, 1.5)  # no such bucket
    assert panel_size(info, 2 * side, 2.0) == panel_size(plain, 2 * side, 2.0)
    (folder / "comicgen.json").write_text('{"buckets": [[64]]}')
    with pytest.raises(ModelError, match="comicgen.json"):
        inspect_model(str(folder))
