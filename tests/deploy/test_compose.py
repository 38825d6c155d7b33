"""deploy/compose/compose.yaml, checked without a Docker engine.

The file is parsed as YAML and its ``${VAR}`` references are interpolated with the values of
``env.example`` (as ``docker compose`` would with a ``.env`` copied from it); then the services
are checked against the other files they depend on: the Dockerfiles, every bind-mounted path,
the nodes' environment (loaded by the real configuration loader), Kamailio's node list, the
Prometheus targets and the Grafana provisioning. ``docker compose config`` runs too where the
compose plugin is installed.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from callcenter.cli import build_parser
from callcenter.config import Config, load_config
from tests.deploy import config_key, parse_env_file

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
ENV_EXAMPLE = COMPOSE_DIR / "env.example"
SERVICE_DOCKERFILE = ROOT / "deploy" / "Dockerfile"
NODES = ("node1", "node2")

_VARIABLE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\})")


def interpolate(value: Any, env: dict[str, str], used: set[str]) -> Any:
    """Compose's interpolation of ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, used) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, used) for v in value]
    if not isinstance(value, str):
        return value

    def one(found: re.Match[str]) -> str:
        name, op, arg = found.group(1), found.group(2), found.group(3)
        if name is None:
            return "$"
        used.add(name)
        current = env.get(name, "")
        if op in (":?", "?") and not current:
            raise AssertionError(f"{COMPOSE.name}: {name} is required: {arg}")
        if op in (":-", "-") and not current:
            return arg
        return current

    return _VARIABLE.sub(one, value)


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE.read_text(), commented=False)


@pytest.fixture(scope="module")
def compose(example_env: dict[str, str]) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE.read_text())
    used: set[str] = set()
    doc: dict[str, Any] = interpolate(raw, example_env, used)
    # Every variable the file uses is documented in env.example, and nothing more.
    assert used == set(example_env), (used, set(example_env))
    return doc


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def dockerfile_of(service: dict[str, Any]) -> Path:
    build: dict[str, str] = service["build"]
    return (COMPOSE_DIR / build["context"] / build.get("dockerfile", "Dockerfile")).resolve()


def _pinned(image: str) -> bool:
    """An image reference with an explicit version tag (or a digest), never ``latest``."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and bool(re.search(r"\d", tag))


def test_every_service_has_a_pinned_image_or_a_build(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if "build" in service:
            dockerfile = dockerfile_of(service)
            assert dockerfile.is_file(), f"{name}: no {dockerfile}"
            for line in dockerfile.read_text().splitlines():
                if line.startswith("FROM "):
                    assert _pinned(line.split()[1]), f"{name}: unpinned base {line}"
        else:
            assert _pinned(service["image"]), f"{name}: image {service['image']} is not pinned"


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE_DIR / source).resolve(), rest.split(":")[0]))
    return mounts


def test_bind_mounted_paths_exist_and_named_volumes_are_declared(
    compose: dict[str, Any],
) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services(compose).items():
        for source, target in bind_mounts(service):
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert source.is_relative_to(ROOT), f"{name}: {source} is outside the repository"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} not declared"


def node_env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in service["environment"].items()}


def node_config(service: dict[str, Any]) -> Config:
    """The node's configuration, as the node would load it (mounted TOML + its environment)."""
    argv = service["command"]
    args = build_parser().parse_args(argv)
    assert args.command == "serve"
    mounts = {target: source for source, target in bind_mounts(service)}
    assert args.config in mounts, f"--config {args.config} is not mounted"
    return load_config(mounts[args.config], env=node_env(service))


def test_nodes_environment_is_real_configuration(compose: dict[str, Any]) -> None:
    for name in NODES:
        service = services(compose)[name]
        assert dockerfile_of(service) == SERVICE_DOCKERFILE
        for var in node_env(service):
            config_key(var)
        config = node_config(service)
        assert config.routing.backend == "redis"
        assert config.routing.node_id == name
        assert config.callbacks.node == name
        assert config.database_url.startswith("postgresql+psycopg://callcenter:")
        assert "@postgres:5432/" in config.database_url
        assert config.routing.redis_url == "redis://redis:6379/0"
        assert "redis" in services(compose) and "postgres" in services(compose)
        assert config.http.host == "0.0.0.0"
        assert config.sip.untrusted == "forbid"
        assert config.tts.recordings_dir in {t for _, t in bind_mounts(service)}
    ids = {node_config(services(compose)[n]).routing.node_id for n in NODES}
    assert len(ids) == len(NODES)


def static_address(service: dict[str, Any]) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(service["networks"]["callcenter"]["ipv4_address"])


def published(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host part, container part, protocol) of each published port."""
    result = []
    for entry in service.get("ports", []):
        spec, _, proto = entry.partition("/")
        host, _, container = spec.rpartition(":")
        result.append((host, container, proto or "tcp"))
    return result


def test_nodes_have_static_addresses_and_publish_their_sip_and_rtp_ports(
    compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    subnet = ipaddress.IPv4Network(compose["networks"]["callcenter"]["ipam"]["config"][0]["subnet"])
    addresses = {}
    for name, service in services(compose).items():
        if "networks" in service:
            addresses[name] = static_address(service)
            assert addresses[name] in subnet, name
    assert len(set(addresses.values())) == len(addresses), addresses
    ranges = []
    for name in NODES:
        service = services(compose)[name]
        config = node_config(service)
        ports = published(service)
        public = example_env["PUBLIC_IP"]
        assert config.sip.advertised_host == public
        assert (f"{public}:{config.sip.port}", str(config.sip.port), "udp") in [
            (h, c, p) for h, c, p in ports
        ]
        rtp = f"{config.rtp.port_min}-{config.rtp.port_max}"
        assert (f"{public}:{rtp}", rtp, "udp") in ports, f"{name}: RTP range not published"
        ranges.append(range(config.rtp.port_min, config.rtp.port_max + 1))
        # The panel: loopback only, for the TLS reverse proxy on the host.
        http = [h for h, c, p in ports if c == str(config.http.port) and p == "tcp"]
        assert len(http) == 1 and http[0].startswith("127.0.0.1:"), http
        # Kamailio (host network, the public address) and the bridge are trusted.
        trusted = [ipaddress.ip_network(n) for n in config.sip.trusted_networks]
        assert any(ipaddress.ip_address(public) in n for n in trusted)
        assert any(subnet.subnet_of(n) for n in trusted if n.version == 4)
    assert not set(ranges[0]) & set(ranges[1]), "the nodes' RTP ranges overlap"


def kamailio_defines(service: dict[str, Any]) -> dict[str, str]:
    argv: list[str] = service["command"]
    defines = {}
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "-A":
            key, _, val = value.partition("=")
            defines[key] = val.strip('"')
    return defines


def test_kamailio_dispatches_to_the_nodes_static_addresses(compose: dict[str, Any]) -> None:
    kamailio = services(compose)["kamailio"]
    assert kamailio.get("network_mode") == "host"
    mounts = {target: source for source, target in bind_mounts(kamailio)}
    argv = kamailio["command"]
    config_target = argv[argv.index("-f") + 1]
    assert mounts[config_target] == ROOT / "deploy" / "kamailio" / "dispatcher.cfg"
    defines = kamailio_defines(kamailio)
    listing = mounts[defines["KAM_DS_LIST"]]
    entries = set()
    for line in listing.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            found = re.fullmatch(r"1 sip:([0-9.]+):([0-9]+)", line.strip())
            assert found, f"{listing.name}: bad line {line!r}"
            entries.add((ipaddress.IPv4Address(found.group(1)), int(found.group(2))))
    expected = {
        (static_address(services(compose)[n]), node_config(services(compose)[n]).sip.port)
        for n in NODES
    }
    assert entries == expected
    for network in defines["KAM_TRUSTED"].split(","):
        ipaddress.ip_network(network)
    assert defines["KAM_LISTEN"].startswith("udp:")


@pytest.mark.skipif(shutil.which("kamailio") is None, reason="kamailio not installed")
def test_kamailio_accepts_the_compose_command_line(compose: dict[str, Any]) -> None:
    """``kamailio -c`` with the compose defines (checks the syntax; nothing is sent)."""
    kamailio = services(compose)["kamailio"]
    mounts = {target: str(source) for source, target in bind_mounts(kamailio)}
    argv = [mounts.get(a, a) for a in kamailio["command"]]
    defines = []
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "-A":
            key, _, val = value.partition("=")
            if key == "KAM_LISTEN":  # the example public address is not on this machine
                value = "KAM_LISTEN=udp:127.0.0.1:5060"
            elif key == "KAM_DS_LIST":
                value = f'KAM_DS_LIST="{mounts[val.strip(chr(34))]}"'
            defines += ["-A", value]
    cfg = argv[argv.index("-f") + 1]
    assert cfg == str(ROOT / "deploy" / "kamailio" / "dispatcher.cfg")
    result = subprocess.run(
        ["kamailio", "-c", "-f", cfg, *defines],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_prometheus_scrapes_every_node(compose: dict[str, Any]) -> None:
    prometheus = services(compose)["prometheus"]
    mounts = {target: source for source, target in bind_mounts(prometheus)}
    config_arg = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = mounts[config_arg.split("=", 1)[1]]
    config = yaml.safe_load(config_path.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {t for sc in jobs["callcenter"]["static_configs"] for t in sc["targets"]}
    expected = {f"{n}:{node_config(services(compose)[n]).http.port}" for n in NODES}
    assert targets == expected
    for node in NODES:
        assert services(compose)[node]["hostname"] == node
    assert jobs["callcenter"].get("metrics_path", "/metrics") == "/metrics"
    # The rule files are mounted next to the configuration, where Prometheus looks for them.
    config_dir = Path(config_arg.split("=", 1)[1]).parent
    for rule_file in config.get("rule_files", []):
        assert str(config_dir / rule_file) in mounts, f"{rule_file} is not mounted"


def test_grafana_provisioning_matches_the_mounts(compose: dict[str, Any]) -> None:
    grafana = services(compose)["grafana"]
    mounts = {target: source for source, target in bind_mounts(grafana)}
    datasources = mounts["/etc/grafana/provisioning/datasources/prometheus.yaml"]
    source = yaml.safe_load(datasources.read_text())["datasources"][0]
    prometheus_port = published(services(compose)["prometheus"])[0][1]
    assert source["url"] == f"http://prometheus:{prometheus_port}"
    providers = mounts["/etc/grafana/provisioning/dashboards/callcenter.yaml"]
    path = yaml.safe_load(providers.read_text())["providers"][0]["options"]["path"]
    assert path in mounts, f"the dashboards folder {path} is not mounted"
    assert sorted(mounts[path].glob("*.json")), "no dashboard JSON in the mounted folder"
    for port in published(grafana) + published(services(compose)["prometheus"]):
        assert port[0].startswith("127.0.0.1:"), f"{port} is published beyond loopback"


def test_secrets_come_from_the_environment_only(example_env: dict[str, str]) -> None:
    text = COMPOSE.read_text()
    assert "${POSTGRES_PASSWORD:?" in text and "${GRAFANA_ADMIN_PASSWORD:?" in text
    for var in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert example_env[var] == "CHANGE-ME"
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "deploy/compose/.env" in ignored, "the compose secrets could enter an image"


def test_service_dockerfile(compose: dict[str, Any]) -> None:
    text = SERVICE_DOCKERFILE.read_text()
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert len(froms) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", froms[0])
    assert "espeak-ng" in text
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
                assert source.rstrip("/") not in ignored, f"COPY {source} is in .dockerignore"
    # The image's command line is a real one.
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert cmd is not None
    assert build_parser().parse_args(yaml.safe_load(cmd.group(1))).command == "serve"
    node = services(compose)["node1"]
    assert node["command"] == yaml.safe_load(cmd.group(1))
    # SIGTERM drains for calls.drain_timeout: compose waits longer before it kills.
    grace = int(node["stop_grace_period"].removesuffix("s"))
    assert grace > node_config(node).calls.drain_timeout


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _compose_plugin(), reason="the docker compose plugin is not installed")
def test_docker_compose_config(tmp_path: Path) -> None:
    env = tmp_path / "example.env"
    env.write_text(ENV_EXAMPLE.read_text())
    result = subprocess.run(
        ["docker", "compose", "--env-file", str(env), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
