"""Starting a multi-process render through Accelerate (``render --processes N``).

``comicgen render --processes N`` runs ``accelerate launch --num_processes N -m comicgen
render …`` with the same arguments; every process then paints its share of the
panels (see :func:`comicgen.render.render_story`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(processes: int, args: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",  # accelerate's torchrun launcher; on a CPU-only machine it uses gloo
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--main_process_port",
        str(free_port()),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "comicgen",
        *args,
    ]


def relaunch(processes: int, args: list[str], cpu: bool) -> int:
    """Run ``comicgen ARGS`` in ``processes`` processes; returns the exit code."""
    env = dict(os.environ)
    if cpu:
        env["ACCELERATE_USE_CPU"] = "1"
    return subprocess.call(launch_command(processes, args), env=env)
