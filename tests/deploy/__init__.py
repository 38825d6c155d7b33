"""Static and local checks of deploy/: systemd units, compose file, Dockerfiles.

Shared helpers: :func:`parse_env_file` and :func:`config_key` (an environment variable must name
a real configuration field).
"""

from __future__ import annotations

import dataclasses
import re

from callcenter.config import Config

__all__ = ["config_key", "parse_env_file"]


def parse_env_file(text: str, *, commented: bool) -> dict[str, str]:
    """KEY=value lines of an EnvironmentFile; ``commented``: also the ``#KEY=value`` examples."""
    pattern = r"^(#)?([A-Z][A-Z0-9_]*)=(.*)$"
    env: dict[str, str] = {}
    for line in text.splitlines():
        found = re.match(pattern, line)
        if found and (commented or not found.group(1)):
            env[found.group(2)] = found.group(3)
    return env


def config_key(var: str) -> tuple[str, str]:
    """Map an environment variable to (section, field) of the configuration, or fail."""
    if var in ("CALLCENTER_DATA_DIR", "DATABASE_URL"):
        return ("", var.removeprefix("CALLCENTER_").lower())
    assert var.startswith("CALLCENTER_"), f"{var}: not a configuration variable"
    rest = var.removeprefix("CALLCENTER_")
    defaults = Config()
    for section in dataclasses.fields(defaults):
        value = getattr(defaults, section.name)
        prefix = section.name.upper() + "_"
        if dataclasses.is_dataclass(value) and rest.startswith(prefix):
            field = rest[len(prefix) :].lower()
            known = {f.name for f in dataclasses.fields(value)}
            assert field in known, f"{var}: [{section.name}] has no field {field!r}"
            return (section.name, field)
    raise AssertionError(f"{var}: no configuration section matches")
