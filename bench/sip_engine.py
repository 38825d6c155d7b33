"""Benchmark: complete SIP dialogs per second through two sans-IO engines in memory.

Each dialog is INVITE -> 100 -> 180 -> 200 -> ACK -> BYE -> 200 between a UAC ``SipEngine``
(``invite``) and a UAS ``SipEngine`` (``ring``/``answer``), the caller hanging up. Datagrams are
handed over in memory (no sockets); ``--concurrent`` dialogs are kept open at once so the
per-message cost includes realistic transaction and call tables. Prints one JSON object.

    .venv/bin/python bench/sip_engine.py --dialogs 2000 --concurrent 100
"""

from __future__ import annotations

import argparse
import json
import time

from callcenter.sip.engine import SipEngine, SipEngineConfig
from callcenter.sip.events import CallConfirmed, CallTerminated, IncomingCall, OutboundCallAnswered

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)
UAC = ("127.0.0.1", 5070)
UAS = ("127.0.0.1", 5060)


def pump(uac: SipEngine, uas: SipEngine, now: float) -> int:
    moved = 0
    while True:
        batch = [(d, UAC, uas) for d, _ in uac.datagrams_to_send()]
        batch += [(d, UAS, uac) for d, _ in uas.datagrams_to_send()]
        if not batch:
            return moved
        for data, src, dst in batch:
            dst.receive_datagram(data, src, now)
            moved += 1


def run(dialogs: int, concurrent: int) -> dict[str, object]:
    uac = SipEngine(config=SipEngineConfig(local_host=UAC[0], local_port=UAC[1]))
    uas = SipEngine(config=SipEngineConfig(local_host=UAS[0], local_port=UAS[1]))
    now = 0.0
    started = completed = messages = 0
    open_calls: list[str] = []
    t0 = time.perf_counter()
    while completed < dialogs:
        while started < dialogs and len(open_calls) < concurrent:
            open_calls.append(uac.invite("sip:3975@127.0.0.1:5060", SDP, now, from_user="b"))
            started += 1
        messages += pump(uac, uas, now)
        while (event := uas.next_event()) is not None:
            if isinstance(event, IncomingCall):
                uas.ring(event.call_id, now)
                uas.answer(event.call_id, SDP, now)
            elif isinstance(event, CallConfirmed | CallTerminated):
                pass
        messages += pump(uac, uas, now)
        while (event := uac.next_event()) is not None:
            if isinstance(event, OutboundCallAnswered):
                uac.hangup(event.call_id, now)
            elif isinstance(event, CallTerminated):
                open_calls.remove(event.call_id)
                completed += 1
        messages += pump(uac, uas, now)
        # Let transaction timers (J, K, L, M...) expire now and then, as in real time.
        now += 0.01
        for engine in (uac, uas):
            timer = engine.get_timer()
            if timer is not None and timer <= now:
                engine.handle_timer(now)
    elapsed = time.perf_counter() - t0
    return {
        "dialogs": completed,
        "concurrent": concurrent,
        "messages": messages,
        "seconds": round(elapsed, 3),
        "dialogs_per_second": round(completed / elapsed, 1),
        "messages_per_second": round(messages / elapsed, 1),
        "us_per_message": round(elapsed / messages * 1e6, 1),
        "internal_errors": uac.stats["internal_errors"] + uas.stats["internal_errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dialogs", type=int, default=2000)
    parser.add_argument("--concurrent", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(run(args.dialogs, args.concurrent)))


if __name__ == "__main__":
    main()
