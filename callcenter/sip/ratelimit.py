"""Per-source rate limiting of incoming SIP traffic (token buckets, bounded memory).

A SIP scanner (friendly-scanner, sipvicious, ...) floods OPTIONS/INVITE/REGISTER from one
address; each source gets its own token bucket, so it only exhausts its own budget and real
calls keep flowing. Trunk addresses are exempt. IPv6 sources are grouped by prefix (/64 by
default) because one host usually owns a whole /64 and can rotate through it.

Memory is bounded: at most ``max_sources`` buckets, the least recently seen evicted first. An
optional aggregate bucket (``total_rate``/``total_burst``) caps all non-exempt traffic together,
for floods from many (possibly spoofed) addresses.

Sans-IO: ``now`` is monotonic seconds supplied by the caller.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiterStats", "SourceRateLimiter"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class RateLimiterStats:
    """Counters for metrics (no addresses: they would explode label cardinality)."""

    allowed: int
    """Requests let through that were charged to a bucket."""
    exempt: int
    """Requests let through because their source is exempt (trusted trunks)."""
    dropped: int
    """Requests refused by a per-source bucket."""
    dropped_total_limit: int
    """Requests refused by the aggregate bucket."""
    tracked_sources: int
    """Buckets currently in memory."""
    evicted_sources: int
    """Buckets evicted to respect ``max_sources``."""


class SourceRateLimiter:
    """Token bucket per source address (RFC 3261 section 26.1.5 denial-of-service advice)."""

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        max_sources: int = 10000,
        exempt: Callable[[str], bool] | None = None,
        ipv6_prefix: int = 64,
        total_rate: float | None = None,
        total_burst: float | None = None,
    ) -> None:
        """Create a limiter.

        Args:
            rate: Tokens (requests) per second refilled for each source.
            burst: Bucket size: requests a new or idle source may send at once.
            max_sources: Most buckets kept; the least recently seen source is evicted.
            exempt: Predicate on the source host; True bypasses limiting (e.g. trusted trunks).
            ipv6_prefix: IPv6 sources sharing this prefix length share a bucket (128 = none).
            total_rate: Optional aggregate rate over all non-exempt sources.
            total_burst: Aggregate bucket size (defaults to ``total_rate``).
        """
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        if max_sources < 1:
            raise ValueError("max_sources must be >= 1")
        if not 0 <= ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be between 0 and 128")
        if total_rate is not None and total_rate <= 0:
            raise ValueError("total_rate must be > 0")
        self.rate = rate
        self.burst = float(burst)
        self.max_sources = max_sources
        self._exempt = exempt
        self._ipv6_prefix = ipv6_prefix
        self._total_rate = total_rate
        self._total_burst = float(total_burst if total_burst is not None else (total_rate or 0.0))
        if total_rate is not None and self._total_burst < 1:
            raise ValueError("total_burst must be >= 1")
        self._total: _Bucket | None = None
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._allowed = 0
        self._exempted = 0
        self._dropped = 0
        self._dropped_total = 0
        self._evicted = 0

    def _key(self, host: str) -> str:
        text = host.strip().strip("[]")
        if ":" not in text or self._ipv6_prefix == 128:
            return text
        try:
            address = ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return text
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, self._ipv6_prefix), strict=False)
        return str(network)

    @staticmethod
    def _refill(bucket: _Bucket, now: float, rate: float, burst: float) -> None:
        # A clock that goes backwards (it should not: monotonic) never creates tokens.
        elapsed = now - bucket.updated
        if elapsed > 0:
            bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
            bucket.updated = now

    def allow(self, host: str, now: float, cost: float = 1.0) -> bool:
        """Charge one request from ``host`` at ``now``.

        Args:
            host: The transport source address.
            now: Monotonic time in seconds.
            cost: Tokens this request costs (e.g. more for INVITE than for ACK).

        Returns:
            True to process the request, False to drop it silently (answering a flood only
            amplifies it).
        """
        if self._exempt is not None and self._exempt(host):
            self._exempted += 1
            return True
        key = self._key(host)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=self.burst, updated=now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
                self._evicted += 1
        else:
            self._buckets.move_to_end(key)
            self._refill(bucket, now, self.rate, self.burst)
        if bucket.tokens < cost:
            bucket.dropped += 1
            self._dropped += 1
            return False
        if self._total_rate is not None:
            if self._total is None:
                self._total = _Bucket(tokens=self._total_burst, updated=now)
            else:
                self._refill(self._total, now, self._total_rate, self._total_burst)
            if self._total.tokens < cost:
                self._dropped_total += 1
                return False
            self._total.tokens -= cost
        bucket.tokens -= cost
        self._allowed += 1
        return True

    def stats(self) -> RateLimiterStats:
        """Return counters since creation."""
        return RateLimiterStats(
            allowed=self._allowed,
            exempt=self._exempted,
            dropped=self._dropped,
            dropped_total_limit=self._dropped_total,
            tracked_sources=len(self._buckets),
            evicted_sources=self._evicted,
        )

    def top_offenders(self, n: int = 10) -> list[tuple[str, int]]:
        """Return up to ``n`` tracked sources with the most drops (for logs, not metrics)."""
        ranked = sorted(
            ((key, b.dropped) for key, b in self._buckets.items() if b.dropped),
            key=lambda item: item[1],
            reverse=True,
        )
        return ranked[:n]
