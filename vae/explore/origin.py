"""Requests from other sites' pages: refused before any route sees them (the explorer's
answers are only for its own page)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from vae.explore.requests import error_response, shown


class SameOrigin:
    """Refuse (403) a request whose ``Origin`` is not this server's own scheme://Host: a page of
    another site open in the same browser can send requests here (a form, a fetch without
    reading the answer) but cannot make them come from this origin. Requests without the
    header (curl, scripts, a browser's same-origin GET) are answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            own = site_of(scope["scheme"], headers.get("host", ""))
            if origin is not None and site_of(*origin.partition("://")[::2]) != own:
                answer = error_response(
                    f"requests from another site ({shown(origin)}) are refused", 403
                )
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def site_of(scheme: str, host: str) -> str:
    """scheme://host in one spelling: lower case, without the scheme's default port."""
    scheme, host = scheme.strip().lower(), host.strip().lower()
    default = {"http": ":80", "https": ":443"}.get(scheme)
    if default and host.endswith(default):
        host = host.removesuffix(default)
    return f"{scheme}://{host}"
