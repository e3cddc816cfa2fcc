"""A 48-panel story with 3 characters, end to end (paint + letter + export):
1 process with 2 threads vs 2 processes with 1 thread each (``--processes 2``).

Every run starts from an empty cache in a fresh copy of the workspace, as a separate
``comicgen render`` process; runs alternate (1, 2, 1, 2, …) so both see the machine alike.
Prints wall time, time per panel and the peak memory of the whole process tree (sum of
the resident sizes of all processes, sampled every 50 ms), then the speed-up.

    python benchmarks/story.py                 # bundled model, CPU: about 5 minutes
    python benchmarks/story.py --repeats 3 --model PATH-OF-A-SAVED-PIPELINE
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHARACTERS = ("pip", "bo", "tri")
SCENES = [
    "wide shot, grass, day sky, a tree",
    "close-up, sand, sunset sky",
    "wide shot, snow, night sky, a house",
    "wide shot, sand, day sky",
]


def story(pages: int = 16) -> str:
    lines = ["title: Benchmark", "pages:"]
    n = 0
    for p in range(pages):
        lines.append("  - panels:")
        for i in range(3):
            a, b = CHARACTERS[n % 3], CHARACTERS[(n + 1) % 3]
            scene = SCENES[n % len(SCENES)]
            if n % 2:
                prompt = f"{{{a}}} on the left, {{{b}}} on the right, {scene}"
                chars = f"[{{name: {a}, position: left}}, {{name: {b}, position: right}}]"
            else:
                prompt = f"{{{a}}} in the center, {scene}"
                chars = f"[{{name: {a}, position: center}}]"
            lines += [
                f'      - prompt: "{prompt}"',
                f"        characters: {chars}",
                f'        caption: "Panel {p + 1}.{i + 1}"',
                f"        dialogue: [{{speaker: {a}, text: 'Line {n}'}}]",
            ]
            n += 1
    return "\n".join(lines) + "\n"


def workspace(base: Path, model: str) -> Path:
    ws = Path(tempfile.mkdtemp(dir=base))
    (ws / "stories").mkdir()
    (ws / "comicgen.toml").write_text(
        f'[model]\nname = "{model}"\ndevice = "cpu"\n[render]\nsteps = 20\n', encoding="utf-8"
    )
    shutil.copytree(ROOT / "characters", ws / "characters")
    (ws / "stories" / "bench.yaml").write_text(story(), encoding="utf-8")
    return ws


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (Linux /proc)."""
    total = 0
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid, pages = int(fields[1]), int(fields[21])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    stack = [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def render(ws: Path, processes: int) -> tuple[float, int]:
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "comicgen", "render", "stories/bench.yaml", "-w", str(ws)]
    if processes > 1:
        cmd += ["--processes", str(processes)]
        env.pop("OMP_NUM_THREADS", None)  # the launcher gives each process one thread
    else:
        env["OMP_NUM_THREADS"] = "2"
    peak = 0
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    text = out.decode(errors="replace")
    if proc.returncode != 0 or "48 panels painted" not in text:
        raise SystemExit(f"render failed ({proc.returncode}):\n{text}")
    return wall, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", default="bundled:toyworld")
    args = ap.parse_args()
    results: dict[int, list[tuple[float, int]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for processes in (1, 2):
                wall, peak = render(workspace(Path(tmp), args.model), processes)
                results[processes].append((wall, peak))
                print(
                    f"run {r + 1}: {processes} process(es): {wall:.1f} s, "
                    f"peak {peak / 2**20:.0f} MiB",
                    flush=True,
                )
    print(f"\n48 panels, 3 characters, {args.model}, 20 steps, {os.cpu_count()} cores")
    print("| processes | threads each | wall s (median) | s/panel | peak MiB (all processes) |")
    print("|---|---|---|---|---|")
    medians = {}
    for processes, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        peak = max(p for _, p in runs)
        medians[processes] = wall
        threads = 2 if processes == 1 else 1
        print(f"| {processes} | {threads} | {wall:.1f} | {wall / 48:.2f} | {peak / 2**20:.0f} |")
    print(f"speedup_2proc_vs_1proc={medians[1] / medians[2]:.2f}")


if __name__ == "__main__":
    main()
