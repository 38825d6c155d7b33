"""RFC 4475 torture messages sent over UDP to the live service (loopback-only namespace only).

Each ``.dat`` goes unchanged, as one datagram, from a socket bound to 127.0.0.1:5060 — responses to
a Via without a port go to port 5060 of the source (RFC 3261 section 18.2.2) — while the service
listens on 127.0.0.1:5080. Every message must get the status the RFC expects of a UAS (or no
answer for the responses to drop), the service must answer an OPTIONS probe after each one, and
a full sipp call afterwards.
"""

from __future__ import annotations

import csv
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    "wsinv": (200, 180, 100, 486, 480, 603),  # an INVITE processed normally: any real answer
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


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # Foreign sources (192.0.2.x in Via) are still 127.0.0.1 on the wire: trusted, not limited.
    with run_service(
        tmp_path_factory.mktemp("rfc4475"),
        sip_port=SERVICE_PORT,
        env={"CALLCENTER_SIP_ANSWER_DELAY": "0", "CALLCENTER_RTP_INACTIVITY_TIMEOUT": "5"},
    ) as service:
        yield service


@pytest.fixture(scope="module")
def sock() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 5060))
    yield s
    s.close()


def drain(s: socket.socket, wait: float) -> list[bytes]:
    out: list[bytes] = []
    s.settimeout(wait)
    while True:
        try:
            data, _ = s.recvfrom(65535)
        except TimeoutError:
            return out
        out.append(data)
        s.settimeout(0.3)


def probe(s: socket.socket, svc: Service) -> bytes:
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


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_torture_message(name: str, svc: Service, sock: socket.socket) -> None:
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


def test_service_still_takes_a_call(svc: Service, tmp_path: Path) -> None:
    if shutil.which("sipp") is None:
        pytest.skip("sipp not installed")
    time.sleep(0.5)
    result = run_sipp(
        SIPP_DIR / "uac_bye_during_prompt.xml", svc.sip_target, tmp_path, timeout_s=20
    )
    assert result.returncode == 0, result.describe()
    trail = svc.wait_call_ended(result.call_ids[0])
    assert "answered" in [e["type"] for e in trail["events"]]
    status, _ = svc.health()
    assert status == 200
