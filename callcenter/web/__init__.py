"""HTTP API of the service (aiohttp): health, metrics and the call event trail."""

from callcenter.web.app import DossierApi, HealthState, make_app, start_http

__all__ = ["DossierApi", "HealthState", "make_app", "start_http"]
