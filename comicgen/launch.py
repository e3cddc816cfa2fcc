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


def same_command(ctx, drop: tuple[str, ...] = (), **replace) -> list[str]:
    """The arguments of the command being run, rebuilt from its parsed context (a
    ``typer.Context``): the options given (on the command line or through the
    environment) with their values, ``replace`` overriding some by parameter name,
    ``drop`` left out. A new option of the command needs nothing here."""
    names: list[str] = []
    outer = ctx
    while outer.parent is not None:  # the subcommand's path below the program
        names.insert(0, outer.info_name or "")
        outer = outer.parent
    args: list[str] = list(names)
    for param in ctx.command.params:
        name = param.name or ""
        if name in drop:
            continue
        value = replace.get(name, ctx.params.get(name))
        source = ctx.get_parameter_source(name)
        if name not in replace and (source is None or source.name == "DEFAULT"):
            continue
        values = list(value) if param.multiple and value is not None else [value]
        if param.param_type_name == "argument":
            args += [_text(v) for v in values if v is not None]
            continue
        if param.is_flag:
            if value:
                args.append(param.opts[0])
            elif param.secondary_opts:
                args.append(param.secondary_opts[0])
            continue
        for v in values:
            if v is not None:
                args += [param.opts[0], _text(v)]
    return args


def _text(value) -> str:
    import enum

    return str(value.value if isinstance(value, enum.Enum) else value)


def relaunch(processes: int, args: list[str], cpu: bool) -> int:
    """Run ``comicgen ARGS`` in ``processes`` processes; returns the exit code."""
    env = dict(os.environ)
    if cpu:
        env["ACCELERATE_USE_CPU"] = "1"
    return subprocess.call(launch_command(processes, args), env=env)
