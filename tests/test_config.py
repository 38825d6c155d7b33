from pathlib import Path

import pytest

from callcenter.config import ConfigError, load_config


def test_defaults() -> None:
    config = load_config(env={})
    assert config.sip.host == "127.0.0.1"
    assert config.sip.port == 5060
    assert config.http.port == 8080
    assert config.data_dir == "./var"
    assert config.db_url == "sqlite:///var/callcenter.sqlite3"
    assert config.flows.flow_for("3975") == "solidarites"


def test_toml_env_and_flags_in_order(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text(
        'data_dir = "/srv/cc"\n[sip]\nport = 5070\nanswer_delay = 1.5\n'
        'users = { agent = "pw" }\n[flows]\nnumbers = { "3975" = "other" }\n'
    )
    config = load_config(
        file,
        env={
            "CALLCENTER_SIP_PORT": "5080",
            "CALLCENTER_SIP_TRUSTED_NETWORKS": "10.0.0.0/8, ::1/128",
        },
        overrides={"http": {"port": 9000, "host": None}},
    )
    assert config.data_dir == "/srv/cc"
    assert config.sip.port == 5080  # env beats the file
    assert config.sip.answer_delay == 1.5
    assert config.sip.users == (("agent", "pw"),)
    assert config.sip.trusted_networks == ("10.0.0.0/8", "::1/128")
    assert config.http.port == 9000  # flags beat everything
    assert config.http.host == "127.0.0.1"
    assert config.flows.flow_for("3975") == "other"
    assert config.flows.flow_for("0800") == "solidarites"


def test_data_dir_and_database_url_from_env() -> None:
    config = load_config(
        env={"CALLCENTER_DATA_DIR": "/tmp/x", "DATABASE_URL": "postgresql://db/cc"}
    )
    assert config.data_dir == "/tmp/x"
    assert config.db_url == "postgresql://db/cc"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sip]\nport = 'abc'\n", "c.toml: sip.port: expected an integer, got 'abc'"),
        ("[sip]\nprot = 5060\n", "c.toml: sip: unknown field 'prot'"),
        ("[nope]\nx = 1\n", "c.toml: unknown section or field 'nope'"),
        ("[sip\n", "c.toml: "),
        ("[sip]\nuntrusted = 'maybe'\n", "sip.untrusted: expected challenge, forbid or allow"),
        ("[rtp]\nport_min = 30000\nport_max = 20000\n", "rtp.port_min/port_max"),
        ("[flows]\nnow_override = '2026-12-07T10:00:00'\n", "flows.now_override: must include"),
        ("[sip]\nhost = '0.0.0.0'\n", "sip.host: binding 0.0.0.0 needs sip.advertised_host"),
        ("[sip]\ntrusted_networks = ['10.0.0.0/33']\n", "sip.trusted_networks: not a network"),
        ("[sip]\nrate_limit = 0\n", "sip.rate_limit: must be > 0"),
        ("[calls]\nmax_calls = 0\n", "calls.max_calls: must be > 0"),
        ("[rtp]\ninactivity_timeout = -1\n", "rtp.inactivity_timeout: must be >= 0"),
        ("[rtp]\nport_min = 20001\nport_max = 20001\n", "holds no even port"),
        ("[tts]\nrate = 20\n", "tts.rate: espeak-ng needs 80..450"),
        ("[http.api_tokens]\ncrm = 'the-token'\n", "http.api_tokens.crm: expected the SHA-256"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "c.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    assert message in str(info.value)


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(
        ConfigError, match=r"^environment CALLCENTER_RTP_INACTIVITY_TIMEOUT: expected a number"
    ):
        load_config(env={"CALLCENTER_RTP_INACTIVITY_TIMEOUT": "soon"})
    with pytest.raises(
        ConfigError, match=r"^environment CALLCENTER_SIP_PROT: unknown field 'prot'"
    ):
        load_config(env={"CALLCENTER_SIP_PROT": "1"})


def test_retention_periods_are_checked_together() -> None:
    config = load_config(
        env={"CALLCENTER_RETENTION_TRAIL_DAYS": "400", "CALLCENTER_ASR_WHISPER_MODEL_DIR": "/m"}
    )
    assert config.retention.trail_days == 400 and config.retention.caller_number_days == 90
    assert config.asr.whisper_model_dir == "/m"
    with pytest.raises(ConfigError, match=r"^retention.trail_days: must be >= .* got 30$"):
        load_config(env={"CALLCENTER_RETENTION_TRAIL_DAYS": "30"})
    with pytest.raises(ConfigError, match=r"^retention.audit_days: must be > 0"):
        load_config(env={"CALLCENTER_RETENTION_AUDIT_DAYS": "0"})


def test_api_tokens_and_nir_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    from callcenter.cli import main

    assert main(["api-token", "crm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    token = lines[0].rsplit(" ", 1)[1]
    file = tmp_path / "c.toml"
    key = tmp_path / "nir.key"
    key.write_text("  0123456789abcdef0123  \n")
    file.write_text("\n".join(lines[2:]) + f"\n[dossiers]\nnir_key_file = '{key}'\n")
    config = load_config(file, env={})
    assert dict(config.http.api_tokens) == {"crm": hashlib.sha256(token.encode()).hexdigest()}
    assert config.dossiers.nir_key() == b"0123456789abcdef0123"
    key.write_text("short")
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        config.dossiers.nir_key()
    assert load_config(env={}).dossiers.nir_key() is None
    assert main(["api-token", "bad name"]) == 2


def test_routing_section(tmp_path: Path) -> None:
    config = load_config(env={})
    assert config.routing.file == "" and config.routing.enabled
    assert config.routing.announce_interval_s == 60.0
    assert config.routing.from_display == "SOLIDARITES"
    music = tmp_path / "music.wav"
    music.write_bytes(b"RIFF")
    config = load_config(
        env={
            "CALLCENTER_ROUTING_FILE": "none",
            "CALLCENTER_ROUTING_HOLD_MUSIC": str(music),
            "CALLCENTER_ROUTING_ANNOUNCE_INTERVAL_S": "30",
        }
    )
    assert not config.routing.enabled
    assert config.routing.hold_music == str(music)
    assert config.routing.announce_interval_s == 30.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[routing]\nfile = '/nonexistent/q.yaml'\n", "routing.file: no such file"),
        ("[routing]\nhold_music = '/nonexistent/m.wav'\n", "routing.hold_music: no such file"),
        ("[routing]\nannounce_interval_s = 1\n", "routing.announce_interval_s: must be >= 5"),
        ("[routing]\nfrom_user = 'a b'\n", "routing.from_user: expected a SIP user part"),
        ("[routing]\nfrom_display = 'a\"b'\n", "routing.from_display: no quotes"),
        ("[routing]\nfle = ''\n", "c.toml: routing: unknown field 'fle'"),
    ],
)
def test_routing_errors_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "c.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    assert message in str(info.value)


def test_transfer_numbers_must_be_comparable() -> None:
    from callcenter.config import ConfigError, load_config

    ok = load_config(env={"CALLCENTER_TRANSFERS_ALLOWED_NUMBERS": "3977,+33321*,+33321000000"})
    assert ok.transfers.allowed_numbers == ("3977", "+33321*", "+33321000000")
    for bad in ("0321000000", "33321*", "+33 3 21"):
        with pytest.raises(ConfigError, match="transfers.allowed_numbers"):
            load_config(env={"CALLCENTER_TRANSFERS_ALLOWED_NUMBERS": bad})


def test_routing_backend_settings_are_checked() -> None:
    from callcenter.config import ConfigError, load_config

    redis = load_config(
        env={"CALLCENTER_ROUTING_BACKEND": "redis", "CALLCENTER_ROUTING_NODE_ID": "a"}
    )
    assert redis.routing.backend == "redis" and redis.routing.node_id == "a"
    for key, value in (
        ("BACKEND", "etcd"),
        ("REDIS_PREFIX", "a b"),
        ("NODE_ID", "n/1"),
        ("NODE_TTL_S", "0.1"),
    ):
        with pytest.raises(ConfigError, match="routing."):
            load_config(env={f"CALLCENTER_ROUTING_{key}": value})


def test_panel_and_webrtc_settings_are_checked() -> None:
    from callcenter.config import ConfigError, load_config

    ok = load_config(
        env={
            "CALLCENTER_PANEL_SECURE_COOKIES": "false",
            "CALLCENTER_WEBRTC_HOST_ADDRESSES": "127.0.0.1",
            "CALLCENTER_WEBRTC_ICE_SERVERS": "stun:stun.example.org:3478",
            "CALLCENTER_PANEL_WRAPUP_MOTIFS": "APA,MDPH",
        }
    )
    assert ok.panel.secure_cookies is False and ok.webrtc.host_addresses == ("127.0.0.1",)
    assert ok.panel.wrapup_motifs == ("APA", "MDPH")
    for env, field in (
        ({"CALLCENTER_PANEL_IDLE_TIMEOUT_S": "0"}, "panel.idle_timeout_s"),
        ({"CALLCENTER_PANEL_MAX_FAILED_LOGINS": "0"}, "panel.max_failed_logins"),
        ({"CALLCENTER_WEBRTC_HOST_ADDRESSES": "serveur"}, "webrtc.host_addresses"),
        ({"CALLCENTER_WEBRTC_ICE_SERVERS": "http://x"}, "webrtc.ice_servers"),
        ({"CALLCENTER_WEBRTC_CODECS": "G729"}, "webrtc.codecs"),
        # A cookie without Secure may only be used on this machine.
        (
            {"CALLCENTER_PANEL_SECURE_COOKIES": "false", "CALLCENTER_HTTP_HOST": "0.0.0.0"},
            "panel.secure_cookies",
        ),
    ):
        with pytest.raises(ConfigError, match=field):
            load_config(env=env)
