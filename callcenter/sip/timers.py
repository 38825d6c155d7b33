"""SIP timer values (RFC 3261 section 17 and table 4 of appendix A, RFC 6026 section 8.4).

All transaction timers derive from T1 (RTT estimate), T2 (maximum retransmit interval for
non-INVITE requests and INVITE responses) and T4 (maximum duration a message remains in the
network). Values are for unreliable transports (UDP); over a reliable transport the
retransmission timers (A, E, G) do not run and the wait timers (D, I, J, K) are zero.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TimerValues", "next_interval"]


@dataclass(frozen=True, slots=True)
class TimerValues:
    """The RFC 3261 timers for one engine, computed from T1/T2/T4."""

    t1: float = 0.5
    """RTT estimate (RFC 3261 section 17.1.1.1, default 500 ms)."""
    t2: float = 4.0
    """Maximum retransmit interval for non-INVITE requests and INVITE responses."""
    t4: float = 5.0
    """Maximum duration a message remains in the network."""

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J, L and M, and the 2xx-without-ACK limit (section 13.3.1.4)."""
        return 64 * self.t1

    @property
    def timer_d(self) -> float:
        """Wait time for response retransmissions after a non-2xx to our INVITE (>= 32 s)."""
        return max(32.0, self.timeout)

    @property
    def timer_i(self) -> float:
        """Wait time for ACK retransmissions in the Confirmed state (T4)."""
        return self.t4

    @property
    def timer_k(self) -> float:
        """Wait time for response retransmissions of a completed client transaction (T4)."""
        return self.t4


def next_interval(current: float, cap: float | None) -> float:
    """Double a retransmission interval, capped (Timers A/E/G, 2xx retransmission).

    Args:
        current: The interval just used.
        cap: The maximum interval (T2), or None for no cap (Timer A).

    Returns:
        The next interval.
    """
    doubled = current * 2
    return doubled if cap is None else min(doubled, cap)
