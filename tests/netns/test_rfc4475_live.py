"""RFC 4475 torture messages sent over UDP to the live service (loopback-only namespace only).

Each ``.dat`` goes unchanged, as one datagram, from a socket bound to 127.0.0.1:5060, while the
service listens on 127.0.0.1:5080. RFC 3261 section 18.2.2 sends a response to the source address
and the *Via sent-by port* (5060 when absent), so the test also listens on every port the
messages' top Vias name (quotbal says 192.0.2.59:5050). Every message must get the status the
RFC expects of a UAS (or no answer for the responses to drop), the service must answer an
OPTIONS probe after each one, and a full sipp call afterwards.

Several RFC 4475 messages reuse one transaction identifier (top Via branch + sent-by + method):
cparam01/cparam02 share ``z9hG4bKkdjuw`` from ``saturn.example.com:5060``, novelsc/unkscm
``z9hG4bKkdjuw39234`` from ``host9.example.com``... A UAS must match the second one to the first
one's server transaction and retransmit the first answer (RFC 3261 section 17.2.3), for 64*T1
(Timer J). So the messages are split into rounds in which no identifier repeats, and each round
is played against a fresh service.
"""

from __future__ import annotations

import contextlib
import csv
import re
import secrets
import select
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcenter.sip.errors import LocalSipError, SipError
from callcenter.sip.headers import Via, parse_vias
from callcenter.sip.message import SipRequest, SipResponse
from callcenter.sip.parser import parse_message
from callcenter.sip.transaction import is_rfc3261_branch
from tests.loopback.service import (
    SIPP_DIR,
    Service,
    run_service,
    run_sipp,
    service_missing_reason,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.loopback,
    pytest.mark.skipif(service_missing_reason() is not None, reason=str(service_missing_reason())),
    pytest.mark.timeout(120),
]

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
RFC4475 = SHARED / "sip" / "rfc4475"
SERVICE_PORT = 5080

# Status codes a UAS may answer with (first = preferred); () = must not answer at all.
# Read from INDEX.tsv's expected_uas_behaviour; "may reject or tolerate" cases accept both.
EXPECTED: dict[str, tuple[int, ...]] = {
    # An INVITE processed normally. Its To carries a tag, so it is a mid-dialog request for a
    # dialog this UAS does not have: 481 (RFC 3261 section 12.2.2).
    "wsinv": (481,),
    "intmeth": (501, 405),
    "esc01": (200,),
    "escnull": (405, 501, 200, 401, 403),  # REGISTER to a non-registrar UAS
    "esc02": (501, 405),
    "lwsdisp": (200,),
    "longreq": (200, 180, 100, 486, 480, 603),
    "dblreq": (405, 501, 200, 401, 403),
    "semiuri": (200, 404),
    "transports": (200,),
    "mpart01": (415, 200, 405, 501),
    "unreason": (),
    "noreason": (),
    "badinv01": (400,),
    "clerr": (400,),
    "ncl": (400,),
    "scalar02": (400,),
    "scalarlg": (),
    "quotbal": (400, 200, 180, 100),
    "ltgtruri": (400,),
    "lwsruri": (400,),
    "lwsstart": (400, 200, 180, 100),
    "trws": (400, 200),
    "escruri": (400, 200, 180, 100),
    "baddate": (200, 180, 100, 400),
    "regbadct": (400, 405, 501),
    "badaspec": (400, 200),
    "baddn": (400, 200),
    "badvers": (505,),
    "mismatch01": (400,),
    "mismatch02": (501, 400),
    "bigcode": (),
    "badbranch": (400, 200),
    "insuf": (400,),
    "unkscm": (416,),
    "novelsc": (416, 404),
    "unksm2": (400, 405, 501),
    "bext01": (420,),
    "invut": (415,),
    "regaut01": (405, 401, 501, 200),
    "multi01": (400,),
    "mcl01": (400,),
    "bcast": (),
    "zeromf": (200,),
    "cparam01": (405, 501, 200),
    "cparam02": (405, 501, 200),
    "regescrt": (405, 501, 200),
    "sdp01": (406, 400),
    "inv2543": (200, 180, 100, 400),
}
PROVISIONAL_OK = {100, 180, 183}
_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.I | re.M)
# Call-IDs of the messages already sent: their late retransmissions are not this test's answer.
_SENT_CALL_IDS: set[bytes] = set()


def index() -> list[dict[str, str]]:
    with (RFC4475 / "INDEX.tsv").open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def top_via(data: bytes) -> tuple[SipRequest, Via] | None:
    """The request and its top Via, when the message is a request whose top Via parses."""
    message: SipRequest | SipResponse | None
    try:
        message = parse_message(data)
    except LocalSipError as exc:
        message = exc.partial
    except SipError:
        return None
    if not isinstance(message, SipRequest):
        return None
    try:
        vias = parse_vias(message.headers)
    except SipError:
        return None
    return (message, vias[0]) if vias else None


def transaction_id(data: bytes) -> tuple[str, str, int, str] | None:
    """RFC 3261 section 17.2.3 server transaction identifier (ACK counts as INVITE)."""
    found = top_via(data)
    if found is None or not is_rfc3261_branch(found[1].branch):
        return None
    request, via = found
    method = "INVITE" if request.method == "ACK" else request.method
    return (via.branch or "", via.host.lower(), via.port or 5060, method)


def rounds() -> list[list[str]]:
    """Split the messages so that no transaction identifier repeats within a round."""
    if not RFC4475.is_dir():  # collected anyway; test_index_covers_every_message says why
        return [sorted(EXPECTED)]
    out: list[list[str]] = []
    seen: list[set[tuple[str, str, int, str]]] = []
    for name in sorted(EXPECTED):
        tid = transaction_id((RFC4475 / f"{name}.dat").read_bytes())
        n = 0
        while tid is not None and n < len(seen) and tid in seen[n]:
            n += 1
        if n == len(out):
            out.append([])
            seen.append(set())
        out[n].append(name)
        if tid is not None:
            seen[n].add(tid)
    return out


def via_ports() -> set[int]:
    """Every port a top Via names, plus 5060 (the default and our source port)."""
    ports = {5060}
    for path in RFC4475.glob("*.dat"):
        found = top_via(path.read_bytes())
        if found is not None and found[1].port is not None:
            ports.add(found[1].port)
    return ports


ROUNDS = rounds()
CASES = [(n, name) for n, names in enumerate(ROUNDS) for name in names]


class Services:
    """One service per round, started on first use and stopped at the end of the module."""

    def __init__(self, factory: pytest.TempPathFactory, stack: contextlib.ExitStack) -> None:
        self._factory = factory
        self._stack = stack
        self._running: dict[int, Service] = {}

    def get(self, round_no: int) -> Service:
        if round_no not in self._running:
            # Foreign sources (192.0.2.x in Via) are still 127.0.0.1 on the wire: trusted.
            self._running[round_no] = self._stack.enter_context(
                run_service(
                    self._factory.mktemp(f"rfc4475-{round_no}"),
                    sip_port=SERVICE_PORT + round_no,
                    env={
                        "CALLCENTER_SIP_ANSWER_DELAY": "0",
                        "CALLCENTER_RTP_INACTIVITY_TIMEOUT": "5",
                    },
                )
            )
        return self._running[round_no]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with contextlib.ExitStack() as stack:
        yield Services(tmp_path_factory, stack)


class Listeners:
    """UDP sockets on 127.0.0.1 for every Via port; messages leave from port 5060."""

    def __init__(self, ports: set[int]) -> None:
        self.socks: dict[int, socket.socket] = {}
        for port in sorted(ports):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.setblocking(False)
            self.socks[port] = s

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.socks[5060].sendto(data, addr)

    def close(self) -> None:
        for s in self.socks.values():
            s.close()


@pytest.fixture(scope="module")
def sock() -> Iterator[Listeners]:
    listeners = Listeners(via_ports())
    yield listeners
    listeners.close()


def drain(listeners: Listeners, wait: float) -> list[bytes]:
    """Collect datagrams on every listener until ``wait`` (then 0.3 s) passes without one."""
    out: list[bytes] = []
    timeout = wait
    socks = list(listeners.socks.values())
    while True:
        ready, _, _ = select.select(socks, [], [], timeout)
        if not ready:
            return out
        for s in ready:
            with contextlib.suppress(BlockingIOError):
                out.append(s.recv(65535))
        timeout = 0.3


def probe(s: Listeners, svc: Service) -> bytes:
    call_id = "probe-" + secrets.token_hex(6)
    msg = (
        "OPTIONS sip:3975@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{secrets.token_hex(6)}\r\n"
        f"From: <sip:probe@127.0.0.1>;tag={secrets.token_hex(4)}\r\nTo: <sip:3975@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    s.sendto(msg.encode(), (svc.sip_host, svc.sip_port))
    for data in drain(s, 2.0):
        if call_id.encode() in data:
            return data
    raise AssertionError(f"no answer to the OPTIONS probe\n{svc.log_tail()}")


def test_index_covers_every_message() -> None:
    names = {row["name"] for row in index()}
    assert names == set(EXPECTED), names ^ set(EXPECTED)
    assert names == {p.stem for p in RFC4475.glob("*.dat")}


def test_rounds_separate_reused_transaction_ids() -> None:
    assert sorted(name for names in ROUNDS for name in names) == sorted(EXPECTED)
    for names in ROUNDS:
        ids = [transaction_id((RFC4475 / f"{n}.dat").read_bytes()) for n in names]
        real = [i for i in ids if i is not None]
        assert len(real) == len(set(real)), names
    # The collisions this test exists for (RFC 4475 reuses branches across messages).
    assert any("cparam02" in names for names in ROUNDS[1:])
    assert {5050, 5060} <= via_ports()


@pytest.mark.parametrize(("round_no", "name"), CASES, ids=[name for _, name in CASES])
def test_torture_message(round_no: int, name: str, services: Services, sock: Listeners) -> None:
    svc = services.get(round_no)
    drain(sock, 0.05)
    data = (RFC4475 / f"{name}.dat").read_bytes()
    sock.sendto(data, (svc.sip_host, svc.sip_port))
    m_id = _CALL_ID.search(data.split(b"\r\n\r\n", 1)[0])
    call_id = m_id.group(1) if m_id else None
    replies = []
    for reply in drain(sock, 1.0):
        r_id = _CALL_ID.search(reply)
        reply_id = r_id.group(1) if r_id else None
        if reply_id is not None and reply_id.startswith(b"probe-"):
            continue
        if reply_id == call_id or (call_id is None and reply_id not in _SENT_CALL_IDS):
            replies.append(reply)
    if call_id is not None:
        _SENT_CALL_IDS.add(call_id)
    codes = []
    for reply in replies:
        m = re.match(rb"SIP/2\.0 (\d{3}) ", reply)
        if m:
            codes.append(int(m.group(1)))
    finals = [c for c in codes if c not in PROVISIONAL_OK]
    expected = EXPECTED[name]
    if not expected:
        assert codes == [], f"{name}: a response must not be answered, got {codes}"
    else:
        got = finals or codes
        assert got, f"{name}: no response (expected {expected})\n{svc.log_tail(20)}"
        assert got[0] in expected, f"{name}: got {codes}, expected one of {expected}"
    # Whatever happened, the service still answers.
    assert probe(sock, svc).startswith(b"SIP/2.0 200")
    assert svc.alive()


@pytest.mark.parametrize("round_no", range(len(ROUNDS)))
def test_service_still_takes_a_call(round_no: int, services: Services, tmp_path: Path) -> None:
    if shutil.which("sipp") is None:
        pytest.skip("sipp not installed")
    svc = services.get(round_no)
    time.sleep(0.5)
    result = run_sipp(
        SIPP_DIR / "uac_bye_during_prompt.xml", svc.sip_target, tmp_path, timeout_s=20
    )
    assert result.returncode == 0, result.describe()
    trail = svc.wait_call_ended(result.call_ids[0])
    assert "answered" in [e["type"] for e in trail["events"]]
    status, _ = svc.health()
    assert status == 200
