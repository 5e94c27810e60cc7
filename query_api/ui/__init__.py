"""The back-office page: static files shipped in the package, served at ``/``.

No build step and nothing from a CDN: ``static/`` holds the HTML, the CSS and the
script, read once from the installed package. The page speaks only the public
GraphQL API (``/graphql``, HTTP and graphql-transport-ws) with the same bearer
token as any client, so these files are open (no token needed to fetch them) and
hold no data. Every response carries a strict Content-Security-Policy (scripts,
styles and connections from this origin only: no inline script or style),
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

#: URL path -> (file in ``static/``, media type). Nothing else is served.
FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/ui/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/ui/app.css": ("app.css", "text/css; charset=utf-8"),
}
PATHS = tuple(FILES)

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",  # /graphql over HTTP and WebSocket (same origin)
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # The files change with the package: revalidate rather than serve a stale script.
    "Cache-Control": "no-cache",
}


@cache
def _content(name: str) -> bytes:
    return files("query_api.ui").joinpath("static", name).read_bytes()


async def _serve(request: Request) -> Response:
    name, media_type = FILES[request.url.path]
    return Response(_content(name), media_type=media_type, headers=HEADERS)


def routes() -> list[Route]:
    """The page's routes: ``GET``/``HEAD`` of each file in ``FILES``."""
    return [Route(path, _serve, methods=["GET", "HEAD"]) for path in FILES]
