"""The agent panel end to end: a real Chromium softphone answers a real SIP caller.

In tests/netns: it runs inside a loopback-only network namespace, so that Chromium's ICE has
127.0.0.1 only (outside, it would also pair its LAN address with the service's 127.0.0.1).

The service runs in-process with the panel on (cookies without ``Secure``: the panel is opened
at ``http://127.0.0.1``) and WebRTC host candidates on 127.0.0.1 only. The caller is baresip
calling from a demo usager's number (its decoded dump is the caller's recording); the agent is
Debian's Chromium driven by playwright, its fake microphone playing an agent's sentence.

Path: the agent logs in (password), logs in to routing → the caller presses 0 → the panel rings
with the screen pop (the caller's number, recognised, and the dossier of that demo usager) → the
agent answers → audio both ways (the caller's recording holds the agent's voice; the browser's
received audio energy grows) → mute and hold (music to the caller) → the agent hangs up → the
wrap-up form → its motif, note and first-contact flag are in the usager's contact history.
The same path runs again with the keyboard only (Tab to a control, Enter or Space).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from callcenter.app import Service
from callcenter.store import agents as agents_store
from callcenter.store import demo
from callcenter.store import dossiers as repo
from callcenter.store import panel as panel_store
from callcenter.store.audit import Via
from tests.browser import axe_violations, chromium, describe, require_chromium
from tests.loopback import audio as sound
from tests.loopback.service import free_port
from tests.loopback.test_agent_bridge import events, running_service, trail
from tests.loopback.test_baresip import baresip_config
from tests.test_routing_redis import until

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        shutil.which("baresip") is None or shutil.which("espeak-ng") is None,
        reason="baresip and espeak-ng are needed",
    ),
]

PASSWORD = "un mot de passe assez long"
SELECTED_PAIR = """async () => {
  const stats = await window.ccSoftphone.pc.getStats();
  let pair = null;
  stats.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      pair = stats.get(s.selectedCandidatePairId);
    }
  });
  if (!pair) return null;
  return [stats.get(pair.localCandidateId).address, stats.get(pair.remoteCandidateId).address];
}"""
DEMO_TODAY = date(2026, 12, 7)


def demo_caller(service: Service) -> tuple[int, str]:
    """Load a few demo dossiers; return a usager id and their own number (national form)."""
    engine = service.store_engine
    assert engine is not None
    demo.load(engine, 12, 1, DEMO_TODAY)
    for person in demo.generate(12, 1, DEMO_TODAY):
        for phone in person.usager.phones:
            e164 = repo.normalize_phone(phone)
            if e164 is None:
                continue
            refs = repo.find_by_phone(engine, e164, actor="test", reason="test", via=Via.CLI)
            if len({r.usager_id for r in refs}) == 1 and person.demandes:
                return refs[0].usager_id, "0" + e164.removeprefix("+33")
    raise AssertionError("no demo usager with a number of their own")


def add_panel_agent(service: Service, login: str) -> None:
    engine = service.store_engine
    assert engine is not None
    agents_store.add_agent(engine, login, f"Agent {login}", skills={"accueil_general": 3})
    panel_store.set_password(engine, login, PASSWORD, role="agent")


@pytest.fixture
def agent_voice(tmp_path: Path) -> Path:
    """The agent's fake microphone: a sentence, then silence (Chromium loops the file)."""
    voice = sound.espeak_wav(
        tmp_path / "agent_voice_raw.wav", "Bonjour madame, je suis votre conseillère."
    )
    out = tmp_path / "agent_voice.wav"
    subprocess.run(
        ["sox", str(voice), "-r", "48000", "-c", "1", "-b", "16", str(out), "pad", "0", "1"],
        check=True,
    )
    return out


class BaresipCaller:
    """baresip calling from a number, typing keys through its console; dumps what it hears."""

    def __init__(self, folder: Path, number: str, source: Path) -> None:
        self.folder = folder
        self.sip_port = free_port()
        self.cons_port = free_port()
        self.dumps = baresip_config(
            folder,
            sip_port=self.sip_port,
            source=source,
            cons_port=self.cons_port,
            user=number,
            rtp_ports="30400-30500",
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with (self.folder / "baresip.log").open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                "baresip",
                "-f",
                str(self.folder),
                "-n",
                "127.0.0.1",
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.folder,
            )
        await asyncio.sleep(1.0)

    async def command(self, text: str) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", self.cons_port)
        )
        transport.sendto(text.encode())
        transport.close()

    def log(self) -> str:
        path = self.folder / "baresip.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    async def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.fixture
def caller_voice(tmp_path: Path) -> Path:
    """The caller speaks all along (a sentence and a pause, repeated for two minutes)."""
    once = sound.caller_wav(
        tmp_path / "caller_once.wav", "pcm16", text="Bonjour, j'appelle pour mon dossier.", pad_s=1
    )
    out = tmp_path / "caller_s16.wav"
    subprocess.run(["sox", str(once), str(out), "repeat", "40"], check=True)
    return out


async def _until(page: Any, script: str, timeout_ms: float = 20000) -> Any:
    return await page.wait_for_function(script, timeout=timeout_ms)


async def _energy(page: Any) -> float:
    stats = await page.evaluate("() => window.ccSoftphone.stats()")
    return float(stats["inboundAudioEnergy"])


async def tab_to(page: Any, selector: str, limit: int = 80) -> None:
    """Press Tab until ``selector`` has the focus (keyboard only)."""
    for _ in range(limit):
        if await page.evaluate(
            "(sel) => document.activeElement === document.querySelector(sel)", selector
        ):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"{selector} never got the focus by Tab")


async def run_path(
    tmp_path: Path, agent_voice: Path, caller_voice: Path, *, keyboard: bool
) -> None:
    require_chromium()
    async with running_service(
        tmp_path,
        CALLCENTER_PANEL_SECURE_COOKIES="false",
        CALLCENTER_WEBRTC_HOST_ADDRESSES="127.0.0.1",
    ) as service:
        usager_id, number = demo_caller(service)
        add_panel_agent(service, "ag1")
        base = f"http://127.0.0.1:{service.config.http.port}"
        caller = BaresipCaller(tmp_path / "caller", number, caller_voice)
        await caller.start()
        try:
            async with chromium(microphone_wav=agent_voice) as browser:
                page = await browser.new_page()
                dialogs: list[str] = []
                page.on("dialog", lambda d: dialogs.append(d.message))

                async def act(selector: str, key: str = "Enter") -> None:
                    if keyboard:
                        await tab_to(page, selector)
                        await page.keyboard.press(key)
                    else:
                        await page.click(selector)

                # Log in (password), then into routing.
                await page.goto(f"{base}/panel/login")
                assert not await axe_violations(page), describe(await axe_violations(page))
                if keyboard:
                    await tab_to(page, "#login")
                    await page.keyboard.type("ag1")
                    await page.keyboard.press("Tab")
                    await page.keyboard.type(PASSWORD)
                    await page.keyboard.press("Enter")
                else:
                    await page.fill("#login", "ag1")
                    await page.fill("#password", PASSWORD)
                    await page.click("#login-submit")
                await page.wait_for_url(f"{base}/panel/")
                await _until(page, "() => !document.querySelector('#btn-routing-login').disabled")
                await act("#btn-routing-login")
                assert service.routing is not None
                hub = service.softphones
                router = service.routing
                assert hub is not None and router is not None
                await until(lambda: router.router.is_logged_in("ag1"))
                await until(lambda: hub.present_here("ag1"))
                violations = await axe_violations(page)
                assert not violations, describe(violations)

                # The caller calls from the demo usager's number and presses 0.
                assert service.sip is not None
                await caller.command(f"/dial sip:3975@127.0.0.1:{service.sip.local_address[1]}\n")
                await asyncio.sleep(2.0)
                await caller.command("0")

                # The ring and the screen pop: the number recognised, the usager's dossier.
                await _until(page, "() => !document.querySelector('#btn-answer').disabled")
                await _until(
                    page, "() => document.querySelector('#dossier').textContent.includes('Usager')"
                )
                pop_text = await page.inner_text("#pop")
                assert "Non identifié" in pop_text or "non vérifiée" in pop_text, pop_text
                dossier_text = await page.inner_text("#dossier")
                assert "identité non vérifiée" in dossier_text, dossier_text
                engine = service.store_engine
                assert engine is not None
                snapshot = repo.dossier_snapshot(
                    engine,
                    usager_id,
                    role=repo.Role.AGENT,
                    actor="test",
                    reason="test",
                    via=Via.CLI,
                    today=DEMO_TODAY,
                )
                assert snapshot is not None
                assert snapshot.nom.upper() in dossier_text.upper(), dossier_text
                violations = await axe_violations(page)
                assert not violations, describe(violations)

                # Answer: WebRTC with the service; audio both ways.
                await act("#btn-answer")
                await _until(page, "() => !document.querySelector('#btn-hangup').disabled")
                start = await _energy(page)
                await asyncio.sleep(4.0)
                assert await _energy(page) > start, "the browser heard nothing of the caller"
                # The media went over loopback only (both ends of the selected ICE pair).
                pair = await page.evaluate(SELECTED_PAIR)
                assert pair == ["127.0.0.1", "127.0.0.1"], pair

                # Mute, then hold (the caller hears music), resume.
                await act("#btn-mute", "Space" if keyboard else "Enter")
                await _until(
                    page,
                    "() => document.querySelector('#btn-mute').ariaPressed === 'true'",
                )
                await act("#btn-mute", "Space" if keyboard else "Enter")
                await act("#btn-hold")
                await asyncio.sleep(1.0)
                await act("#btn-hold")
                await asyncio.sleep(1.5)

                if not keyboard:
                    # A reload during the call (a teleworker's browser restarted): the call
                    # went on at the server and the page brings its audio back by itself.
                    await page.reload()
                    await _until(
                        page,
                        "() => window.ccSoftphone.pc && "
                        "window.ccSoftphone.pc.connectionState === 'connected'",
                    )
                    start = await _energy(page)
                    await asyncio.sleep(3.0)
                    assert await _energy(page) > start, "no audio after the reload"

                # The agent hangs up; the wrap-up form.
                await act("#btn-hangup")
                await _until(page, "() => !document.querySelector('#wrapup').hidden")
                violations = await axe_violations(page)
                assert not violations, describe(violations)
                if keyboard:
                    await tab_to(page, "#wrapup-motif")
                    await page.keyboard.press("ArrowDown")
                    await page.keyboard.press("ArrowDown")
                    await tab_to(page, "#wrapup-note")
                    await page.keyboard.type("Rappeler pour la pièce manquante.")
                    await tab_to(page, "#resolved-yes")
                    await page.keyboard.press("Space")
                    await tab_to(page, "#btn-wrapup-save")
                    await page.keyboard.press("Enter")
                else:
                    await page.select_option("#wrapup-motif", "Suivi de dossier")
                    await page.fill("#wrapup-note", "Rappeler pour la pièce manquante.")
                    await page.check("#resolved-yes")
                    await page.click("#btn-wrapup-save")
                await until(lambda: router.router.agent("ag1").state.value != "wrap_up")
                assert not dialogs, dialogs
            call_id = _newest_call_id(service)
            call = await trail(service, call_id)
        finally:
            await caller.stop()
        contacts = repo.contacts_for(
            engine, usager_id, actor="test", reason="test", via=Via.CLI, limit=5
        )
    types = [e["type"] for e in call["events"]]
    for kind in ("agent_offered", "agent_answered", "bridged", "agent_hold", "agent_resume"):
        assert kind in types, types
    (offered,) = events(call, "agent_offered")
    assert offered["endpoint"] == "browser"
    (bridge,) = events(call, "bridge_ended")
    assert bridge["to_caller_voiced"] > 25 and bridge["to_agent_voiced"] > 25, bridge
    # The caller's recording holds the agent's (fake microphone's) voice.
    decoded = sorted(caller.dumps.glob("dump-*-dec.wav"))
    assert decoded, caller.log()
    heard, rate = sound.read_wav(decoded[0])
    assert heard.size > rate * 3 and sound.rms_dbfs(heard) > -45, sound.rms_dbfs(heard)
    # The wrap-up is in the contact history.
    mine = [c for c in contacts if c.sip_call_id == call_id]
    assert mine and mine[0].agent_notes == "Rappeler pour la pièce manquante.", contacts
    assert mine[0].handled_by == "ag1"


def _newest_call_id(service: Service) -> str:
    from callcenter.store.trail import read_calls

    engine = service.store_engine
    assert engine is not None
    calls = read_calls(engine, limit=1)
    assert calls
    return str(calls[0]["sip_call_id"])


async def test_agent_answers_in_the_browser_and_saves_the_wrap_up(
    tmp_path: Path, agent_voice: Path, caller_voice: Path
) -> None:
    await run_path(tmp_path, agent_voice, caller_voice, keyboard=False)


async def test_the_same_path_with_the_keyboard_only(
    tmp_path: Path, agent_voice: Path, caller_voice: Path
) -> None:
    await run_path(tmp_path, agent_voice, caller_voice, keyboard=True)
