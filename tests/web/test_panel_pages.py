"""The panel's pages in Debian's Chromium against a stub backend (issue 6).

The real static pages and ``add_panel_pages`` routes are served on 127.0.0.1 with the stub
API and WebSocket of :mod:`tests.web.panel_stub` (which sends the spec's strict CSP). Checks:
axe-core (no serious/critical WCAG 2.1 A/AA violation), inert XSS payloads, keyboard-only
use, focus management, live regions, reflow at 200 % zoom (640 CSS px), the softphone's
signalling messages, CSRF header on actions.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import expect

from callcenter.web.panel.pages import STATIC_DIR, add_panel_pages
from tests.browser import axe_violations, chromium, describe
from tests.web.panel_stub import CALL_ID, COOKIE, PASSWORD, XSS_IMG, XSS_SCRIPT, PanelStub, pop


@dataclass
class Tab:
    """A page under test with what it reported."""

    page: Any
    errors: list[str] = field(default_factory=list)
    """Uncaught exceptions and CSP violations."""


@contextlib.asynccontextmanager
async def served(stub: PanelStub) -> AsyncIterator[str]:
    server = TestServer(stub.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        for ws in list(stub.sockets):
            await ws.close()
        await server.close()


async def open_tab(
    browser: Any, base: str, path: str, *, cookie: str | None = None, width: int = 1280
) -> Tab:
    context = await browser.new_context(
        viewport={"width": width, "height": 900}, locale="fr-FR", base_url=base
    )
    if cookie is not None:
        await context.add_cookies(
            [{"name": COOKIE, "value": cookie, "domain": "127.0.0.1", "path": "/panel"}]
        )
    page = await context.new_page()
    tab = Tab(page)
    page.on("pageerror", lambda exc: tab.errors.append(f"pageerror: {exc}"))

    def console(msg: Any) -> None:
        if "Content Security Policy" in msg.text or "Uncaught" in msg.text:
            tab.errors.append(f"console: {msg.text}")

    page.on("console", console)
    page.on("dialog", lambda dialog: tab.errors.append(f"dialog: {dialog.message}"))
    await page.goto(base + path)
    return tab


async def assert_axe(page: Any, what: str) -> None:
    violations = await axe_violations(page)
    assert not violations, f"{what}:\n{describe(violations)}"


async def assert_reflows(page: Any, what: str) -> None:
    """WCAG 1.4.10: no horizontal scrolling at 200 % and 400 % zoom of a 1280 px window."""
    size = page.viewport_size
    for width in (640, 320):  # 200 % of 1280 px; 400 % (WCAG 1.4.10's 320 CSS px)
        await page.set_viewport_size({"width": width, "height": 900})
        scroll, client = await page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert scroll <= client, f"{what}: horizontal overflow at {width} px ({scroll} > {client})"
    await page.set_viewport_size(size)


async def active_id(page: Any) -> str:
    result: str = await page.evaluate("document.activeElement ? document.activeElement.id : ''")
    return result


async def assert_no_injection(tab: Tab) -> None:
    page = tab.page
    assert await page.evaluate("window.__xss === undefined"), "an XSS payload ran"
    injected = await page.evaluate("document.querySelectorAll('main img, main script').length")
    assert injected == 0
    assert not [e for e in tab.errors if e.startswith("dialog")]


# --- routes without a browser --------------------------------------------------------------


async def test_routes_redirect_forbid_and_cache_headers() -> None:
    stub = PanelStub()
    agent = stub.add_session("agent")
    supervisor = stub.add_session("supervisor")
    async with TestClient(TestServer(stub.app(), host="127.0.0.1")) as client:
        resp = await client.get("/panel/", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/panel/login"
        resp = await client.get("/panel", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/panel/"
        resp = await client.get("/panel/supervision", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/panel/login"

        resp = await client.get("/panel/login")
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        assert "text/html" in resp.headers["Content-Type"]
        assert 'lang="fr"' in await resp.text()

        client.session.cookie_jar.update_cookies({COOKIE: agent})
        resp = await client.get("/panel/")
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        assert "Poste conseiller" in await resp.text()
        resp = await client.get("/panel/supervision")
        assert resp.status == 403 and resp.headers["Cache-Control"] == "no-store"
        assert "Accès refusé" in await resp.text()

        client.session.cookie_jar.update_cookies({COOKIE: supervisor})
        resp = await client.get("/panel/supervision")
        assert resp.status == 200 and "<h1>Supervision</h1>" in await resp.text()

        resp = await client.get("/panel/static/agent.js")
        assert resp.status == 200 and "javascript" in resp.headers["Content-Type"]
        resp = await client.get("/panel/static/agent.html")
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        resp = await client.get("/panel/static/../pages.py")
        assert resp.status in (403, 404)
        resp = await client.get("/panel/static/%2e%2e/pages.py")
        assert resp.status in (403, 404)


async def test_pages_without_security_middleware_still_no_store() -> None:
    """pages.py sets no-store on HTML by itself (whatever middleware the app has)."""

    async def nobody(request: web.Request) -> None:
        return None

    app = web.Application()
    add_panel_pages(app, current_user=nobody)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for path in ("/panel/login", "/panel/static/supervisor.html"):
            resp = await client.get(path)
            assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store", path
        resp = await client.get("/panel/static/panel.css")
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-cache"


class _InlineFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.lang: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {k for k, _ in attrs}
        if tag == "html":
            self.lang = dict(attrs).get("lang")
        if tag == "style" or "style" in names:
            self.problems.append(f"inline style on <{tag}>")
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        self.problems += [f"handler {n} on <{tag}>" for n in names if n.startswith("on")]


def test_static_files_have_no_inline_code_or_html_sinks() -> None:
    """CSP script-src/style-src 'self' forbid inline code; data goes in with textContent."""
    for html in STATIC_DIR.glob("*.html"):
        finder = _InlineFinder()
        finder.feed(html.read_text(encoding="utf-8"))
        assert finder.problems == [], html.name
        assert finder.lang == "fr", html.name
    sinks = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function"
    )
    for js in STATIC_DIR.glob("*.js"):
        assert not sinks.search(js.read_text(encoding="utf-8")), js.name


# --- browser -------------------------------------------------------------------------------


async def test_login_page_errors_then_success() -> None:
    stub = PanelStub()
    async with served(stub) as base, chromium() as browser:
        tab = await open_tab(browser, base, "/panel/login")
        page = tab.page
        await assert_axe(page, "login")
        await assert_reflows(page, "login")

        # Keyboard only: skip link first, then the fields, then the button.
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.className") == "skip-link"
        await page.keyboard.press("Tab")
        assert await active_id(page) == "login"
        await page.keyboard.press("Enter")  # submits the empty form
        alert = page.locator("#login-error")
        await alert.get_by_text("Saisissez votre identifiant et votre mot de passe.").wait_for()
        assert await page.get_attribute("#login", "aria-invalid") == "true"

        await page.keyboard.type("agent1")
        await page.keyboard.press("Tab")
        await page.keyboard.type("mauvais")
        await page.keyboard.press("Enter")
        await alert.get_by_text("Identifiant ou mot de passe incorrect.").wait_for()
        assert await page.input_value("#password") == ""
        await assert_axe(page, "login with error")

        await page.fill("#login", "verrouille")
        await page.fill("#password", "x")
        await page.click("#login-submit")
        await alert.get_by_text("Réessayez dans 10 minutes", exact=False).wait_for()

        await page.fill("#login", "agent1")
        await page.fill("#password", PASSWORD)
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}/panel/")
        await page.locator("#agent-name").get_by_text("Camille Agent").wait_for()
        assert tab.errors == []


async def test_agent_ring_answer_controls_wrapup_keyboard_only() -> None:
    stub = PanelStub()
    cookie = stub.add_session("agent")
    async with served(stub) as base, chromium() as browser:
        tab = await open_tab(browser, base, "/panel/", cookie=cookie)
        page = tab.page
        await page.locator("#agent-state-text").get_by_text("Disponible").wait_for()
        await page.locator("#link-state-text").get_by_text("connectée").wait_for()
        assert await page.is_disabled("#btn-mute") and await page.is_disabled("#btn-hangup")
        assert await page.is_hidden("#wrapup")
        await assert_axe(page, "agent idle")
        await assert_reflows(page, "agent idle")

        # Incoming call: pop + dossier with XSS payloads, assertive announcement, focus on Répondre.
        await stub.push(
            {
                "type": "offer",
                "call_id": CALL_ID,
                "queue": "apa",
                "priority": "normal",
                "proficiency": 3,
                "wait_s": 42.0,
                "ring_deadline": 0.0,
                "dial_out": False,
                "at": 0.0,
            }
        )
        await stub.push({"type": "ring", "call_id": CALL_ID, "pop": pop()})
        await page.locator("#incoming").wait_for(state="visible")
        await page.locator("#dossier h4").get_by_text("APA-2026-000123", exact=False).wait_for()
        await expect(page.locator("#announce-assertive")).to_contain_text("Appel entrant")
        assert await active_id(page) == "btn-answer"
        assert await page.get_attribute("#announce-assertive", "aria-live") == "assertive"
        # The payloads are shown as text, and nothing ran.
        assert XSS_IMG in await page.text_content("#pop")
        assert XSS_SCRIPT in await page.text_content("#pop")
        assert XSS_IMG in await page.text_content("#dossier")
        assert XSS_SCRIPT in await page.text_content("#dossier")
        await assert_no_injection(tab)
        await assert_axe(page, "agent ringing")
        await assert_reflows(page, "agent ringing")
        dossier_gets = [p for p in stub.gets if p.endswith("/dossier")]
        assert dossier_gets == ["/panel/api/calls/a84b4c76e66710%40192.0.2.4%2Fx/dossier"]

        # Enter answers: getUserMedia, offer with gathered candidates, "answer" message.
        await page.keyboard.press("Enter")
        answer = await stub.next_message("answer")
        assert answer["call_id"] == CALL_ID
        assert "m=audio" in answer["sdp"] and "a=candidate" in answer["sdp"]
        assert await page.evaluate("window.ccSoftphone.pc !== null")
        await stub.push(
            {"type": "call_state", "call_id": CALL_ID, "state": "connected", "reason": None}
        )
        await page.locator("#call-status").get_by_text("En communication.").wait_for()
        assert await page.is_hidden("#incoming")
        await expect(page.locator("#announce-polite")).to_contain_text("en communication")

        # Muet: a toggle with aria-pressed; the local track stops; the server is told.
        await page.focus("#btn-mute")
        await page.keyboard.press("Space")
        assert (await stub.next_message("mute")) == {
            "type": "mute",
            "call_id": CALL_ID,
            "muted": True,
        }
        assert await page.get_attribute("#btn-mute", "aria-pressed") == "true"
        assert await page.evaluate(
            "window.ccSoftphone.pc.getSenders().every(s => !s.track || !s.track.enabled)"
        )
        await page.keyboard.press("Enter")
        assert (await stub.next_message("mute"))["muted"] is False
        assert await page.get_attribute("#btn-mute", "aria-pressed") == "false"

        # Keypad and hold.
        await page.focus("#keys button[data-key='5']")
        await page.keyboard.press("Enter")
        assert (await stub.next_message("dtmf"))["digit"] == "5"
        await page.focus("#keys button[data-key='#']")
        await page.keyboard.press("Space")
        assert (await stub.next_message("dtmf"))["digit"] == "#"
        await page.focus("#btn-hold")
        await page.keyboard.press("Enter")
        assert (await stub.next_message("hold"))["call_id"] == CALL_ID
        assert await page.get_attribute("#btn-hold", "aria-pressed") == "true"
        assert await page.is_disabled("#btn-mute")
        await page.keyboard.press("Enter")
        await stub.next_message("resume")
        stats = await page.evaluate("window.ccSoftphone.stats()")
        assert set(stats) == {"inboundAudioEnergy", "inboundAudioLevel", "outboundPackets"}

        # Raccrocher: hangup message, peer connection closed.
        await page.focus("#btn-hangup")
        await page.keyboard.press("Enter")
        assert (await stub.next_message("hangup"))["call_id"] == CALL_ID
        assert await page.evaluate("window.ccSoftphone.pc === null")

        # Wrap-up form on call_completed; filled and saved with the keyboard.
        await stub.push(
            {
                "type": "call_completed",
                "call_id": CALL_ID,
                "queue": "apa",
                "talk_s": 95.0,
                "at": 0.0,
            }
        )
        await page.locator("#wrapup").wait_for(state="visible")
        assert await active_id(page) == "h-wrapup"  # the focused Raccrocher became disabled
        await assert_axe(page, "agent wrap-up")
        await assert_reflows(page, "agent wrap-up")
        await page.keyboard.press("Tab")
        assert await active_id(page) == "wrapup-motif"
        await page.focus("#btn-wrapup-save")
        await page.keyboard.press("Enter")  # empty motif: refused, error announced
        await expect(page.locator("#wrapup-error")).to_contain_text("Choisissez le motif")
        assert await active_id(page) == "wrapup-motif"
        assert await page.get_attribute("#wrapup-motif", "aria-invalid") == "true"
        await page.keyboard.press("ArrowDown")  # a closed <select> takes arrow keys
        assert await page.input_value("#wrapup-motif") == "Information APA"
        await page.keyboard.press("Tab")
        await page.keyboard.type("Rappeler la fille <b>demain</b>")
        await page.keyboard.press("Tab")  # radio group, none checked: its first radio
        assert await active_id(page) == "resolved-yes"
        await page.keyboard.press("Space")
        assert await page.is_checked("#resolved-yes")
        await page.keyboard.press("Tab")
        await page.keyboard.type("Envoyer le formulaire")
        await page.keyboard.press("Tab")
        assert await active_id(page) == "wrapup-due"
        # The date widget's keyboard segments follow the browser's UI locale: fill it directly.
        await page.fill("#wrapup-due", "2026-12-30")
        await page.keyboard.press("Enter")
        await page.locator("#wrapup").wait_for(state="hidden")
        path, body, csrf = stub.posts[-1]
        assert path == "/panel/api/wrapup"
        assert csrf == stub.sessions[cookie].csrf_token
        assert body["call_id"] == CALL_ID and body["motif"] == "Information APA"
        assert body["note"] == "Rappeler la fille <b>demain</b>"
        assert body["resolved"] is True
        assert body["follow_up"] == "Envoyer le formulaire"
        assert body["follow_up_due"] == "2026-12-30"
        await expect(page.locator("#announce-polite")).to_contain_text("enregistrée")
        assert tab.errors == []


async def test_focus_not_stolen_while_typing_then_tab_reaches_answer() -> None:
    stub = PanelStub()
    cookie = stub.add_session("agent")
    async with served(stub) as base, chromium() as browser:
        tab = await open_tab(browser, base, "/panel/", cookie=cookie)
        page = tab.page
        await page.locator("#agent-state-text").get_by_text("Disponible").wait_for()
        await page.focus("#search-q")
        await page.keyboard.type("Mart")
        await stub.push(
            {
                "type": "ring",
                "call_id": "c2",
                "pop": {
                    "call_id": "c2",
                    "queue": "mdph",
                    "queue_label": "MDPH",
                    "wait_s": 3.0,
                    "priority": "high",
                    "identified": False,
                    "identification": None,
                    "caller_number": "+33612345678",
                    "usager_id": None,
                    "display_name": None,
                    "handoff_reason": "no_match",
                    "handoff_label": "Non reconnu",
                    "intents": [],
                    "intent_labels": [],
                    "transcript": [],
                    "menu_path": [],
                },
            }
        )
        await page.locator("#incoming").wait_for(state="visible")
        await page.keyboard.type("in")
        assert await active_id(page) == "search-q"
        assert await page.input_value("#search-q") == "Martin"
        assert "Non identifié" in await page.text_content("#pop")
        assert "+33612345678" in await page.text_content("#pop")

        # Keyboard only from the top of the page: Tab until Répondre, Enter.
        await page.evaluate("document.activeElement.blur()")
        for _ in range(40):
            await page.keyboard.press("Tab")
            if await active_id(page) == "btn-answer":
                break
        assert await active_id(page) == "btn-answer"
        await page.keyboard.press("Enter")
        answer = await stub.next_message("answer")
        assert answer["call_id"] == "c2" and "m=audio" in answer["sdp"]
        assert tab.errors == []


async def test_microphone_refused_explained_in_french() -> None:
    stub = PanelStub()
    cookie = stub.add_session("agent")
    async with served(stub) as base, chromium() as browser:
        context = await browser.new_context(base_url=base)
        await context.add_cookies(
            [{"name": COOKIE, "value": cookie, "domain": "127.0.0.1", "path": "/panel"}]
        )
        await context.add_init_script(
            "navigator.mediaDevices.getUserMedia = () => "
            "Promise.reject(new DOMException('denied', 'NotAllowedError'));"
        )
        page = await context.new_page()
        await page.goto(base + "/panel/")
        await page.locator("#agent-state-text").get_by_text("Disponible").wait_for()
        await stub.push({"type": "ring", "call_id": CALL_ID, "pop": pop()})
        await page.locator("#btn-answer").click()
        await (
            page.locator("#mic-error")
            .get_by_text("L’accès au micro a été refusé", exact=False)
            .wait_for()
        )
        # Still ringing: the agent can fix the permission and answer again.
        assert await page.is_enabled("#btn-answer")
        assert await active_id(page) == "btn-answer"
        assert stub.received.empty()


async def test_search_requires_reason_and_opens_dossier() -> None:
    stub = PanelStub()
    cookie = stub.add_session("agent")
    async with served(stub) as base, chromium() as browser:
        tab = await open_tab(browser, base, "/panel/", cookie=cookie)
        page = tab.page
        await page.locator("#agent-state-text").get_by_text("Disponible").wait_for()
        await page.fill("#search-q", "Martin")
        await page.click("#btn-search")
        await (
            page.locator("#search-error")
            .get_by_text("Le motif de la consultation est obligatoire.")
            .wait_for()
        )
        assert await active_id(page) == "search-reason"
        assert not [g for g in stub.gets if "search" in g]
        await page.keyboard.type("Demande de l'usager par courrier")
        await page.keyboard.press("Enter")
        result = page.locator("#search-results button")
        await result.wait_for()
        assert XSS_SCRIPT in await result.text_content()
        await result.focus()
        await page.keyboard.press("Enter")
        await page.locator("#dossier h4").get_by_text("APA-2026-000123", exact=False).wait_for()
        assert await active_id(page) == "h-dossier"
        assert any(g.startswith("/panel/api/dossiers/12?reason=Demande") for g in stub.gets)
        await assert_no_injection(tab)
        await assert_axe(page, "agent with searched dossier")
        assert tab.errors == []


async def test_routing_actions_send_csrf_and_reconnect_resyncs() -> None:
    stub = PanelStub()
    cookie = stub.add_session("agent")
    async with served(stub) as base, chromium() as browser:
        tab = await open_tab(browser, base, "/panel/", cookie=cookie)
        page = tab.page
        await page.locator("#agent-state-text").get_by_text("Disponible").wait_for()
        assert await page.is_disabled("#btn-ready")
        await page.select_option("#pause-reason", "formation")
        await page.click("#btn-pause")
        await page.locator("#agent-state-text").get_by_text("En pause (formation)").wait_for()
        assert stub.posts[-1] == (
            "/panel/api/agent/pause",
            {"reason": "formation"},
            stub.sessions[cookie].csrf_token,
        )
        assert await page.is_enabled("#btn-ready")

        # The server drops the socket: the page reconnects and resyncs from hello.
        stub.me.update(state="available", pause_reason=None)
        for ws in list(stub.sockets):
            await ws.close()
        await page.locator("#agent-state-text").get_by_text("Disponible").wait_for(timeout=10000)
        assert stub.ws_connections == 2
        await page.locator("#link-state-text").get_by_text("connectée").wait_for()

        # The session ends: the next action is sent to the login page.
        stub.sessions.clear()
        await page.click("#btn-routing-logout")
        await page.wait_for_url(f"{base}/panel/login?expiree=1")
        await (
            page.locator("#login-notice")
            .get_by_text("Votre session a expiré.", exact=False)
            .wait_for()
        )
        assert tab.errors == []


async def test_supervisor_page_tables_and_polling() -> None:
    stub = PanelStub()
    supervisor = stub.add_session("supervisor")
    agent = stub.add_session("agent")
    async with served(stub) as base, chromium() as browser:
        tab = await open_tab(browser, base, "/panel/supervision", cookie=supervisor)
        page = tab.page
        await page.locator("#queues-table tbody th").first.get_by_text("APA").wait_for()
        assert await page.locator("table caption").count() == 3
        assert await page.locator("thead th[scope='col']").count() == 16
        assert await page.locator("tbody th[scope='row']").count() == 4
        assert XSS_IMG in await page.text_content("#agents-table")
        assert "⏸ En pause" in await page.text_content("#agents-table")
        await assert_no_injection(tab)
        await assert_axe(page, "supervisor")
        await assert_reflows(page, "supervisor")
        await asyncio.sleep(2.5)
        polls = stub.gets.count("/panel/api/supervisor")
        assert polls >= 2
        # Suspending the refresh (WCAG 2.2.2) stops the polling.
        await page.focus("#btn-pause-refresh")
        await page.keyboard.press("Enter")
        assert await page.get_attribute("#btn-pause-refresh", "aria-pressed") == "true"
        stopped = stub.gets.count("/panel/api/supervisor")
        await asyncio.sleep(2.5)
        assert stub.gets.count("/panel/api/supervisor") == stopped
        assert tab.errors == []

        forbidden = await open_tab(browser, base, "/panel/supervision", cookie=agent)
        await forbidden.page.get_by_role("heading", name="Accès refusé").wait_for()
        await assert_axe(forbidden.page, "forbidden")


async def test_reject_then_offer_ended_clears_the_pop() -> None:
    stub = PanelStub()
    cookie = stub.add_session("agent")
    async with served(stub) as base, chromium() as browser:
        tab = await open_tab(browser, base, "/panel/", cookie=cookie)
        page = tab.page
        await page.locator("#agent-state-text").get_by_text("Disponible").wait_for()
        await stub.push({"type": "ring", "call_id": CALL_ID, "pop": pop()})
        await page.locator("#incoming").wait_for(state="visible")
        assert await active_id(page) == "btn-answer"
        await page.keyboard.press("Tab")
        assert await active_id(page) == "btn-reject"
        await page.keyboard.press("Enter")
        assert await stub.next_message("reject") == {"type": "reject", "call_id": CALL_ID}
        await stub.push(
            {"type": "call_state", "call_id": CALL_ID, "state": "ended", "reason": "rejected"}
        )
        await stub.push(
            {"type": "offer_ended", "call_id": CALL_ID, "reason": "rejected", "at": 0.0}
        )
        await page.locator("#incoming").wait_for(state="hidden")
        await expect(page.locator("#pop")).to_have_text("Aucun appel en cours.")
        await expect(page.locator("#dossier")).to_have_text("Aucun dossier affiché.")
        await expect(page.locator("#announce-polite")).to_contain_text("Appel refusé.")
        assert await active_id(page) == "h-call"  # focus left the hidden button
        assert tab.errors == []
