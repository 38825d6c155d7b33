"""Telephony benchmark: N concurrent sipp calls against ``callcenter serve`` on loopback.

Each call streams PCMU (20 ms) both ways, presses ``*`` (RFC 4733) every 5 s — the menu repeats,
the call goes on — and hangs up with BYE after ``--duration`` seconds. Meanwhile we sample the
service's CPU time (``/proc/<pid>/stat``) and RSS (``/proc/<pid>/status``) and capture the RTP it
sends (``tcpdump -i lo``) to measure per-stream inter-packet gaps and clock drift. Prints JSON.

    .venv/bin/python bench/telephony.py --calls 100 --duration 30

Targets (issue 2, 2-core machine): 100 calls, 0 failed, <= 0.15 % of one core per call,
p99 gap <= 25 ms, drift < 0.1 %. Needs sipp, tcpdump (root or CAP_NET_RAW), espeak-ng, sox.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.loopback import audio  # noqa: E402
from tests.loopback.service import (  # noqa: E402
    SIPP_PCAPS,
    read_pcap_udp,
    render_scenario,
    run_service,
    service_rtp_range,
    sipp_popen,
    tcpdump,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
PTIME = 0.020


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def sipp_counts(stat_file: Path) -> tuple[int, int]:
    """(successful, failed) cumulative calls from sipp's -trace_stat CSV."""
    if not stat_file.exists():
        return 0, 0
    with stat_file.open(newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    if len(rows) < 2:
        return 0, 0
    header, last = rows[0], rows[-1]
    ok = int(last[header.index("SuccessfulCall(C)")])
    failed = int(last[header.index("FailedCall(C)")])
    return ok, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="concurrent calls (default 100)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per call")
    parser.add_argument("--rate", type=float, default=20.0, help="new calls per second")
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-telephony-"))
    work.mkdir(parents=True, exist_ok=True)

    rtp_min, rtp_max = service_rtp_range()
    env = {
        "CALLCENTER_SIP_RATE_LIMIT": "100000",
        "CALLCENTER_SIP_RATE_BURST": "100000",
        "CALLCENTER_RTP_PORT_MIN": str(rtp_min),
        "CALLCENTER_RTP_PORT_MAX": str(rtp_max),
        "CALLCENTER_CALLS_MAX_CALLS": str(max(500, args.calls * 2)),
    }
    wav = audio.caller_wav(work / "caller_ulaw.wav", "u-law", pad_s=2)
    loop_ms = 5000
    presses = max(1, int(args.duration * 1000) // loop_ms - 1)
    scenario = render_scenario(
        "uac_long_call.xml.tmpl",
        work / "uac_bench.xml",
        audio_wav=str(wav),
        digit_pcap=str(SIPP_PCAPS / "dtmf_2833_star.pcap"),
        presses=str(presses),
        press_every_ms=str(loop_ms - 300),
        tail_ms=str(max(500, int(args.duration * 1000) - presses * loop_ms)),
    )
    ramp = args.calls / args.rate
    result: dict[str, Any] = {"calls": args.calls, "duration_s": args.duration}
    with run_service(work / "data", env=env, stop_timeout=20) as svc:
        pid = svc.proc.pid
        time.sleep(1.0)
        rss_idle = rss_mb(pid)
        pcap = work / "rtp_out.pcap"
        with tcpdump(pcap, f"udp and src host 127.0.0.1 and src portrange {rtp_min}-{rtp_max}"):
            proc, _ = sipp_popen(
                scenario,
                svc.sip_target,
                work / "sipp",
                calls=args.calls,
                limit=args.calls,
                rate=args.rate,
                timeout_s=args.duration + ramp + 60,
                trace_msg=False,
                extra_args=["-trace_stat", "-stf", str(work / "stats.csv"), "-fd", "1"],
            )
            # Steady window: every call established, none finished yet.
            t_start = time.monotonic() + ramp + 2.0
            t_end = time.monotonic() + args.duration - 1.0
            if t_end - t_start < 3:
                t_start, t_end = time.monotonic() + ramp, time.monotonic() + args.duration
            active: list[int] = []
            rss_peak = rss_idle
            stop = threading.Event()

            def sample() -> None:
                nonlocal rss_peak
                while not stop.wait(0.5):
                    rss_peak = max(rss_peak, rss_mb(pid))
                    if t_start <= time.monotonic() <= t_end:
                        try:
                            active.append(int(svc.health()[1]["active_calls"]))
                        except Exception:  # noqa: BLE001 - a missed sample is fine
                            pass

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            time.sleep(max(0.0, t_start - time.monotonic()))
            cpu0, w0 = cpu_seconds(pid), time.monotonic()
            time.sleep(max(0.0, t_end - time.monotonic()))
            cpu1, w1 = cpu_seconds(pid), time.monotonic()
            rc = proc.wait(timeout=args.duration + ramp + 90)
            stop.set()
            sampler.join()
        ok, failed = sipp_counts(work / "stats.csv")
        n_active = (sum(active) / len(active)) if active else float(args.calls)
        cpu_pct = (cpu1 - cpu0) / (w1 - w0) * 100
        result.update(
            sipp_rc=rc,
            calls_completed=ok,
            calls_failed=failed + max(0, args.calls - ok - failed),
            active_calls_steady=round(n_active, 1),
            cpu_percent_total=round(cpu_pct, 2),
            cpu_percent_per_call=round(cpu_pct / max(n_active, 1), 4),
            rss_mb_idle=round(rss_idle, 1),
            rss_mb_peak=round(rss_peak, 1),
            rss_mb_per_call=round((rss_peak - rss_idle) / max(args.calls, 1), 3),
        )

    streams: dict[tuple[int, str, int], list[float]] = defaultdict(list)
    for p in read_pcap_udp(pcap):
        if len(p.payload) >= 12 and p.payload[0] >> 6 == 2 and (p.payload[1] & 0x7F) in (0, 8):
            streams[(p.src[1], p.dst[0], p.dst[1])].append(p.ts)
    gaps: list[float] = []
    drifts: list[float] = []
    for ts in streams.values():
        ts.sort()
        if len(ts) < 50:
            continue
        gaps += [(b - a) * 1000 for a, b in zip(ts, ts[1:], strict=False)]
        drifts.append(((len(ts) - 1) * PTIME / (ts[-1] - ts[0]) - 1) * 100)
    result.update(
        rtp_streams=len(streams),
        gap_p50_ms=round(percentile(gaps, 0.50), 3),
        gap_p99_ms=round(percentile(gaps, 0.99), 3),
        gap_max_ms=round(max(gaps), 3) if gaps else None,
        drift_percent=round(sum(abs(d) for d in drifts) / len(drifts), 4) if drifts else None,
        drift_percent_worst=round(max(abs(d) for d in drifts), 4) if drifts else None,
        workdir=str(work),
    )
    print(json.dumps(result, indent=2))
    return 0 if result["calls_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
