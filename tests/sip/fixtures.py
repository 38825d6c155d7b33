"""Wire fixtures for the SIP tests.

``tests/data/*.sip`` hold one message each, byte for byte. ``baresip_*`` and ``sipp_uac_*`` were
captured on loopback (baresip 1.0 dialling / registering to a Python UDP socket on 127.0.0.1,
and ``sipp -sn uac``); ``linphone_*``, ``asterisk_*`` and ``kamailio_*`` are hand-written from
those UAs' usual output (Linphone 5, Asterisk/FreePBX 16 chan_pjsip trunk, Kamailio 5.6 proxy
with Record-Route and two Vias); ``invalid_*`` are hand-made broken messages.
RFC 4475 torture messages live outside the repo, in ``shared/sip/rfc4475`` (see ``RFC4475_DIR``).
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
RFC4475_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "sip" / "rfc4475"


def load(name: str) -> bytes:
    """Return the bytes of ``tests/data/<name>`` (``.sip`` added when missing)."""
    if "." not in name:
        name += ".sip"
    return (DATA_DIR / name).read_bytes()


def names(prefix: str = "") -> list[str]:
    """Return the fixture names (without ``.sip``) starting with ``prefix``, sorted."""
    return sorted(p.stem for p in DATA_DIR.glob(f"{prefix}*.sip"))


def load_rfc4475(name: str) -> bytes:
    """Return the bytes of an RFC 4475 torture message (``wsinv``, ``clerr``...)."""
    return (RFC4475_DIR / f"{name}.dat").read_bytes()
