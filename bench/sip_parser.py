"""Benchmark: SIP messages parsed per second for a typical INVITE (baresip, with SDP).

Usage: ``python bench/sip_parser.py [--seconds 2]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from callcenter.sip.headers import CSeq, NameAddress, parse_vias
from callcenter.sip.message import SipRequest
from callcenter.sip.parser import parse_message
from callcenter.sip.validation import validate_request

INVITE = (
    Path(__file__).resolve().parents[1] / "tests" / "data" / "baresip_invite.sip"
).read_bytes()
KNOWN = frozenset("INVITE ACK BYE CANCEL OPTIONS INFO".split())


def run(fn_name: str, seconds: float) -> dict[str, float]:
    def full() -> None:
        msg = parse_message(INVITE)
        assert isinstance(msg, SipRequest)
        validate_request(
            msg, supported_extensions=frozenset(), known_methods=KNOWN, allowed_methods=KNOWN
        )
        parse_vias(msg.headers)
        NameAddress.parse(msg.headers.get("From") or "")
        CSeq.parse(msg.headers.get("CSeq") or "")

    def parse_only() -> None:
        parse_message(INVITE)

    fn = full if fn_name == "full" else parse_only
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            fn()
        count += 200
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    return {
        "messages_per_s": round(count / elapsed),
        "us_per_message": round(elapsed / count * 1e6, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    result = {
        "message": "baresip_invite.sip",
        "bytes": len(INVITE),
        "parse_message": run("parse", args.seconds),
        "parse_validate_and_structured_headers": run("full", args.seconds),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
