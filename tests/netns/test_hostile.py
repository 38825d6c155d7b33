"""Hostile input against the live service while a real sipp call is in progress.

During a ~10 s sipp call (PCMU both ways), we throw at the service: random garbage datagrams
and ~2 000 mutated SIP messages at its SIP port, truncated/garbled RTP at the call's RTP port
(from another port: must not hijack the stream), RTP telephone-events > 15 inside the caller's own
stream (replayed by sipp), and an OPTIONS + INVITE flood from an untrusted loopback address
(127.0.0.2: rate-limited). Then: the call completed, the audio the service sent kept flowing
(captured with tcpdump), ``/health`` is 200 and the process is alive.
"""

from __future__ import annotations

import random
import re
import secrets
import shutil
import socket
import struct
import time
from pathlib import Path

import pytest

from tests.loopback import audio
from tests.loopback.service import (
    free_port_pair,
    read_pcap_udp,
    render_scenario,
    rtp_gaps_ms,
    run_service,
    service_missing_reason,
    sipp_popen,
    tcpdump,
    write_pcap_udp,
)

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed"),
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed"),
    pytest.mark.skipif(service_missing_reason() is not None, reason=str(service_missing_reason())),
    pytest.mark.timeout(120),
]

FLOODER = "127.0.0.2"
FUZZ_COUNT = 100_000
"""Mutated and random SIP datagrams sent to the live service during the call (issue 2)."""
FUZZ_RATE = 2000.0
"""Datagrams per second."""


def options(port: int, host: str = "127.0.0.1", method: str = "OPTIONS") -> bytes:
    call_id = secrets.token_hex(8)
    body = ""
    extra = ""
    if method == "INVITE":
        body = (
            "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio 9 RTP/AVP 0\r\n"
        )
        extra = f"Contact: <sip:x@{host}:{port}>\r\nContent-Type: application/sdp\r\n"
    return (
        f"{method} sip:3975@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
        f"From: <sip:scan@{host}>;tag={secrets.token_hex(4)}\r\n"
        "To: <sip:3975@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def mutate(rng: random.Random, msg: bytes) -> bytes:
    data = bytearray(msg)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(7)
        i = rng.randrange(len(data)) if data else 0
        if op == 0 and data:
            data[i] = rng.randrange(256)
        elif op == 1:
            data = data[: rng.randrange(len(data) + 1)]
        elif op == 2 and data:
            j = min(len(data), i + rng.randint(1, 40))
            data[i:i] = data[i:j] * rng.randint(1, 50)
        elif op == 3:
            data[i:i] = rng.choice([b"\r\n", b"\r\n\r\n", b":", b";", b",", b"\x00", b" " * 300])
        elif op == 4:
            lines = bytes(data).split(b"\r\n")
            if len(lines) > 2:
                del lines[rng.randrange(1, len(lines))]
            data = bytearray(b"\r\n".join(lines))
        elif op == 5:
            data = bytearray(
                re.sub(
                    rb"Content-Length: \d+", b"Content-Length: %d" % rng.randint(-5, 99999), data
                )
            )
        else:
            data = bytearray(re.sub(rb"CSeq: \d+", b"CSeq: %d" % rng.getrandbits(40), data))
    return bytes(data[:65000])


def bad_rtp(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:  # shorter than the fixed header
        return bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
    if kind == 1:  # CSRC count claims more than is there
        return bytes([0x8F, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2]) + b"\x00" * 8
    if kind == 2:  # padding length larger than the packet
        return bytes([0xA0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]) + b"\x00" * 3 + b"\xff"
    if kind == 3:  # extension header with an absurd length
        return bytes([0x90, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0xBE, 0xDE, 0xFF, 0xFF])
    return bytes([0x40]) + bytes(rng.randrange(256) for _ in range(rng.randrange(200)))  # v=1


def telephone_events_over_15() -> list[bytes]:
    """RFC 4733 packets (PT 101) with event codes 16..255 (not DTMF digits), start + end."""
    out = []
    seq, ts = 40000, 800000
    for event in (16, 20, 99, 200, 255):
        for n in range(5):
            end = 0x80 if n >= 3 else 0
            marker = 0x80 if n == 0 else 0
            out.append(
                struct.pack("!BBHII", 0x80, marker | 101, seq, ts, 0x1234)
                + struct.pack("!BBH", event, end | 10, 160 * (n + 1))
            )
            seq += 1
        ts += 1600
    return out


@pytest.mark.timeout(400)  # ~90 s: 100 000 datagrams at 2 000/s, then the flood
def test_hostile_input_during_a_call(tmp_path: Path) -> None:
    env = {
        "CALLCENTER_SIP_TRUSTED_NETWORKS": "127.0.0.1/32",
        "CALLCENTER_SIP_RATE_LIMIT": "20",
        "CALLCENTER_SIP_RATE_BURST": "40",
    }
    rng = random.Random(2)
    with run_service(tmp_path / "data", env=env) as svc:
        wav = audio.caller_wav(tmp_path / "caller_ulaw.wav", "u-law")
        events_pcap = write_pcap_udp(tmp_path / "events_gt15.pcap", telephone_events_over_15())
        scenario = render_scenario(
            "uac_long_call.xml.tmpl",
            tmp_path / "uac_long_call.xml",
            audio_wav=str(wav),
            digit_pcap=str(events_pcap),
            presses="45",
            press_every_ms="1500",
            tail_ms="2500",
        )
        media_port = free_port_pair()
        with tcpdump(
            tmp_path / "rtp.pcap", f"udp and dst host 127.0.0.1 and dst port {media_port}"
        ):
            proc, msg_file = sipp_popen(
                scenario, svc.sip_target, tmp_path / "sipp", media_port=media_port, timeout_s=120
            )
            try:
                # Learn the service's RTP port from its 200 OK.
                rtp_port = None
                deadline = time.monotonic() + 10
                while rtp_port is None and time.monotonic() < deadline:
                    text = msg_file.read_text(errors="replace") if msg_file.exists() else ""
                    m = re.search(r"SIP/2.0 200.*?m=audio (\d+)", text, re.S)
                    rtp_port = int(m.group(1)) if m else None
                    time.sleep(0.05)
                assert rtp_port, f"no 200 OK with SDP\n{svc.log_tail()}"

                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind(("127.0.0.1", 0))
                    # Garbage and mutated SIP from a trusted source (so it reaches the parser).
                    base = [options(s.getsockname()[1]), options(s.getsockname()[1], method="BYE")]
                    t0 = time.monotonic()
                    for i in range(FUZZ_COUNT):
                        if i % 4 == 0:
                            datagram = rng.randbytes(rng.randrange(1500))
                        else:
                            datagram = mutate(rng, rng.choice(base))
                        s.sendto(datagram, (svc.sip_host, svc.sip_port))
                        if i % 100 == 99:
                            # About FUZZ_RATE datagrams per second: the service keeps up, so
                            # the kernel does not silently drop most of them.
                            time.sleep(max(0.0, t0 + (i + 1) / FUZZ_RATE - time.monotonic()))
                    assert svc.alive(), svc.log_tail()
                    # Truncated/garbled RTP at the call's port, from a foreign port.
                    for _ in range(300):
                        s.sendto(bad_rtp(rng), ("127.0.0.1", rtp_port))
                    s.sendto(b"", ("127.0.0.1", rtp_port))

                # Flood from an untrusted address: OPTIONS and INVITE.
                answered = 0
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as f:
                    f.bind((FLOODER, 0))
                    f.setblocking(False)
                    port = f.getsockname()[1]
                    t0 = time.monotonic()
                    sent = 0
                    for i in range(1500):
                        method = "INVITE" if i % 3 == 0 else "OPTIONS"
                        f.sendto(options(port, FLOODER, method), (svc.sip_host, svc.sip_port))
                        sent += 1
                        if i % 100 == 0:
                            time.sleep(0.01)
                    flood_s = time.monotonic() - t0
                    time.sleep(0.5)
                    while True:
                        try:
                            f.recvfrom(65535)
                            answered += 1
                        except BlockingIOError:
                            break
                # The limiter let through at most the burst plus the sustained rate (+ slack).
                assert answered <= 40 + 20 * (flood_s + 0.5) * 1.5 + 20, (answered, sent, flood_s)

                # A trusted OPTIONS is still answered at once.
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as p:
                    p.bind(("127.0.0.1", 0))
                    p.settimeout(2)
                    p.sendto(options(p.getsockname()[1]), (svc.sip_host, svc.sip_port))
                    reply, _ = p.recvfrom(65535)
                    assert reply.startswith(b"SIP/2.0 200"), reply[:200]

                rc = proc.wait(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        logs = (tmp_path / "sipp" / "uac_long_call_bg_logs.log").read_text(errors="replace")
        assert rc == 0, f"sipp call failed rc={rc}\n{svc.log_tail()}"
        call_id = re.findall(r"CALLID (\S+)", logs)[0]
        trail = svc.wait_call_ended(call_id)
        hangup = [e["data"] for e in trail["events"] if e["type"] == "hangup"]
        assert hangup[0]["side"] == "caller", trail
        assert not [
            e
            for e in trail["events"]
            if e["type"] == "dtmf" and e["data"].get("digit", "0") not in list("0123456789*#ABCD")
        ], trail

        status, body = svc.health()
        assert status == 200, body
        assert svc.alive()
        assert svc.metrics(), "metrics endpoint empty"

    # The audio the service sent to the caller kept flowing, every 20 ms, during all of it.
    rtp = [p for p in read_pcap_udp(tmp_path / "rtp.pcap") if p.src[1] == rtp_port]
    assert len(rtp) > 200, len(rtp)
    gaps = rtp_gaps_ms(rtp)
    span = rtp[-1].ts - rtp[0].ts
    assert len(rtp) >= 0.9 * span / 0.020, (len(rtp), span)
    assert max(gaps) < 200, sorted(gaps)[-10:]
