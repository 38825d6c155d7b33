"""Benchmark of the agent panel (issue 6): screen pop, browser media CPU, 50 agent sessions.

The service runs in this process (``tests/loopback/test_agent_bridge.running_service``: SIP
and HTTP on 127.0.0.1, the SQLite store, the router, the panel with cookies without
``Secure``, WebRTC host candidates on 127.0.0.1 only). Three measurements, one JSON object:

1. ``screen_pop``: one agent in Debian's headless Chromium (``tests/browser.py``) logged in to
   the panel and to routing; ``--calls`` sipp callers one after the other, each from the number
   of a demo usager (``tests/sipp/agent_caller_number.xml.tmpl``), press 0 → the router offers
   the call to the agent (an ``OfferCall`` decision: a routing listener stamps ``time.time()``)
   → the page rings and renders the caller's dossier. A ``MutationObserver`` installed in the
   page stamps ``Date.now()`` when ``#dossier`` comes to contain "Usager" (the dossier's
   heading), and the next animation frame (painted). Latency = page stamp − decision stamp (one
   clock: same machine). The caller hangs up while it still rings (the offer ends, the agent is
   available again). Target: p95 ≤ 300 ms.
2. ``webrtc_media``: K browser calls bridged at once (K = 1, then 4: four agents, each in its own
   browser context, auto-answering with their fake microphone; sipp callers streaming µ-law
   speech). The service process's CPU time (``time.process_time()``: every thread of this
   process, i.e. the service and the idle playwright client) over a window while the K calls
   are bridged, minus the same window with no call, divided by K × window: % of one core per
   agent call (the caller's SIP/RTP leg, the bridge, the aiortc peer with Opus). For reference,
   ``bench/webrtc_media.py``'s peers-only measurement (no browser, no SIP leg) is embedded.
3. ``sessions``: ``--sessions`` agents (a fresh service) log in through HTTP from a child
   process (``bench/panel_clients.py``: aiohttp, no browser), open ``/panel/ws`` and log in to
   routing; then as many calls are queued at once straight into the router
   (``routing.CallQueued``): the time from each ``OfferCall`` decision to its ``offer`` on the
   agent's socket; then a ``ring`` with a screen pop to every agent through the softphone hub
   (``SoftphoneHub.to_agent``): send → receipt. The service's CPU and RSS during each phase.

    .venv/bin/python bench/panel.py                       # 30 calls, 50 sessions (~4 min)
    .venv/bin/python bench/panel.py --quick               # a smoke run (~1 min)
    .venv/bin/python bench/panel.py --calls 100 --sessions 200 --window 20

Needs sipp, espeak-ng, sox and /usr/bin/chromium (playwright drives it: never
``playwright install``). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any

# Run as a script, this file's directory comes first on sys.path and "routing" would import
# bench/routing.py: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import routing  # noqa: E402 (after the sys.path fix)
from callcenter.app import Service  # noqa: E402
from callcenter.store import agents as agents_store  # noqa: E402
from callcenter.store import demo  # noqa: E402
from callcenter.store import dossiers as repo  # noqa: E402
from callcenter.store import panel as panel_store  # noqa: E402
from callcenter.store.audit import Via  # noqa: E402
from tests.browser import chromium  # noqa: E402
from tests.loopback import audio as sound  # noqa: E402
from tests.loopback.service import REPO, render_scenario  # noqa: E402
from tests.loopback.test_agent_bridge import (  # noqa: E402
    Caller,
    hang_up_block,
    run_caller,
    running_service,
    wait_for_bye_block,
)

PASSWORD = "un mot de passe de banc d'essai"
"""Every benchmark agent's password (synthetic accounts in a throw-away store)."""
DEMO_TODAY = date(2026, 12, 7)
QUEUE = "accueil_general"
HOST = "127.0.0.1"

OBSERVER = """() => {
  const bench = (window.__bench = { pops: [], painted: [], rings: [] });
  const dossier = document.querySelector("#dossier");
  let shown = dossier.textContent.includes("Usager");
  new MutationObserver(() => {
    const has = dossier.textContent.includes("Usager");
    if (has && !shown) {
      bench.pops.push(Date.now());
      requestAnimationFrame(() => bench.painted.push(Date.now()));
    }
    shown = has;
  }).observe(dossier, { childList: true, subtree: true, characterData: true });
  const incoming = document.querySelector("#incoming");
  let ringing = !incoming.hidden;
  new MutationObserver(() => {
    const now = !incoming.hidden;
    if (now && !ringing) bench.rings.push(Date.now());
    ringing = now;
  }).observe(incoming, { attributes: true, attributeFilter: ["hidden"] });
}"""
"""Stamps, in the page, the dossier's first rendering for each call and the ring banner."""


# --- measurement helpers ----------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float], digits: int = 1) -> dict[str, float | int]:
    """Count, p50, p95 and max of ``values`` (ms)."""
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 0.5), digits),
        "p95_ms": round(percentile(values, 0.95), digits),
        "max_ms": round(max(values), digits) if values else float("nan"),
    }


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process (this one by default), MB."""
    path = Path(f"/proc/{pid or os.getpid()}/status")
    for line in path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssPeak:
    """Samples this process's RSS every 50 ms while in use; ``peak`` in MB."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb())
            await asyncio.sleep(0.05)

    async def __aenter__(self) -> RssPeak:
        self._task = asyncio.create_task(self._sample(), name="bench-rss")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peak = max(self.peak, rss_mb())


async def until(predicate: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` every 20 ms; TimeoutError after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what or "condition not reached in time")
        await asyncio.sleep(0.02)


# --- the service and its data -------------------------------------------------------------------


def caller_voice(folder: Path) -> Path:
    """The callers' speech (µ-law, 8 kHz; sipp loops it)."""
    folder.mkdir(parents=True, exist_ok=True)
    return sound.caller_wav(
        folder / "caller.wav", "u-law", text="Bonjour, je voudrais parler de mon dossier."
    )


def routing_file(folder: Path) -> Path:
    """The shipped routing file (20 s ring timeout), its catalogue path made absolute."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (REPO / "routing" / "solidarites.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "catalogue: ../faq/solidarites.yaml", f"catalogue: {REPO}/faq/solidarites.yaml"
    )
    out = folder / "routing.yaml"
    out.write_text(text, encoding="utf-8")
    return out


@contextlib.asynccontextmanager
async def panel_service(folder: Path) -> AsyncIterator[Service]:
    """The service in this process with the panel usable over http://127.0.0.1."""
    async with running_service(
        folder,
        CALLCENTER_PANEL_SECURE_COOKIES="false",
        CALLCENTER_PANEL_LOGIN_RATE_PER_IP="100000",
        CALLCENTER_WEBRTC_HOST_ADDRESSES=HOST,
        CALLCENTER_ROUTING_FILE=str(routing_file(folder)),
    ) as service:
        yield service


def base_url(service: Service) -> str:
    """The panel's origin."""
    return f"http://{HOST}:{service.config.http.port}"


def add_agents(service: Service, logins: list[str]) -> None:
    """Create panel agents (skill ``accueil_general``) with :data:`PASSWORD`."""
    engine = service.store_engine
    assert engine is not None
    for login in logins:
        agents_store.add_agent(engine, login, f"Agent {login}", skills={QUEUE: 3})
        panel_store.set_password(engine, login, PASSWORD, role="agent")


def demo_numbers(service: Service, count: int) -> list[str]:
    """Load demo dossiers; the national numbers of usagers each with a number of their own."""
    engine = service.store_engine
    assert engine is not None
    people = max(40, count)
    demo.load(engine, people, 1, DEMO_TODAY)
    numbers: list[str] = []
    for person in demo.generate(people, 1, DEMO_TODAY):
        if not person.demandes:
            continue
        for phone in person.usager.phones:
            e164 = repo.normalize_phone(phone)
            if e164 is None:
                continue
            refs = repo.find_by_phone(engine, e164, actor="bench", reason="bench", via=Via.CLI)
            if len({r.usager_id for r in refs}) == 1:
                numbers.append("0" + e164.removeprefix("+33"))
                break
    if not numbers:
        raise RuntimeError("no demo usager with a number of their own")
    return numbers


def caller_scenario(
    workdir: Path, voice: Path, number: str, *, zero_ms: int, after_zero: str, end: str
) -> Path:
    """A sipp caller from ``number``: µ-law speech, key 0 after ``zero_ms``, then ``end``."""
    workdir.mkdir(parents=True, exist_ok=True)
    return render_scenario(
        "agent_caller_number.xml.tmpl",
        workdir / "caller.xml",
        audio_wav=str(voice),
        zero_ms=str(zero_ms),
        from_user=number,
        after_zero=after_zero,
        end_block=end,
    )


@contextlib.asynccontextmanager
async def sipp_call(
    service: Service, workdir: Path, scenario: Path, timeout_s: int
) -> AsyncIterator[Caller]:
    """One sipp caller against the service."""
    assert service.sip is not None
    target = f"{HOST}:{service.sip.local_address[1]}"
    async with run_caller(target, workdir, scenario, timeout_s=timeout_s) as caller:
        yield caller


# --- browser pages ----------------------------------------------------------------------------


async def open_agent_page(browser: Any, base: str, login: str) -> Any:
    """A fresh browser context logged in to the panel as ``login`` (not yet to routing)."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{base}/panel/login")
    await page.fill("#login", login)
    await page.fill("#password", PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_url(f"{base}/panel/")
    await page.wait_for_function("() => !document.querySelector('#btn-routing-login').disabled")
    await page.evaluate(OBSERVER)
    return page


async def routing_login(service: Service, page: Any, login: str) -> None:
    """Click « Se connecter au routage » and wait until the router and the hub have the agent."""
    await page.click("#btn-routing-login")
    router, hub = service.routing, service.softphones
    assert router is not None and hub is not None
    await until(
        lambda: router.router.is_logged_in(login) and hub.present_here(login),
        what=f"{login} not logged in to routing",
    )


def agent_state(service: Service, login: str) -> str:
    """The router's state of an agent (``available``, ``reserved``, ``on_call``...)."""
    assert service.routing is not None
    return str(service.routing.router.agent(login).state.value)


async def wait_state(service: Service, login: str, state: str, within: float = 10.0) -> None:
    """Wait until the router has ``login`` in ``state``."""
    await until(lambda: agent_state(service, login) == state, within, f"{login} not {state}")


# --- 1. screen pop ------------------------------------------------------------------------------


async def bench_screen_pop(
    service: Service, page: Any, folder: Path, voice: Path, numbers: list[str], calls: int
) -> dict[str, Any]:
    """``calls`` sequential calls to one agent; OfferCall → dossier rendered in the page."""
    assert service.routing is not None
    offers: list[tuple[str, float]] = []

    def on_decision(decision: routing.Decision) -> None:
        if isinstance(decision, routing.OfferCall) and decision.agent_id == "ag1":
            offers.append((decision.call.call_id, time.time()))

    stop = service.routing.listen(on_decision)
    pop_ms: list[float] = []
    painted_ms: list[float] = []
    ring_ms: list[float] = []
    failures: list[str] = []
    started = time.monotonic()
    try:
        for i in range(calls):
            number = numbers[i % len(numbers)]
            workdir = folder / f"pop-{i:03d}"
            scenario = caller_scenario(
                workdir,
                voice,
                number,
                zero_ms=1000,
                after_zero='<pause milliseconds="2000"/>',
                end=hang_up_block(number),
            )
            n_offers = len(offers)
            n_pops = await page.evaluate("() => window.__bench.pops.length")
            n_rings = await page.evaluate("() => window.__bench.rings.length")
            async with sipp_call(service, workdir, scenario, timeout_s=30) as caller:
                try:
                    await page.wait_for_function(
                        f"() => window.__bench.pops.length > {n_pops}"
                        f" && window.__bench.painted.length > {n_pops}",
                        timeout=15000,
                    )
                    stamps = await page.evaluate(
                        f"() => [window.__bench.pops[{n_pops}], window.__bench.painted[{n_pops}],"
                        f" window.__bench.rings[{n_rings}] ?? null]"
                    )
                    if len(offers) != n_offers + 1:
                        raise RuntimeError(f"{len(offers) - n_offers} offers for one call")
                    offered_at = offers[-1][1] * 1000
                    pop_ms.append(stamps[0] - offered_at)
                    painted_ms.append(stamps[1] - offered_at)
                    if stamps[2] is not None:
                        ring_ms.append(stamps[2] - offered_at)
                except Exception as exc:  # noqa: BLE001 - one failed call is counted, not fatal
                    failures.append(f"call {i}: {type(exc).__name__}: {exc}"[:300])
                code = await caller.finished(within=30)
                if code != 0:
                    failures.append(f"call {i}: sipp exit {code}")
            # The caller hung up while it rang: the offer ended, the dossier is cleared.
            try:
                await wait_state(service, "ag1", "available")
                await page.wait_for_function(
                    "() => !document.querySelector('#dossier').textContent.includes('Usager')",
                    timeout=10000,
                )
            except Exception as exc:  # noqa: BLE001 - reported; the next call may still work
                failures.append(f"after call {i}: {type(exc).__name__}: {exc}"[:300])
                await asyncio.sleep(1.0)
    finally:
        stop()
    return {
        "what": "OfferCall decision (time.time) -> #dossier shows 'Usager' (Date.now, page)",
        "calls": calls,
        "seconds": round(time.monotonic() - started, 1),
        "dossier_rendered": summary(pop_ms),
        "dossier_painted": summary(painted_ms),
        "ring_banner_shown": summary(ring_ms),
        "target_p95_ms": 300,
        "met": bool(pop_ms) and percentile(pop_ms, 0.95) <= 300 and not failures,
        "failures": failures,
    }


# --- 2. WebRTC media CPU ------------------------------------------------------------------------


async def auto_answer(page: Any) -> None:
    """Answer the next call ringing on ``page`` once connected (hang-up enabled)."""
    await page.wait_for_function("() => !document.querySelector('#btn-answer').disabled", timeout=0)
    await page.click("#btn-answer")
    await page.wait_for_function(
        "() => !document.querySelector('#btn-hangup').disabled", timeout=20000
    )


async def inbound_energy(page: Any) -> float:
    """The browser's received audio energy so far (``RTCInboundRtpStreamStats``)."""
    stats = await page.evaluate("() => window.ccSoftphone.stats()")
    return float(stats.get("inboundAudioEnergy") or 0.0)


async def bench_media(
    service: Service,
    pages: dict[str, Any],
    folder: Path,
    voice: Path,
    numbers: list[str],
    k: int,
    window: float,
    idle_cpu_s_per_s: float,
) -> dict[str, Any]:
    """``k`` browser calls bridged at once; the service's CPU per call over ``window``."""
    assert service.routing is not None
    router = service.routing
    logins = list(pages)
    bye_ms = int((window + 60) * 1000)
    answering = [
        asyncio.create_task(auto_answer(pages[login]), name=f"bench-answer-{login}")
        for login in logins
    ]
    async with contextlib.AsyncExitStack() as stack:
        callers = []
        for i in range(k):
            number = numbers[(i + 7) % len(numbers)]
            workdir = folder / f"media-{k}-{i}"
            scenario = caller_scenario(
                workdir, voice, number, zero_ms=1000, after_zero="", end=wait_for_bye_block(bye_ms)
            )
            callers.append(
                await stack.enter_async_context(
                    sipp_call(service, workdir, scenario, timeout_s=int(window) + 90)
                )
            )
        try:
            await until(
                lambda: sum(agent_state(service, a) == "on_call" for a in logins) >= k,
                within=40,
                what=f"{k} calls not answered",
            )
            on_call = [a for a in logins if agent_state(service, a) == "on_call"]
            await asyncio.gather(
                *(t for t, a in zip(answering, logins, strict=True) if a in on_call)
            )
        finally:
            for task in answering:
                task.cancel()
            await asyncio.gather(*answering, return_exceptions=True)
        await asyncio.sleep(2.0)  # Opus and the jitter buffers settle
        energy0 = [await inbound_energy(pages[a]) for a in on_call]
        wall0, cpu0 = time.monotonic(), time.process_time()
        await asyncio.sleep(window)
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        energy = [await inbound_energy(pages[a]) - e for a, e in zip(on_call, energy0, strict=True)]
        rss = rss_mb()
        for login in on_call:
            await pages[login].click("#btn-hangup")
        codes = [await c.finished(within=30) for c in callers]
    # The agents are in wrap-up: end it for them (the pages' forms stay open, unused).
    for login in on_call:
        await wait_state(service, login, "wrap_up")
        await router.submit(routing.WrapUpDone(login, router.now()))
    per_call = (cpu / wall - idle_cpu_s_per_s) / k
    return {
        "calls": k,
        "window_s": round(wall, 2),
        "service_cpu_s": round(cpu, 3),
        "service_cpu_percent_of_core": round(100 * cpu / wall, 2),
        "cpu_percent_of_core_per_call": round(100 * per_call, 2),
        "cpu_percent_of_core_per_call_raw": round(100 * cpu / wall / k, 2),
        "browser_inbound_energy": [round(e, 4) for e in energy],
        "media_flowing": all(e > 0 for e in energy),
        "service_rss_mb": round(rss, 1),
        "callers_ok": codes.count(0),
    }


async def measure_idle(window: float) -> float:
    """This process's CPU seconds per second with nothing going on (agents waiting)."""
    wall0, cpu0 = time.monotonic(), time.process_time()
    await asyncio.sleep(window)
    return (time.process_time() - cpu0) / (time.monotonic() - wall0)


async def peer_bench(calls: int, duration: float) -> Any:
    """``bench/webrtc_media.py`` (media helper's, read-only here): its peers-only figures."""
    try:
        from bench import webrtc_media

        return await webrtc_media.run(calls, duration, "opus")
    except Exception as exc:  # noqa: BLE001 - another helper's script: report, don't fail
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


# --- 3. many sessions -------------------------------------------------------------------------


async def bench_sessions(folder: Path, sessions: int, concurrency: int) -> dict[str, Any]:
    """``sessions`` agents logged in from a child process; offers and rings to all at once."""
    async with panel_service(folder) as service:
        assert service.routing is not None and service.softphones is not None
        router, hub = service.routing, service.softphones
        logins = [f"sess{i:03d}" for i in range(sessions)]
        add_agents(service, logins)
        base = base_url(service)
        rss_idle = rss_mb()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(_HERE / "panel_clients.py"),
            "--base",
            base,
            "--logins",
            ",".join(logins),
            "--concurrency",
            str(concurrency),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdin is not None and child.stdout is not None
        stdin, stdout = child.stdin, child.stdout

        async def ask(command: dict[str, Any]) -> dict[str, Any]:
            stdin.write((json.dumps(command) + "\n").encode())
            await stdin.drain()
            answer: dict[str, Any] = json.loads(await stdout.readline())
            return answer

        try:
            async with RssPeak() as login_peak:
                cpu0, wall0 = time.process_time(), time.monotonic()
                stdin.write((PASSWORD + "\n").encode())
                await stdin.drain()
                line = await asyncio.wait_for(stdout.readline(), timeout=60 + sessions)
                if not line:
                    raise RuntimeError("the clients' process ended before logging in")
                ready = json.loads(line)
                login_cpu, login_wall = time.process_time() - cpu0, time.monotonic() - wall0
            await until(
                lambda: sum(router.router.is_logged_in(a) for a in logins) == sessions,
                within=20,
                what="not every session logged in to routing",
            )
            rss_ready = rss_mb()

            # Offers: every call queued at once; each agent gets one.
            offered: dict[str, float] = {}

            def on_decision(decision: routing.Decision) -> None:
                if isinstance(decision, routing.OfferCall):
                    offered[decision.call.call_id] = time.time()

            stop = router.listen(on_decision)
            call_ids = [f"bench-call-{i:03d}" for i in range(sessions)]
            async with RssPeak() as burst_peak:
                cpu0, t0 = time.process_time(), time.time()
                for call_id in call_ids:
                    now = router.now()
                    await router.submit(
                        routing.CallQueued(routing.QueuedCall(call_id, QUEUE, joined_at=now), now)
                    )
                offer_round = await ask({"round": "offer", "count": sessions, "timeout_s": 15})
                offer_cpu = time.process_time() - cpu0
            stop()
            offer_lat = [
                (at - offered[cid]) * 1000
                for _, cid, at in offer_round["received"]
                if cid in offered
            ]
            offer_burst = [(at - t0) * 1000 for _, _, at in offer_round["received"]]

            # Rings with a screen pop, through the softphone hub, to every agent at once.
            sent: dict[str, float] = {}
            cpu0, t0 = time.process_time(), time.time()
            for login, call_id in zip(logins, call_ids, strict=True):
                sent[login] = time.time()
                await hub.to_agent(
                    login, {"type": "ring", "call_id": call_id, "pop": _pop(call_id)}
                )
            ring_round = await ask({"round": "ring", "count": sessions, "timeout_s": 15})
            ring_cpu = time.process_time() - cpu0
            ring_lat = [(at - sent[login]) * 1000 for login, _, at in ring_round["received"]]
            ring_burst = [(at - t0) * 1000 for _, _, at in ring_round["received"]]
            for call_id in call_ids:
                await router.submit(routing.CallCancelled(call_id, router.now()))
            stdin.write(b'{"quit": true}\n')
            await stdin.drain()
            await asyncio.wait_for(child.wait(), timeout=20)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    return {
        "sessions": sessions,
        "login_concurrency": concurrency,
        "http_login": summary(ready["login_ms"]),
        "logins_total_s": round(ready["logins_s"], 2),
        "ws_open": summary(ready["ws_open_ms"]),
        "routing_login": summary(ready["routing_login_ms"]),
        "login_phase_service_cpu_ms_per_agent": round(1000 * login_cpu / sessions, 1),
        "login_phase_s": round(login_wall, 2),
        "offer_after_decision": summary(offer_lat),
        "offer_after_burst_start": summary(offer_burst),
        "offer_burst_service_cpu_ms": round(1000 * offer_cpu, 1),
        "ring_after_send": summary(ring_lat),
        "ring_after_burst_start": summary(ring_burst),
        "ring_burst_service_cpu_ms": round(1000 * ring_cpu, 1),
        "service_rss_mb": {
            "before_logins": round(rss_idle, 1),
            "peak_during_logins": round(login_peak.peak, 1),
            "sessions_open": round(rss_ready, 1),
            "peak_during_offers": round(burst_peak.peak, 1),
            "per_session": round((rss_ready - rss_idle) / sessions, 3),
        },
    }


def _pop(call_id: str) -> dict[str, Any]:
    """A synthetic screen pop (no personal data: an unidentified caller, no number)."""
    return {
        "call_id": call_id,
        "queue": QUEUE,
        "wait_s": 12.0,
        "priority": "normale",
        "identified": False,
        "identification": None,
        "usager_id": None,
        "caller_number": None,
        "handoff_reason": "conseiller",
        "intents": ["apa_dossier_statut"],
        "transcript": ["où en est mon dossier"],
        "menu_path": ["accueil", "file_accueil_general"],
    }


# --- main ---------------------------------------------------------------------------------------


async def bench_browser(
    folder: Path, calls: int, media_ks: tuple[int, ...], window: float
) -> dict[str, Any]:
    """Parts 1 and 2: one service, one Chromium, up to four agents' pages."""
    voice = caller_voice(folder)
    agents = [f"ag{i}" for i in range(1, max(media_ks, default=1) + 1)]
    result: dict[str, Any] = {}
    async with panel_service(folder / "service") as service:
        numbers = demo_numbers(service, 30)
        add_agents(service, agents)
        base = base_url(service)
        async with chromium() as browser:
            pages = {login: await open_agent_page(browser, base, login) for login in agents}
            await routing_login(service, pages["ag1"], "ag1")
            if calls:
                result["screen_pop"] = await bench_screen_pop(
                    service, pages["ag1"], folder, voice, numbers, calls
                )
            if media_ks:
                for login in agents[1:]:
                    await routing_login(service, pages[login], login)
                idle = await measure_idle(window)
                runs = []
                for k in media_ks:
                    chosen = {a: pages[a] for a in agents}
                    runs.append(
                        await bench_media(service, chosen, folder, voice, numbers, k, window, idle)
                    )
                result["webrtc_media"] = {
                    "what": "service process CPU while K browser calls are bridged, minus idle",
                    "idle_cpu_percent_of_core": round(100 * idle, 2),
                    "runs": runs,
                }
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-panel-") as tmp:
        folder = Path(tmp)
        started = time.monotonic()
        result: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}}
        media_ks = tuple(int(k) for k in args.media_calls.split(",") if k)
        if args.calls or media_ks:
            result.update(
                await bench_browser(folder / "browser", args.calls, media_ks, args.window)
            )
        if args.peer_calls:
            result["webrtc_media_peers_only"] = await peer_bench(args.peer_calls, args.window)
        if args.sessions:
            result["sessions"] = await bench_sessions(
                folder / "sessions", args.sessions, args.login_concurrency
            )
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]
        result["seconds"] = round(time.monotonic() - started, 1)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=30, help="screen-pop calls (sequential)")
    parser.add_argument("--sessions", type=int, default=50, help="simultaneous agent sessions")
    parser.add_argument("--media-calls", default="1,4", help="K browser calls at once, e.g. 1,4")
    parser.add_argument("--window", type=float, default=10.0, help="CPU window (s)")
    parser.add_argument("--peer-calls", type=int, default=4, help="bench/webrtc_media.py calls")
    parser.add_argument("--login-concurrency", type=int, default=1, help="HTTP logins at once")
    parser.add_argument("--quick", action="store_true", help="small numbers (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.sessions, args.media_calls = 3, 5, "1"
        args.window, args.peer_calls = 3.0, 0
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(run(args)), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
