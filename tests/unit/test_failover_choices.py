"""The failover's recovery point choice: parsing the parameter and picking the checkpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from draas.clients.replication import RecoveryPoint
from flows.failover import FailoverRefused, RecoveryPointChoice, choose_point

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
POINTS = [
    RecoveryPoint(id="1", timestamp=T0, app_consistent=True, tag="app-consistent"),
    RecoveryPoint(id="2", timestamp=T0 + timedelta(minutes=5)),
    RecoveryPoint(id="3", timestamp=T0 + timedelta(minutes=10), tag="quarter-close"),
    RecoveryPoint(id="4", timestamp=T0 + timedelta(minutes=15), app_consistent=True),
    RecoveryPoint(id="5", timestamp=T0 + timedelta(minutes=20)),
]


@pytest.mark.parametrize(("text", "expected"), [
    ("latest", "5"),
    ("latest-app-consistent", "4"),
    ("bookmark:quarter-close", "3"),
    ("2026-12-03T08:12:00Z", "3"),
    ("2026-12-03T08:05:00+00:00", "2"),
])
def test_each_choice_names_the_expected_checkpoint(text: str, expected: str) -> None:
    choice = RecoveryPointChoice.model_validate(text)
    assert choose_point(POINTS, choice, "g").id == expected


def test_a_choice_the_journal_cannot_satisfy_is_refused_naming_the_range() -> None:
    with pytest.raises(FailoverRefused, match="no bookmark month-end.*5 checkpoints"):
        choose_point(POINTS, RecoveryPointChoice(kind="bookmark", bookmark="month-end"), "g")
    with pytest.raises(FailoverRefused, match="at or before"):
        choose_point(POINTS, RecoveryPointChoice(kind="at", at=T0 - timedelta(hours=1)), "g")
    with pytest.raises(FailoverRefused, match="no recovery point"):
        choose_point([], RecoveryPointChoice(), "g")


def test_incomplete_choices_are_invalid() -> None:
    with pytest.raises(ValidationError, match="bookmark"):
        RecoveryPointChoice(kind="bookmark")
    with pytest.raises(ValidationError):
        RecoveryPointChoice.model_validate("not a time")
    naive = RecoveryPointChoice(kind="at", at=datetime(2026, 12, 3, 8, 0))  # noqa: DTZ001 - naive on purpose
    assert naive.at is not None and naive.at.tzinfo is UTC


def test_groups_are_all_by_default_in_config_order_and_unknown_ones_are_refused() -> None:
    from draas.validation import load_tenant
    from flows.drill import DrillRefused
    from flows.failover import select_groups

    acme = load_tenant("acme")
    assert select_groups(acme, None) == ["acme-windows", "acme-linux"]
    assert select_groups(acme, ["acme-linux", "acme-windows"]) == ["acme-windows", "acme-linux"]
    with pytest.raises(FailoverRefused, match="groups: nope not among acme's"):
        select_groups(acme, ["nope"])
    with pytest.raises(DrillRefused, match="groups: nope"):
        select_groups(acme, ["nope"], DrillRefused)
