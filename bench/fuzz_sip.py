"""Fuzz parse_message + validate_request with 100 000 mutated messages (seeded, reproducible).

Mutations of the wire fixtures and RFC 4475 messages (bit flips, inserted delimiters, deletions,
truncations, splices, duplications) plus random bytes. Prints JSON counts by outcome; any
exception that is not a ``SipError`` is counted under ``unexpected`` with a sample, and the exit
status is 1 if there is any.

Usage: ``python bench/fuzz_sip.py [--count 100000] [--seed 4475]``.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from callcenter.sip.engine import ALLOWED_METHODS, KNOWN_METHODS  # noqa: E402
from callcenter.sip.errors import LocalSipError  # noqa: E402
from callcenter.sip.message import SipRequest  # noqa: E402
from callcenter.sip.parser import StreamParser, parse_message  # noqa: E402
from callcenter.sip.validation import validate_request  # noqa: E402
from tests.sip.test_fuzz_parser import INTERESTING, SEEDS  # noqa: E402  (the test's corpus)


def mutate(rng: random.Random, corpus: list[bytes]) -> bytes:
    if rng.random() < 0.05:
        return rng.randbytes(rng.randrange(400))
    data = bytearray(rng.choice(corpus))
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(6)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[pos:pos] = rng.choice(INTERESTING) if rng.random() < 0.7 else rng.randbytes(8)
        elif op == 2:
            del data[pos : pos + rng.randint(1, 16)]
        elif op == 3:
            del data[pos:]
        elif op == 4:
            other = rng.choice(corpus)
            start = rng.randrange(len(other) + 1)
            data[pos:pos] = other[start : start + rng.randint(1, 200)]
        else:
            data[pos:pos] = data[pos : pos + rng.randint(1, 80)]
    return bytes(data)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=4475)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    corpus = list(SEEDS)
    counts: collections.Counter[str] = collections.Counter()
    unexpected: list[dict[str, str]] = []
    start = time.perf_counter()
    for _ in range(args.count):
        data = mutate(rng, corpus)
        try:
            try:
                msg = parse_message(data)
            except LocalSipError as exc:
                counts["drop" if exc.partial is None else f"reject_{exc.status_code}"] += 1
            else:
                bytes(msg)
                if isinstance(msg, SipRequest):
                    try:
                        validate_request(
                            msg,
                            supported_extensions=frozenset({"timer"}),
                            known_methods=KNOWN_METHODS,
                            allowed_methods=ALLOWED_METHODS,
                        )
                        counts["request_ok"] += 1
                    except LocalSipError as exc:
                        counts[f"invalid_{exc.status_code}"] += 1
                else:
                    counts["response_ok"] += 1
            parser = StreamParser()
            cut = rng.randrange(len(data) + 1)
            parser.feed(data[:cut])
            parser.feed(data[cut:])
        except Exception as exc:  # noqa: BLE001 - the point is to catch anything unexpected
            counts["unexpected"] += 1
            if len(unexpected) < 10:
                unexpected.append(
                    {
                        "error": repr(exc),
                        "data": repr(data[:300]),
                        "trace": traceback.format_exc(limit=3),
                    }
                )
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "messages": args.count,
                "seed": args.seed,
                "seconds": round(elapsed, 2),
                "outcomes": dict(sorted(counts.items())),
                "unexpected": counts["unexpected"],
                "unexpected_samples": unexpected,
            },
            indent=2,
        )
    )
    return 1 if counts["unexpected"] else 0


if __name__ == "__main__":
    sys.exit(main())
