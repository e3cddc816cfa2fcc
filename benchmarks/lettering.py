"""Timing of laying out and publishing a 12-panel story (HTML + PNG + CBZ).

No diffusion model is involved: the panels are drawn by Pillow beforehand
(``tests/support/sample.py``). Run from the repository root::

    python benchmarks/lettering.py [--dpi 150] [--repeat 3]

It prints the median time of each stage and its share of the whole.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comicgen.layout import layout_book  # noqa: E402
from comicgen.publish import publish  # noqa: E402
from comicgen.settings import PageSettings  # noqa: E402
from tests.support.sample import sample_book  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dpi", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pages", default="4,4,4", help="panels per page, e.g. 4,4,4")
    args = parser.parse_args()
    pages = tuple(int(n) for n in args.pages.split(","))

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "bench"
        book = sample_book(out, pages)
        panels = sum(len(p.panels) for p in book.pages)
        settings = PageSettings()

        layouts = []
        for _ in range(max(args.repeat, 5)):
            start = time.perf_counter()
            laid = layout_book(book, settings)
            layouts.append(time.perf_counter() - start)
        balloons = sum(len(p.balloons) for page in laid.pages for p in page.panels)

        stages: dict[str, list[float]] = {}
        totals = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = publish(book, out, settings, dpi=args.dpi, cbz=True)
            totals.append(time.perf_counter() - start)
            for name, seconds in result.timings.items():
                stages.setdefault(name, []).append(seconds)

    total = statistics.median(totals)
    print(
        f"{panels} panels, {len(book.pages)} pages, {balloons} balloons, "
        f"PNG at {args.dpi} dpi, median of {args.repeat}"
    )
    print(f"  layout + lettering alone: {statistics.median(layouts) * 1000:8.1f} ms")
    for name, values in stages.items():
        seconds = statistics.median(values)
        print(f"  {name:<24} {seconds * 1000:8.1f} ms  {seconds / total:6.1%}")
    print(
        f"  {'publish total':<24} {total * 1000:8.1f} ms  "
        f"({total / len(book.pages) * 1000:.0f} ms per page)"
    )


if __name__ == "__main__":
    main()
