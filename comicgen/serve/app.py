"""The studio's HTTP routes (Starlette).

::

    /                                the workspace's stories
    /s/<story>/index.html, page-NN.html   the pages, from memory, with the studio script
    /s/<story>/assets/…              comic.css, reader.js, fonts (the templates' own)
    /s/<story>/panels/pNN-N.png      painted panels (placeholders while queued)
    /s/<story>/page-NN.png, thumbs/… PNG pages, drawn on request
    /build/…                         the static build, as ``render`` wrote it
    /_studio/events?story=&page=     server-sent events
    /_studio/panel/<key>.png         a cached panel or take by its content key
    /_studio/characters              the character library: views, masks, boxes
    POST /_studio/takes, /_studio/pick   (need the per-run token)

Every response carries a Content-Security-Policy; requests whose Host is not this
server's are refused (DNS rebinding); requests that change a file need the token in
``X-Comicgen-Token`` and a JSON body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from comicgen.errors import ComicgenError
from comicgen.serve.paths import safe_child
from comicgen.serve.studio import Studio

STATIC = Path(__file__).resolve().parent / "static"
CSP = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
LOCAL_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
_KEY = re.compile(r"^[0-9a-f]{64}$")
_PAGE = re.compile(r"^page-\d{2,4}\.(html|png)$")


def create_app(studio: Studio, *, allowed_hosts: list[str] | None = None, watch: bool = True):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        loop = asyncio.get_running_loop()
        studio.start(loop)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(studio.builder())]
        if watch:
            from comicgen.serve.watcher import watch as watch_files

            tasks.append(asyncio.create_task(watch_files(studio.root, studio.files_changed, stop)))
        if studio.first is not None:
            studio.mark_dirty({studio.first})
        try:
            yield
        finally:
            stop.set()
            studio.hub.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await loop.run_in_executor(None, studio.close)

    async def home(request: Request) -> Response:
        if studio.first is not None and "list" not in request.query_params:
            return RedirectResponse(f"/s/{studio.first}/index.html", status_code=307)
        from comicgen.serve.characters import story_list

        return _html(story_list(studio))

    async def story_page(request: Request) -> Response:
        state = studio.story(request.path_params["story"])
        if state is None:
            return _not_found()
        rest = request.path_params.get("path") or "index.html"
        await studio.ensure_built(state)
        build = state.build
        if rest.endswith(".html"):
            if build is None:
                return _html(_error_page(state.name, state.error or "not built"), 200)
            text = build.pages.get(rest)
            return _html(text) if text is not None else _not_found()
        if rest.startswith("assets/"):
            return _asset(studio, rest[len("assets/") :])
        if build is None:
            return _not_found()
        if rest.startswith("panels/"):
            return _panel(studio, state, rest, request)
        if _PAGE.match(rest) or (rest.startswith("thumbs/") and _PAGE.match(rest[7:])):
            from comicgen.serve.pages import page_png

            thumb = rest.startswith("thumbs/")
            loop = asyncio.get_running_loop()
            data = await loop.run_in_executor(
                studio.executor, page_png, build, rest[7:] if thumb else rest, thumb
            )
            if data is None:
                return _not_found()
            return Response(data, media_type="image/png", headers={"Cache-Control": "no-cache"})
        return _not_found()

    async def static_build(request: Request) -> Response:
        target = safe_child(studio.ws.build_dir, request.path_params["path"], studio.root)
        if target is None:
            return _not_found()
        return FileResponse(target, headers={"Cache-Control": "no-cache"})

    async def studio_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("studio.js", "studio.css"):
            return _not_found()
        media = "text/javascript" if name.endswith(".js") else "text/css"
        return FileResponse(STATIC / name, media_type=media, headers={"Cache-Control": "no-cache"})

    async def events(request: Request) -> Response:
        from comicgen.serve.events import Client

        name = request.query_params.get("story")
        state = studio.story(name) if name else None
        if name and state is None:
            return _not_found()
        try:
            page = int(request.query_params.get("page", ""))
        except ValueError:
            page = None
        client = Client(state.name if state else None, page)
        first = studio.first_events(state) if state else []
        studio.hub.clients.add(client)
        if state is not None and state.build is not None:
            studio.reprioritize(state)  # the pages on screen are painted first
        return StreamingResponse(
            studio.hub.stream(client, first),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def cached_panel(request: Request) -> Response:
        key = request.path_params["key"]
        if not _KEY.match(key):
            return _not_found()
        path = studio.library().cache_get(key)
        if path is None:
            return _not_found()
        return FileResponse(path, media_type="image/png", headers=_IMMUTABLE)

    async def takes(request: Request) -> Response:
        body = await _checked_json(request, studio)
        if isinstance(body, Response):
            return body
        state = studio.story(str(body.get("story", "")))
        if state is None:
            return _not_found()
        count = body.get("count", 4)
        if not isinstance(count, int) or isinstance(count, bool):
            return _bad("count must be a number")
        try:
            items = studio.ask_takes(state, str(body.get("panel", "")), count)
        except ComicgenError as exc:
            return _bad(exc.line())
        return JSONResponse({"takes": items})

    async def pick(request: Request) -> Response:
        body = await _checked_json(request, studio)
        if isinstance(body, Response):
            return body
        state = studio.story(str(body.get("story", "")))
        if state is None:
            return _not_found()
        take = body.get("take")
        if not isinstance(take, int) or isinstance(take, bool):
            return _bad("take must be a number")
        loop = asyncio.get_running_loop()
        try:
            seed = await loop.run_in_executor(
                None, studio.pick, state, str(body.get("panel", "")), take
            )
        except ComicgenError as exc:
            return _bad(exc.line())
        return JSONResponse({"seed": seed})

    async def characters(request: Request) -> Response:
        from comicgen.serve.characters import character_page

        loop = asyncio.get_running_loop()
        text = await loop.run_in_executor(None, character_page, studio)
        return _html(text)

    async def character_view(request: Request) -> Response:
        from comicgen.serve.characters import view_png

        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(
            None,
            view_png,
            studio,
            request.path_params["name"],
            request.path_params["index"],
            request.path_params["kind"],
        )
        if data is None:
            return _not_found()
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-cache"})

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    routes = [
        Route("/", home),
        Route("/favicon.ico", favicon),
        Route("/s/{story}/", story_page),
        Route("/s/{story}/{path:path}", story_page),
        Route("/build/{path:path}", static_build),
        Route("/_studio/events", events),
        Route("/_studio/panel/{key}.png", cached_panel),
        Route("/_studio/takes", takes, methods=["POST"]),
        Route("/_studio/pick", pick, methods=["POST"]),
        Route("/_studio/characters", characters),
        Route("/_studio/characters/{name}/{index:int}-{kind}.png", character_view),
        Route("/_studio/{name}", studio_file),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or LOCAL_HOSTS),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)

    app.state.studio = studio
    return app


class SecurityHeaders:
    """Adds the Content-Security-Policy (unless set) and no-sniff to every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", CSP.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


_IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers={"Cache-Control": "no-store"})


def _not_found() -> Response:
    return PlainTextResponse("not found", status_code=404)


def _bad(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=400)


async def _checked_json(request: Request, studio: Studio):
    """The request's JSON body, or a refusal: wrong token, other origin, not JSON."""
    token = request.headers.get("x-comicgen-token", "")
    if not hmac.compare_digest(token.encode(), studio.token.encode()):
        return JSONResponse({"error": "missing or wrong token"}, status_code=403)
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        return JSONResponse({"error": "request from another origin"}, status_code=403)
    if not request.headers.get("content-type", "").startswith("application/json"):
        return JSONResponse({"error": "send JSON"}, status_code=415)
    try:
        body = await request.json()
    except ValueError:
        return _bad("not valid JSON")
    if not isinstance(body, dict):
        return _bad("send a JSON object")
    return body


def _asset(studio: Studio, name: str) -> Response:
    """comic.css, reader.js (workspace override first) and the lettering fonts."""
    from comicgen import lettering
    from comicgen.publish import html

    ws = studio.ws
    if name in html.STATIC_TEMPLATES:
        templates = [ws.templates_dir] if ws.templates_dir.is_dir() else []
        source = html.static_source(name, templates)
        media = "text/css" if name.endswith(".css") else "text/javascript"
        return FileResponse(source, media_type=media, headers={"Cache-Control": "no-cache"})
    target = safe_child(lettering.FONT_DIR, name)
    if target is None:
        for state in studio.stories.values():  # a fallback face the pages use
            if state.build is not None:
                faces = html.face_assets(state.build.layout)
                if name in faces:
                    return FileResponse(faces[name], headers={"Cache-Control": "no-cache"})
        return _not_found()
    return FileResponse(target, headers={"Cache-Control": "no-cache"})


def _panel(studio: Studio, state, rest: str, request: Request) -> Response:
    """A panel of the page: the cached picture for its key, else the placeholder."""
    from comicgen.serve.pages import serve_dir

    key = request.query_params.get("v")
    if key and re.fullmatch(r"[0-9a-f]{8,64}", key):
        build = state.build
        for job in build.jobs:
            if job.key.startswith(key) and f"panels/{job.file_name}" == rest:
                path = studio.library().cache_get(job.key)
                if path is not None:
                    return FileResponse(path, media_type="image/png", headers=_IMMUTABLE)
    target = safe_child(serve_dir(studio.ws, state.build.plan.loaded.name), rest, studio.root)
    if target is None:
        return _not_found()
    return FileResponse(target, media_type="image/png", headers={"Cache-Control": "no-store"})


def _error_page(story: str, message: str) -> str:
    import html as html_escape

    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        '<meta name="comicgen-story" content="' + html_escape.escape(story) + '">'
        '<link rel="stylesheet" href="/_studio/studio.css">'
        '<script src="/_studio/studio.js" defer></script>'
        f"<title>{html_escape.escape(story)}</title></head><body>"
        f'<div id="studio-overlay" class="show" role="alert"><pre>'
        f"{html_escape.escape(message)}</pre></div></body></html>"
    )
