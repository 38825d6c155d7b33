"""HTTP API of the service (aiohttp): health, metrics and the call event trail."""

from callcenter.web.app import HealthState, make_app, start_http

__all__ = ["HealthState", "make_app", "start_http"]
