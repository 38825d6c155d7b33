from __future__ import annotations

import pytest

from callcenter.sip.access import AccessPolicy, is_trusted_source
from callcenter.sip.ratelimit import SourceRateLimiter


def test_burst_then_refill() -> None:
    limiter = SourceRateLimiter(rate=2.0, burst=5)
    assert [limiter.allow("192.0.2.1", 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    # 2 tokens/s: after 0.5 s one token is back, not two.
    assert limiter.allow("192.0.2.1", 0.5)
    assert not limiter.allow("192.0.2.1", 0.5)
    # A long idle period refills only up to the burst.
    assert [limiter.allow("192.0.2.1", 100.0) for _ in range(6)] == [True] * 5 + [False]
    stats = limiter.stats()
    assert (stats.allowed, stats.dropped, stats.exempt) == (11, 4, 0)


def test_sources_are_independent_scanner_cannot_starve_others() -> None:
    limiter = SourceRateLimiter(rate=1.0, burst=3)
    now = 0.0
    for _ in range(1000):  # sipvicious flooding OPTIONS at 1 kHz for one second
        limiter.allow("198.51.100.66", now)
        now += 0.001
    assert limiter.allow("192.0.2.10", now)  # a real caller still gets through
    stats = limiter.stats()
    assert stats.dropped >= 995
    assert limiter.top_offenders(1) == [("198.51.100.66", stats.dropped)]


def test_trusted_trunks_are_exempt() -> None:
    policy = AccessPolicy(("203.0.113.0/24",), True, False)
    limiter = SourceRateLimiter(rate=1.0, burst=1, exempt=lambda h: is_trusted_source(policy, h))
    assert all(limiter.allow("203.0.113.5", 0.0) for _ in range(500))
    assert limiter.allow("192.0.2.1", 0.0)
    assert not limiter.allow("192.0.2.1", 0.0)
    stats = limiter.stats()
    assert (stats.exempt, stats.allowed, stats.dropped, stats.tracked_sources) == (500, 1, 1, 1)


def test_memory_is_bounded_with_lru_eviction() -> None:
    limiter = SourceRateLimiter(rate=0.001, burst=1, max_sources=100)
    for i in range(1000):
        assert limiter.allow(f"10.0.{i // 256}.{i % 256}", 0.0)
    stats = limiter.stats()
    assert stats.tracked_sources == 100
    assert stats.evicted_sources == 900
    # The most recent source is still tracked (and empty); the oldest was forgotten.
    assert not limiter.allow("10.0.3.231", 0.0)
    assert limiter.allow("10.0.0.0", 0.0)


def test_recently_seen_source_survives_eviction() -> None:
    limiter = SourceRateLimiter(rate=0.001, burst=1, max_sources=2)
    assert limiter.allow("192.0.2.1", 0.0)
    assert limiter.allow("192.0.2.2", 0.0)
    assert not limiter.allow("192.0.2.1", 0.0)  # touch: .1 becomes most recent
    assert limiter.allow("192.0.2.3", 0.0)  # evicts .2, not .1
    assert not limiter.allow("192.0.2.1", 0.0)
    assert limiter.allow("192.0.2.2", 0.0)


def test_ipv6_grouped_by_prefix() -> None:
    limiter = SourceRateLimiter(rate=0.001, burst=2)
    assert limiter.allow("2001:db8:0:1::1", 0.0)
    assert limiter.allow("2001:db8:0:1::2", 0.0)
    assert not limiter.allow("[2001:db8:0:1:ffff::3]", 0.0)  # same /64
    assert limiter.allow("2001:db8:0:2::1", 0.0)  # another /64
    exact = SourceRateLimiter(rate=0.001, burst=1, ipv6_prefix=128)
    assert exact.allow("2001:db8::1", 0.0) and exact.allow("2001:db8::2", 0.0)


def test_ipv4_mapped_shares_bucket_with_ipv4() -> None:
    limiter = SourceRateLimiter(rate=0.001, burst=1)
    assert limiter.allow("192.0.2.1", 0.0)
    assert not limiter.allow("::ffff:192.0.2.1", 0.0)


def test_aggregate_limit_for_many_sources() -> None:
    limiter = SourceRateLimiter(rate=10.0, burst=10, total_rate=5.0, total_burst=5)
    results = [limiter.allow(f"192.0.2.{i}", 0.0) for i in range(20)]
    assert results == [True] * 5 + [False] * 15
    assert limiter.stats().dropped_total_limit == 15
    assert limiter.allow("192.0.2.100", 1.0)  # refilled


def test_cost_and_clock_going_backwards() -> None:
    limiter = SourceRateLimiter(rate=1.0, burst=4)
    assert limiter.allow("192.0.2.1", 10.0, cost=3)
    assert not limiter.allow("192.0.2.1", 10.0, cost=2)
    assert limiter.allow("192.0.2.1", 5.0)  # clock went back: the one token left, none created
    assert not limiter.allow("192.0.2.1", 5.0)
    assert limiter.allow("192.0.2.1", 11.0)


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        SourceRateLimiter(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst >= 1"):
        SourceRateLimiter(rate=1, burst=0.5)
    with pytest.raises(ValueError, match="max_sources"):
        SourceRateLimiter(rate=1, burst=1, max_sources=0)
    with pytest.raises(ValueError, match="ipv6_prefix"):
        SourceRateLimiter(rate=1, burst=1, ipv6_prefix=129)
    with pytest.raises(ValueError, match="total_rate"):
        SourceRateLimiter(rate=1, burst=1, total_rate=-1)
