"""Security headers of every ``/panel/`` response (issue 6).

Set in an ``on_response_prepare`` hook rather than a middleware, so that they are also on the
error pages aiohttp makes itself (404, 405), on static files and on the WebSocket handshake.

- ``Content-Security-Policy`` (CSP Level 3): only the panel's own scripts, styles, images,
  media (``blob:`` for the ringing tone and the remote audio) and connections (``'self'``
  covers ``ws:``/``wss:`` of the same origin in CSP Level 3); no inline script or style, no
  plugin, no ``<base>``, never framed (``frame-ancestors 'none'``; ``X-Frame-Options: DENY``
  for older browsers).
- ``Permissions-Policy``: the microphone for the panel itself only (the softphone), no camera,
  no geolocation.
- ``Cross-Origin-Opener-Policy: same-origin``: no other site keeps a handle on the window.
- ``Cache-Control: no-store`` on pages and API answers (dossiers must not stay in a shared
  computer's cache); static assets (``/panel/static/``) may be cached.
- ``Strict-Transport-Security`` (RFC 6797) when the panel is served over HTTPS
  (``secure_cookies``).
"""

from __future__ import annotations

from aiohttp import web

PANEL_PREFIX = "/panel"
STATIC_PREFIX = "/panel/static/"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The panel's Content-Security-Policy, exactly."""

HSTS = "max-age=31536000"
"""One year (RFC 6797 section 6.1.1); no ``includeSubDomains``: sibling services are not ours."""

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}
"""Headers on every ``/panel/`` response."""

_INSTALLED = web.AppKey("panel_security_installed", bool)


def is_panel_path(path: str) -> bool:
    """Whether ``path`` is the panel's (``/panel`` or under ``/panel/``)."""
    return path == PANEL_PREFIX or path.startswith(PANEL_PREFIX + "/")


def setup_panel_security(app: web.Application, *, hsts: bool) -> None:
    """Add the security headers to every ``/panel/`` response of ``app`` (idempotent).

    Args:
        app: The application (before it starts).
        hsts: Send ``Strict-Transport-Security`` (the panel is served over HTTPS).
    """
    if app.get(_INSTALLED):
        return
    app[_INSTALLED] = True

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        if not is_panel_path(request.path):
            return
        response.headers.update(SECURITY_HEADERS)
        if hsts:
            response.headers["Strict-Transport-Security"] = HSTS
        if not request.path.startswith(STATIC_PREFIX):
            response.headers["Cache-Control"] = "no-store"

    app.on_response_prepare.append(add_headers)
