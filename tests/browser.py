"""Debian's headless Chromium for the panel tests, driven by playwright (no ``playwright install``).

``chromium()`` yields a playwright ``Browser`` launched from ``/usr/bin/chromium`` with the
flags of ``../shared/TESTING.md`` (a fresh profile: playwright's own), a fake microphone playing a
WAV, and what WebRTC needs to talk to the service on loopback only:

- ``--allow-loopback-in-peer-connection``: Chromium's WebRTC ignores loopback interfaces by
  default (``network_ignore_mask``); the service's ICE candidate is 127.0.0.1.
- ``--disable-features=WebRtcHideLocalIpsWithMdns``: host candidates as addresses, not
  ``.local`` mDNS names (nothing could resolve them here).

``axe_violations(page)`` injects axe-core (the copy bundled by ``axe-playwright-python``) and
returns the violations at or above ``serious``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CALLCENTER_CHROMIUM", "/usr/bin/chromium")
"""The browser under test (Debian's package)."""

BASE_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
)
WEBRTC_FLAGS: tuple[str, ...] = (
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
)


def require_chromium() -> None:
    """Skip the test when Debian's Chromium is not installed (``make install`` installs it)."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")


@contextlib.asynccontextmanager
async def chromium(
    *, microphone_wav: Path | None = None, extra_flags: tuple[str, ...] = ()
) -> AsyncIterator[Any]:
    """A fresh headless Chromium (its own profile), closed on exit.

    Args:
        microphone_wav: What the fake microphone plays (looped); Chromium's beep otherwise.
        extra_flags: More command-line flags.
    """
    require_chromium()
    from playwright.async_api import async_playwright

    flags = [*BASE_FLAGS, *WEBRTC_FLAGS, *extra_flags]
    if microphone_wav is not None:
        flags.append(f"--use-file-for-fake-audio-capture={microphone_wav}")
    # launch() gives every browser a fresh temporary profile (playwright refuses --user-data-dir).
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=flags, chromium_sandbox=False
        )
        try:
            yield browser
        finally:
            await browser.close()


_SERIOUS = frozenset({"serious", "critical"})


async def axe_violations(page: Any, *, levels: frozenset[str] = _SERIOUS) -> list[dict[str, Any]]:
    """Run axe-core (WCAG 2.0/2.1 A and AA rules) on the page; the violations at ``levels``."""
    import axe_playwright_python

    source = (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()
    await page.evaluate(source)
    options = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
    result = await page.evaluate(
        "async (options) => JSON.stringify(await axe.run(document, options))", options
    )
    violations = json.loads(result)["violations"]
    return [v for v in violations if v.get("impact") in levels]


def describe(violations: list[dict[str, Any]]) -> str:
    """A readable summary of axe violations for an assertion message."""
    lines = []
    for v in violations:
        targets = [n.get("target") for n in v.get("nodes", [])][:5]
        lines.append(f"{v['id']} ({v.get('impact')}): {v.get('help')} at {targets}")
    return "\n".join(lines)
