"""Start the real ``callcenter serve`` as a subprocess and drive sipp against it (loopback only).

Used by the loopback and netns tests and by ``bench/telephony.py``. Everything binds 127.0.0.1;
every subprocess is killed on exit (``with`` blocks), so a failing test leaks nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SIPP_DIR = REPO / "tests" / "sipp"
SIPP_PCAPS = Path("/usr/share/sip-tester")
PYTHON = REPO / ".venv" / "bin" / "python"
# A Monday 10:00 in Paris, not a public holiday: the flow's "open" branch.
OPEN_NOW = "2025-03-10T10:00:00+01:00"
SHARED_CACHE = Path(os.environ.get("CALLCENTER_TEST_CACHE", "/tmp/callcenter-test-cache"))
"""Rendered prompts and the joined Whisper model, shared by every service a test starts (the
tests run one at a time); deleting it only costs the first start a few seconds."""


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


def trail_text(trail: object) -> str:
    """Every string and integer a call's trail (or part of it) holds, timestamps left out.

    For "this number is not in the trail" checks: a short number such as "3977" can occur in a
    timestamp's microseconds (it did: ``10:49:58.397799``), and such a check must not fail on
    that. One value per line.
    """
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            if not _TIMESTAMP.match(value):
                found.append(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            found.append(str(value))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(trail)
    return "\n".join(found)


def service_missing_reason() -> str | None:
    """Return why the real service cannot be started here, or None when it can."""
    if not (REPO / "callcenter" / "app.py").exists():
        return "callcenter/app.py not written yet"
    if not (REPO / "callcenter" / "cli.py").exists():
        return "callcenter/cli.py not written yet"
    if shutil.which("espeak-ng") is None:
        return "espeak-ng not installed (the service renders prompts with it)"
    return None


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """Return a port free for UDP (default) and TCP on ``host`` right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, other) as s2:
            try:
                s2.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def free_port_pair(host: str = "127.0.0.1") -> int:
    """Return an even UDP port p with p..p+3 free (sipp's -mp binds p for audio, p+2 for video)."""
    for _ in range(200):
        p = free_port(socket.SOCK_DGRAM, host) & ~1
        try:
            with contextlib.ExitStack() as stack:
                for port in range(p, p + 4):
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    sock.bind((host, port))
        except OSError:
            continue
        return p
    raise RuntimeError("no free RTP port pair")


def sipp_port_pairs(count: int, host: str = "127.0.0.1") -> list[tuple[int, int]]:
    """Return ``count`` (SIP port, media port) pairs for sipp processes run at once.

    Chosen here, one after the other, and all distinct: a media port p takes p..p+3 (sipp binds
    audio and video), none of which is another pair's SIP or media port.
    """
    pairs: list[tuple[int, int]] = []
    taken: set[int] = set()
    while len(pairs) < count:
        local, media = free_port(host=host), free_port_pair(host)
        wanted = {local, *range(media, media + 4)}
        if len(wanted) == 5 and not wanted & taken:
            pairs.append((local, media))
            taken |= wanted
    return pairs


def service_rtp_range() -> tuple[int, int]:
    """A 2 000-port RTP range for a service under test, below the kernel's ephemeral range.

    The ports tests and sipp pick with ``free_port`` are ephemeral (32768-60999 here); keeping
    the service's RTP sockets out of that range means a call's RTP port can never be the one a
    sipp started a moment later wants to bind.
    """
    low = 10000 + 2 * random.randrange(0, 9000)
    return low, low + 1998


@dataclass
class Service:
    """A running ``callcenter serve`` subprocess."""

    proc: subprocess.Popen[bytes]
    """The service process."""
    sip_host: str
    """SIP address."""
    sip_port: int
    """SIP UDP port."""
    http_port: int
    """HTTP API port."""
    data_dir: Path
    """The data directory handed to the service."""
    log_path: Path
    """Combined stdout/stderr of the service."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def sip_target(self) -> str:
        return f"{self.sip_host}:{self.sip_port}"

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def http(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET ``path``; return (status, body) — HTTP errors are returned, not raised."""
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as e:
            return int(e.code), bytes(e.read())

    def json(self, path: str) -> Any:
        status, body = self.http(path)
        if status != 200:
            raise AssertionError(f"GET {path} -> {status}: {body[:500]!r}")
        return json.loads(body)

    def health(self) -> tuple[int, Any]:
        status, body = self.http("/health", timeout=2.0)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def metrics(self) -> dict[str, float]:
        """Parse /metrics into {'name{labels}': value} (exposition text format)."""
        _, body = self.http("/metrics")
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
        return out

    def calls(self, limit: int = 20) -> list[dict[str, Any]]:
        result = self.json(f"/api/calls?limit={limit}")
        if isinstance(result, dict):  # tolerate {"calls": [...]}
            result = result.get("calls", result.get("items", []))
        assert isinstance(result, list)
        return result

    def call(self, sip_call_id: str) -> dict[str, Any]:
        result = self.json(f"/api/calls/{urllib.parse.quote(sip_call_id, safe='')}")
        assert isinstance(result, dict)
        return result

    def wait_call_ended(self, sip_call_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Poll the trail until the call has ``ended_at`` (and a hangup event); return it."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | Exception | None = None
        while time.monotonic() < deadline:
            try:
                last = self.call(sip_call_id)
                if last.get("ended_at") and any(
                    e.get("type") == "hangup" for e in last.get("events", [])
                ):
                    return last
            except AssertionError as e:
                last = e
            time.sleep(0.1)
        raise AssertionError(f"call {sip_call_id} did not end within {timeout}s; last: {last}")

    def alive(self) -> bool:
        return self.proc.poll() is None


def _wait_healthy(svc: Service, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not svc.alive():
            raise RuntimeError(
                f"service exited with {svc.proc.returncode} during start-up:\n{svc.log_tail()}"
            )
        with contextlib.suppress(OSError):
            status, _ = svc.health()
            if status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"service not healthy after {timeout}s:\n{svc.log_tail()}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always reaps."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def run_service(
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    sip_host: str = "127.0.0.1",
    sip_port: int | None = None,
    http_port: int | None = None,
    extra_args: Sequence[str] = (),
    start_timeout: float = 60.0,
    stop_timeout: float = 5.0,
) -> Iterator[Service]:
    """Start ``python -m callcenter serve`` on free ports and wait for /health 200.

    ``env`` adds ``CALLCENTER_*`` overrides; the flow clock is pinned to an opening hour and
    the RTP ports to a private range unless ``env`` says otherwise.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    sip_port = sip_port or free_port()
    http_port = http_port or free_port(socket.SOCK_STREAM)
    rtp_min, rtp_max = service_rtp_range()
    full_env = {
        **os.environ,
        "CALLCENTER_DATA_DIR": str(data_dir),
        "CALLCENTER_FLOWS_NOW_OVERRIDE": OPEN_NOW,
        "CALLCENTER_RTP_PORT_MIN": str(rtp_min),
        "CALLCENTER_RTP_PORT_MAX": str(rtp_max),
        "CALLCENTER_TTS_CACHE_DIR": str(SHARED_CACHE / "prompts"),
        "CALLCENTER_ASR_CACHE_DIR": str(SHARED_CACHE / "models"),
        # These tests hand calls to an unstaffed queue to see the flow go on after the holding
        # message; with callbacks on, the caller would be offered slots instead (tested in
        # test_callbacks.py and test_multinode.py, which turn them on).
        "CALLCENTER_CALLBACKS_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    log_path = data_dir / "service.log"
    cmd = [
        str(PYTHON if PYTHON.exists() else Path(sys.executable)),
        "-m",
        "callcenter",
        "serve",
        "--sip-host",
        sip_host,
        "--sip-port",
        str(sip_port),
        "--http-host",
        "127.0.0.1",
        "--http-port",
        str(http_port),
        "--data-dir",
        str(data_dir),
        *extra_args,
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    svc = Service(proc, sip_host, sip_port, http_port, data_dir, log_path)
    try:
        _wait_healthy(svc, start_timeout)
        yield svc
    finally:
        stop_process(proc, stop_timeout)


# --- sipp ---------------------------------------------------------------------------------------


@dataclass
class SippResult:
    """Outcome of one sipp run."""

    returncode: int
    """0 = all calls succeeded, 1 = some failed, other = fatal."""
    stdout: str
    """sipp's screen output."""
    messages: str
    """The -trace_msg file (every SIP message sent and received)."""
    errors: str
    """The -trace_err file (unexpected messages)."""
    logs: str
    """The -trace_logs file (``<log>`` actions)."""
    call_ids: list[str] = field(default_factory=list)
    """Call-IDs logged by the scenario's ``<log message="CALLID [call_id]"/>``."""

    def describe(self) -> str:
        return (
            f"sipp rc={self.returncode}\n--- errors ---\n{self.errors[-3000:]}\n"
            f"--- messages (tail) ---\n{self.messages[-6000:]}\n"
            f"--- stdout ---\n{self.stdout[-1500:]}"
        )

    def received(self, pattern: str) -> list[str]:
        """Return the bodies of messages sipp received whose first line matches ``pattern``."""
        out = []
        for block in re.split(r"\n-{5,}[^\n]*\n", self.messages):
            m = re.search(r"message received \[\d+\] bytes :\s*\n\n?(.*)", block, re.S)
            if m and re.match(pattern, m.group(1).lstrip()):
                out.append(m.group(1).lstrip())
        return out


def render_scenario(template: str, out: Path, **values: str) -> Path:
    """Copy ``tests/sipp/<template>`` to ``out`` replacing ``@@KEY@@`` markers."""
    text = (SIPP_DIR / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key.upper()}@@", value)
    leftover = re.findall(r"@@[A-Z_]+@@", text)
    if leftover:
        raise ValueError(f"{template}: no value for {sorted(set(leftover))}")
    out.write_text(text)
    return out


def _sipp_command(
    scenario: Path,
    target: str,
    *,
    files: tuple[Path | None, Path, Path],
    calls: int,
    limit: int,
    rate: float | None,
    timeout_s: float,
    local_ip: str = "127.0.0.1",
    local_port: int | None = None,
    media_port: int | None = None,
    service: str = "3975",
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The sipp command line (no stdin, timeouts are errors); ``files`` = messages, errors, logs."""
    msg_file, err_file, log_file = files
    cmd = [
        "sipp",
        target,
        "-sf",
        str(scenario),
        "-s",
        service,
        "-i",
        local_ip,
        "-p",
        str(local_port or free_port()),
        "-mi",
        local_ip,
        "-mp",
        str(media_port or free_port_pair()),
        "-m",
        str(calls),
        "-l",
        str(limit),
        "-nostdin",
        "-timeout",
        f"{int(timeout_s)}s",
        "-timeout_error",
        "-trace_err",
        "-error_file",
        str(err_file),
        "-trace_logs",
        "-log_file",
        str(log_file),
        *extra_args,
    ]
    if rate is not None:
        cmd += ["-r", f"{rate:g}"]
    if msg_file is not None:
        cmd += ["-trace_msg", "-message_file", str(msg_file)]
    return cmd


def run_sipp(
    scenario: Path,
    target: str,
    workdir: Path,
    *,
    calls: int = 1,
    limit: int = 1,
    rate: float | None = None,
    timeout_s: float = 30.0,
    local_ip: str = "127.0.0.1",
    local_port: int | None = None,
    media_port: int | None = None,
    service: str = "3975",
    extra_args: Sequence[str] = (),
    trace_msg: bool = True,
) -> SippResult:
    """Run sipp once (foreground, no stdin) and collect its trace files."""
    workdir.mkdir(parents=True, exist_ok=True)
    stem = scenario.stem
    msg_file = workdir / f"{stem}_messages.log"
    err_file = workdir / f"{stem}_errors.log"
    log_file = workdir / f"{stem}_logs.log"
    for f in (msg_file, err_file, log_file):
        f.unlink(missing_ok=True)
    cmd = _sipp_command(
        scenario,
        target,
        files=(msg_file if trace_msg else None, err_file, log_file),
        calls=calls,
        limit=limit,
        rate=rate,
        timeout_s=timeout_s,
        local_ip=local_ip,
        local_port=local_port,
        media_port=media_port,
        service=service,
        extra_args=[*extra_args, "-max_recv_loops", "1000"],
    )
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s + 15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def read(p: Path) -> str:
        return p.read_text(errors="replace") if p.exists() else ""

    logs = read(log_file)
    return SippResult(
        returncode=int(proc.returncode),
        stdout=out.decode(errors="replace"),
        messages=read(msg_file),
        errors=read(err_file),
        logs=logs,
        call_ids=re.findall(r"CALLID (\S+)", logs),
    )


@contextlib.contextmanager
def sipp_background(cmd: Sequence[str], workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a sipp command in the background (e.g. a UAS) and kill it on exit."""
    with (workdir / "sipp_bg.out").open("wb") as out:
        proc = subprocess.Popen(
            list(cmd), cwd=workdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def sipp_popen(
    scenario: Path,
    target: str,
    workdir: Path,
    *,
    calls: int = 1,
    limit: int = 1,
    rate: float | None = None,
    timeout_s: float = 60.0,
    media_port: int | None = None,
    service: str = "3975",
    trace_msg: bool = True,
    extra_args: Sequence[str] = (),
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start sipp in the background; return the process and its message trace file."""
    workdir.mkdir(parents=True, exist_ok=True)
    msg_file = workdir / f"{scenario.stem}_bg_messages.log"
    cmd = _sipp_command(
        scenario,
        target,
        files=(
            msg_file if trace_msg else None,
            workdir / f"{scenario.stem}_bg_errors.log",
            workdir / f"{scenario.stem}_bg_logs.log",
        ),
        calls=calls,
        limit=limit,
        rate=rate,
        timeout_s=timeout_s,
        media_port=media_port,
        service=service,
        extra_args=extra_args,
    )
    with (workdir / f"{scenario.stem}_bg.out").open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    return proc, msg_file


# --- pcap (tcpdump -w) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UdpPacket:
    """One captured UDP datagram."""

    ts: float
    """Capture time (seconds, epoch)."""
    src: tuple[str, int]
    """Source address and port."""
    dst: tuple[str, int]
    """Destination address and port."""
    payload: bytes
    """UDP payload."""


def read_pcap_udp(path: Path) -> list[UdpPacket]:
    """Parse the IPv4/UDP packets of a classic pcap file (Ethernet, Linux SLL or raw IP links)."""
    import struct

    blob = path.read_bytes()
    if len(blob) < 24:
        return []
    magic = blob[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    (linktype,) = struct.unpack_from(endian + "I", blob, 20)
    link_len = {1: 14, 113: 16, 101: 0, 228: 0, 276: 20}.get(linktype)
    if link_len is None:
        raise ValueError(f"{path}: unsupported link type {linktype}")
    out: list[UdpPacket] = []
    pos = 24
    while pos + 16 <= len(blob):
        sec, frac, incl, _orig = struct.unpack_from(endian + "IIII", blob, pos)
        frame = blob[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        ip = frame[link_len:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        sport, dport, ulen = struct.unpack_from("!HHH", ip, ihl)
        payload = ip[ihl + 8 : ihl + ulen]
        out.append(
            UdpPacket(
                ts=sec + frac / (1e9 if nano else 1e6),
                src=(socket.inet_ntoa(ip[12:16]), sport),
                dst=(socket.inet_ntoa(ip[16:20]), dport),
                payload=payload,
            )
        )
    return out


def write_pcap_udp(
    path: Path, payloads: Sequence[bytes], *, interval: float = 0.02, dport: int = 10000
) -> Path:
    """Write UDP payloads as an Ethernet pcap sipp's ``play_pcap_audio`` can replay."""
    import struct

    records = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, payload in enumerate(payloads):
        udp = struct.pack("!HHHH", 49176, dport, 8 + len(payload), 0) + payload
        ip = (
            struct.pack(
                "!BBHHHBBH4s4s",
                0x45,
                0,
                20 + len(udp),
                i,
                0,
                64,
                17,
                0,
                socket.inet_aton("192.0.2.3"),
                socket.inet_aton("192.0.2.1"),
            )
            + udp
        )
        frame = b"\x00" * 12 + b"\x08\x00" + ip
        t = 1_000_000 + i * interval
        records.append(
            struct.pack("<IIII", int(t), int(round((t % 1) * 1e6)), len(frame), len(frame)) + frame
        )
    path.write_bytes(b"".join(records))
    return path


@contextlib.contextmanager
def tcpdump(out: Path, bpf: str, iface: str = "lo") -> Iterator[Path]:
    """Capture ``bpf`` on ``iface`` into ``out`` (packet-buffered) while the block runs."""
    if shutil.which("tcpdump") is None:
        raise RuntimeError("tcpdump not installed")
    proc = subprocess.Popen(
        ["tcpdump", "-i", iface, "-n", "-U", "-s", "256", "-B", "16384", "-w", str(out), bpf],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    # Wait for "listening on" so no early packet is missed.
    assert proc.stderr is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line or b"listening on" in line:
            break
    try:
        yield out
    finally:
        time.sleep(0.3)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def rtp_gaps_ms(packets: Sequence[UdpPacket]) -> list[float]:
    """Inter-arrival gaps (ms) of consecutive packets of one stream, in capture order."""
    ts = [p.ts for p in packets]
    return [(b - a) * 1000 for a, b in zip(ts, ts[1:], strict=False)]
