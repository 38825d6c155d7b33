"""``[callbacks]`` configuration: defaults, TOML and environment, errors naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter.config import ConfigError, load_config


def test_defaults_toml_and_environment(tmp_path: Path) -> None:
    config = load_config(env={})
    cb = config.callbacks
    assert cb.enabled and cb.number_format == "national" and "{number}" in cb.trunk_uri
    toml = tmp_path / "c.toml"
    toml.write_text(
        '[callbacks]\ntrunk_uri = "sip:{number}@10.0.0.1:5060"\nnumber_format = "e164"\n'
        "max_attempts = 5\n",
        encoding="utf-8",
    )
    config = load_config(toml, env={"CALLCENTER_CALLBACKS_RING_TIMEOUT_S": "12"})
    assert config.callbacks.trunk_uri == "sip:{number}@10.0.0.1:5060"
    assert (config.callbacks.max_attempts, config.callbacks.ring_timeout_s) == (5, 12.0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('number_format = "intl"', "callbacks.number_format: expected national or e164"),
        ('trunk_uri = "sip:trunk@10.0.0.1"', "callbacks.trunk_uri: expected a SIP URI with"),
        ('trunk_uri = "sip:{number}@{host}"', "callbacks.trunk_uri: only {number}"),
        ("max_attempts = 0", "callbacks.max_attempts: must be > 0"),
        ("backoff_factor = 0.5", "callbacks.backoff_factor: must be >= 1"),
        ('caller_id_user = "bad user"', "callbacks.caller_id_user: expected a SIP user part"),
        ('caller_id_display = "a\\"b"', "callbacks.caller_id_display: no quotes"),
        ('ring_timeout_s = "x"', "callbacks.ring_timeout_s: expected a number"),
        ("nope = 1", "unknown field 'nope'"),
    ],
)
def test_errors_name_the_file_and_field(tmp_path: Path, body: str, message: str) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(f"[callbacks]\n{body}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        load_config(toml, env={})
