"""Transfer destinations: parsing and the external-number policy (callcenter/transfer.py)."""

from __future__ import annotations

import pytest

from callcenter.transfer import (
    TransferError,
    TransferKind,
    TransferPolicy,
    TransferTarget,
    check_target,
    normalize_number,
    target_from_refer_user,
)

QUEUES = ("apa", "mdph_adulte", "accueil_general")
AGENTS = {"alice", "bob"}
POLICY = TransferPolicy(allowed_numbers=("3977", "+33321000000", "+33322*"))


def check(kind: str, value: object, policy: TransferPolicy = POLICY) -> TransferTarget:
    return check_target(
        kind,
        value,
        queues=QUEUES,
        agent_exists=AGENTS.__contains__,
        policy=policy,
        from_agent="alice",
    )


def test_queue_and_agent_targets() -> None:
    assert check("queue", "apa") == TransferTarget(TransferKind.QUEUE, "apa")
    assert check("agent", " bob ") == TransferTarget(TransferKind.AGENT, "bob")


@pytest.mark.parametrize(
    ("kind", "value", "status"),
    [
        ("queue", "cuisine", 404),
        ("agent", "carol", 404),
        ("agent", "alice", 400),
        ("queue", "", 400),
        ("queue", 3, 400),
        ("number", "pas un numéro", 400),
        ("number", "0612345678", 403),
        ("fax", "1", 400),
    ],
)
def test_refusals(kind: str, value: object, status: int) -> None:
    with pytest.raises(TransferError) as info:
        check(kind, value)
    assert info.value.status == status
    assert "0612345678" not in info.value.message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("3977", "3977"),
        ("03 21 00 00 00", "+33321000000"),
        ("+33 3 22 11 22 33", "+33322112233"),
        ("0322112233", "+33322112233"),
    ],
)
def test_allowed_numbers_exact_short_and_prefix(raw: str, expected: str) -> None:
    assert check("number", raw) == TransferTarget(TransferKind.NUMBER, expected)


def test_no_external_transfer_by_default() -> None:
    with pytest.raises(TransferError) as info:
        check("number", "3977", TransferPolicy())
    assert info.value.status == 403


def test_normalize_number_rejects_invalid_numbers() -> None:
    assert normalize_number("0012") is None
    assert normalize_number("01 23") is None
    assert normalize_number("+33 1 99 99 99 99 99") is None


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("mdph_adulte", TransferTarget(TransferKind.QUEUE, "mdph_adulte")),
        ("agent-bob", TransferTarget(TransferKind.AGENT, "bob")),
        ("bob", TransferTarget(TransferKind.AGENT, "bob")),
        ("3977", TransferTarget(TransferKind.NUMBER, "3977")),
        ("+33321000000", TransferTarget(TransferKind.NUMBER, "+33321000000")),
    ],
)
def test_refer_to_user_parts(user: str, expected: TransferTarget) -> None:
    assert (
        target_from_refer_user(
            user,
            queues=QUEUES,
            agent_exists=AGENTS.__contains__,
            policy=POLICY,
            from_agent="alice",
        )
        == expected
    )


def test_unknown_refer_to_user_is_404() -> None:
    with pytest.raises(TransferError) as info:
        target_from_refer_user(
            "service-inconnu", queues=QUEUES, agent_exists=AGENTS.__contains__, policy=POLICY
        )
    assert info.value.status == 404
