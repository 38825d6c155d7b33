"""tests/netns: live tests that feed messages naming foreign hosts to the service.

They run only inside a loopback-only network namespace, so whatever the service answers to
192.0.2.x or example.com cannot leave the machine::

    unshare -n -- sh -c 'ip link set lo up && exec .venv/bin/pytest tests/netns -q'

Anywhere else (a plain ``pytest tests``) every test here is skipped.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest


def loopback_only_namespace() -> bool:
    """True when the only network interface of this process's namespace is ``lo``, and it is up.

    ``/sys/class/net`` is not enough: after ``unshare -n`` without a new mount namespace, sysfs
    still lists the parent namespace's interfaces. ``if_nameindex()`` asks the kernel about the
    namespace the process is in; ``/proc/net/dev`` (per-namespace too) confirms; ``lo`` must be up
    (``/proc/net/if_inet6`` is not needed: IPv4 127.0.0.1 is what the tests use).
    """
    try:
        interfaces = sorted(name for _, name in socket.if_nameindex())
        proc_dev = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    except OSError:
        return False
    if interfaces != ["lo"] or sorted(line.split(":")[0].strip() for line in proc_dev) != ["lo"]:
        return False
    try:  # SIOCGIFFLAGS on lo: IFF_UP
        import fcntl
        import struct

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            req = struct.pack("16sH", b"lo", 0)
            flags = struct.unpack("16sH", fcntl.ioctl(s.fileno(), 0x8913, req)[:18])[1]
    except OSError:
        return False
    return bool(flags & 0x1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if loopback_only_namespace():
        return
    skip = pytest.mark.skip(
        reason="needs a loopback-only network namespace: "
        "unshare -n -- sh -c 'ip link set lo up && exec .venv/bin/pytest tests/netns -q'"
    )
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)
