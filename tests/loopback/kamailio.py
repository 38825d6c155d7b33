"""Run a real Kamailio registrar (deploy/kamailio/registrar.cfg) on 127.0.0.1 for tests.

Usage in a test module::

    from tests.loopback.kamailio import KamailioRegistrar, kamailio_available, run_kamailio

    @pytest.fixture
    def registrar(tmp_path: Path) -> Iterator[KamailioRegistrar]:
        with run_kamailio(tmp_path, algorithm="SHA-256") as registrar:
            yield registrar

or import the ready-made fixtures ``kamailio_registrar`` (MD5) / ``kamailio_factory``
(``factory(algorithm=..., password=...)``) into the test module.

Kamailio runs in the foreground (``-DD -E``) in its own session, with its pid file and runtime
dir in a temporary directory, listening only on 127.0.0.1 on a free UDP port; the fixture waits
until it answers an OPTIONS probe and kills the whole process group on teardown. Its log is
``<workdir>/kamailio.log`` (shown when start-up fails).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "CONFIG",
    "DISPATCHER_CONFIG",
    "KamailioDispatcher",
    "KamailioFactory",
    "KamailioRegistrar",
    "free_udp_port",
    "kamailio_available",
    "kamailio_factory",
    "kamailio_registrar",
    "run_dispatcher",
    "run_kamailio",
    "skip_without_kamailio",
]

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "kamailio" / "registrar.cfg"
HOST = "127.0.0.1"
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._~@+=/-]{1,64}$")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._~@+=/-]{1,255}$")


def kamailio_available() -> bool:
    """True when the ``kamailio`` binary is on PATH."""
    return shutil.which("kamailio") is not None


skip_without_kamailio = pytest.mark.skipif(
    not kamailio_available(),
    reason="kamailio is not installed (apt-get install kamailio) - registrar tests skipped",
)


@dataclass(frozen=True, slots=True)
class KamailioRegistrar:
    """A running Kamailio registrar."""

    host: str
    """Listening address (always 127.0.0.1)."""
    port: int
    """Listening UDP port."""
    user: str
    """The digest username accepted for REGISTER."""
    password: str
    """Its password."""
    realm: str
    """The digest realm Kamailio challenges with."""
    algorithm: str
    """``MD5`` or ``SHA-256``."""
    workdir: Path
    """Runtime directory (pid file, log)."""
    pid: int
    """Process id of the main Kamailio process (also its process group id)."""

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to send datagrams to."""
        return (self.host, self.port)

    @property
    def uri(self) -> str:
        """The registrar's SIP URI (Request-URI of REGISTER)."""
        return f"sip:{self.host}:{self.port}"

    @property
    def log(self) -> str:
        """Kamailio's output so far."""
        return _read_log(self.workdir)


def _read_log(workdir: Path) -> str:
    try:
        return (workdir / "kamailio.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""


def free_udp_port(host: str = HOST) -> int:
    """Return a UDP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _probe(port: int, timeout: float) -> bool:
    """Send one OPTIONS to the registrar; True when it answers 200."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(timeout)
        local_port = sock.getsockname()[1]
        branch = "z9hG4bK-probe-" + secrets.token_hex(6)
        probe = (
            f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{local_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{HOST}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{HOST}:{port}>\r\n"
            f"Call-ID: probe-{secrets.token_hex(8)}@{HOST}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(probe, (HOST, port))
        try:
            data, _ = sock.recvfrom(65535)
        except (TimeoutError, ConnectionRefusedError):
            return False
        return data.startswith(b"SIP/2.0 200")


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """True once the main process has exited, *without reaping it*.

    While the leader is an unreaped zombie its pid (= our process group id) cannot be reused,
    so signalling the group can only ever reach Kamailio's own processes.
    """
    if proc.returncode is not None:
        return True
    info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop Kamailio and its workers (they share the session we created for it)."""
    if proc.returncode is not None:  # already reaped: the group id is no longer ours
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    while not _exited(proc) and time.monotonic() < deadline:
        time.sleep(0.02)
    # The leader is exited-but-unreaped (or stuck): sweep any worker left in its group, then reap.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)


@contextlib.contextmanager
def run_kamailio(
    workdir: Path,
    *,
    user: str = "callcenter",
    password: str | None = None,
    realm: str = "callcenter.test",
    algorithm: str = "MD5",
    nonce_expire: int = 300,
    config: Path = CONFIG,
    start_timeout: float = 10.0,
) -> Iterator[KamailioRegistrar]:
    """Start Kamailio with ``config`` on a free 127.0.0.1 UDP port; stop it on exit.

    Args:
        workdir: Empty directory for the pid file, runtime dir and log.
        user: Digest username accepted for REGISTER.
        password: Its password (random when None).
        realm: Digest realm.
        algorithm: ``MD5`` or ``SHA-256`` (Kamailio 5.6 offers one per instance).
        nonce_expire: Seconds a nonce stays valid.
        config: The Kamailio configuration (defaults to deploy/kamailio/registrar.cfg).
        start_timeout: Seconds to wait for the registrar to answer.

    Yields:
        The running registrar.
    """
    if password is None:
        password = secrets.token_urlsafe(12)
    for name, value in (("user", user), ("password", password), ("realm", realm)):
        # The values go through the config pre-processor as quoted strings.
        if not _SAFE_VALUE.match(value):
            raise ValueError(f"{name} {value!r} is not safe for a Kamailio #!define")
    if algorithm not in ("MD5", "SHA-256"):
        raise ValueError(f"Kamailio 5.6 supports MD5 or SHA-256, not {algorithm!r}")
    defines = [
        f'KAM_USER="{user}"',
        f'KAM_PASSWORD="{password}"',
        f'KAM_REALM="{realm}"',
        f'KAM_ALGORITHM="{algorithm}"',
        f"KAM_NONCE_EXPIRE={int(nonce_expire)}",
    ]
    with _run(workdir, config, defines, start_timeout) as (port, pid):
        yield KamailioRegistrar(
            host=HOST,
            port=port,
            user=user,
            password=password,
            realm=realm,
            algorithm=algorithm,
            workdir=workdir,
            pid=pid,
        )


@contextlib.contextmanager
def _run(
    workdir: Path, config: Path, defines: list[str], start_timeout: float
) -> Iterator[tuple[int, int]]:
    """Run ``config`` on a free 127.0.0.1 UDP port with ``-A`` ``defines``; yield (port, pid)."""
    binary = shutil.which("kamailio")
    if binary is None:
        pytest.skip("kamailio is not installed (apt-get install kamailio)")
    workdir.mkdir(parents=True, exist_ok=True)
    runtime = workdir / "run"
    runtime.mkdir(exist_ok=True)
    pidfile = workdir / "kamailio.pid"

    last_log = ""
    for _attempt in range(3):  # the free port may be taken between probe and bind: retry
        port = free_udp_port()
        cmd = [
            binary,
            "-f",
            str(config),
            "-DD",
            "-E",
            "-Y",
            str(runtime),
            "-P",
            str(pidfile),
            "-m",
            "32",
            "-M",
            "8",
            "-A",
            f"KAM_LISTEN=udp:{HOST}:{port}",
        ]
        for define in defines:
            cmd += ["-A", define]
        with (workdir / "kamailio.log").open("wb") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + start_timeout
            ready = False
            while time.monotonic() < deadline and not _exited(proc):
                if _probe(port, 0.2):
                    ready = True
                    break
            if ready:
                yield port, proc.pid
                return
        finally:
            _kill_group(proc)
        last_log = _read_log(workdir)
        if "Address already in use" not in last_log:
            break
    raise RuntimeError(f"kamailio did not start; its log:\n{last_log[-4000:]}")


DISPATCHER_CONFIG = CONFIG.parent / "dispatcher.cfg"


@dataclass(frozen=True, slots=True)
class KamailioDispatcher:
    """A running Kamailio dispatcher in front of several service nodes."""

    host: str
    """Listening address (always 127.0.0.1)."""
    port: int
    """Listening UDP port."""
    nodes: tuple[tuple[str, int], ...]
    """The nodes of dispatcher set 1."""
    workdir: Path
    """Runtime directory (pid file, list file, log)."""
    pid: int
    """Process id of the main Kamailio process."""

    @property
    def log(self) -> str:
        """Kamailio's output so far."""
        return _read_log(self.workdir)


@contextlib.contextmanager
def run_dispatcher(
    workdir: Path,
    nodes: list[tuple[str, int]],
    *,
    ping_interval_s: int = 1,
    fr_timer_ms: int = 1500,
    config: Path = DISPATCHER_CONFIG,
    start_timeout: float = 10.0,
    extra_defines: Sequence[str] = (),
) -> Iterator[KamailioDispatcher]:
    """Start deploy/kamailio/dispatcher.cfg in front of ``nodes``; stop it on exit.

    ``extra_defines`` are more ``-A`` pre-processor defines, e.g. ``KAM_PIKE_DENSITY=10`` or
    ``KAM_TRUSTED="127.0.0.4/32"`` (flood protection).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    listing = workdir / "dispatcher.list"
    listing.write_text("".join(f"1 sip:{host}:{port}\n" for host, port in nodes))
    if not _SAFE_PATH.match(str(listing)):
        raise ValueError(f"{listing} is not safe for a Kamailio #!define")
    defines = [
        f'KAM_DS_LIST="{listing}"',
        f"KAM_PING_INTERVAL={int(ping_interval_s)}",
        f"KAM_FR_TIMER={int(fr_timer_ms)}",
        *extra_defines,
    ]
    with _run(workdir, config, defines, start_timeout) as (port, pid):
        yield KamailioDispatcher(HOST, port, tuple(nodes), workdir, pid)


@pytest.fixture
def kamailio_registrar(tmp_path: Path) -> Iterator[KamailioRegistrar]:
    """A running MD5 registrar with user ``callcenter`` and a random password."""
    with run_kamailio(tmp_path / "kamailio") as registrar:
        yield registrar


class KamailioFactory:
    """Starts registrars on demand; all are stopped when the fixture ends."""

    def __init__(self, stack: contextlib.ExitStack, tmp_path: Path) -> None:
        self._stack = stack
        self._tmp_path = tmp_path
        self._count = 0

    def __call__(
        self,
        *,
        user: str = "callcenter",
        password: str | None = None,
        realm: str = "callcenter.test",
        algorithm: str = "MD5",
        nonce_expire: int = 300,
    ) -> KamailioRegistrar:
        self._count += 1
        workdir = self._tmp_path / f"kamailio-{self._count}"
        return self._stack.enter_context(
            run_kamailio(
                workdir,
                user=user,
                password=password,
                realm=realm,
                algorithm=algorithm,
                nonce_expire=nonce_expire,
            )
        )


@pytest.fixture
def kamailio_factory(tmp_path: Path) -> Iterator[KamailioFactory]:
    """Start registrars on demand: ``kamailio_factory(algorithm="SHA-256", password="x")``."""
    with contextlib.ExitStack() as stack:
        yield KamailioFactory(stack, tmp_path)
