"""Running the studio under uvicorn (the command line's part of ``serve``)."""

from __future__ import annotations

import socket
from pathlib import Path

from comicgen.errors import ComicgenError


def run(root: Path, story: Path | None, *, host: str, port: int, open_browser: bool, out) -> None:
    import uvicorn

    from comicgen.serve.app import LOCAL_HOSTS, create_app
    from comicgen.serve.studio import Studio

    studio = Studio(root, story)
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    if studio.first is not None:
        url += f"s/{studio.first}/index.html"
    hosts = LOCAL_HOSTS if host in LOCAL_HOSTS else [*LOCAL_HOSTS, host, shown]
    if host in ("0.0.0.0", "::"):
        hosts = ["*"]  # any name this machine answers to; the token still guards writes
    app = create_app(studio, allowed_hosts=hosts)
    out.print(f"comicgen studio: [bold]{url}[/]  (Ctrl-C to stop)", soft_wrap=True)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ComicgenError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="another server may use the port: try --port 0 or another number",
        ) from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock
