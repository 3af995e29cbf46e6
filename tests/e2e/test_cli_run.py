"""``draas run <flow> --tenant T [--param k=v]``: parameters typed, exit 0 only when Completed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from draas.cli import app
from draas.state.store import StateStore


@pytest.fixture
def store(lab, prefect_harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateStore:
    monkeypatch.setenv("DRAAS_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    return StateStore()


def test_a_completed_run_exits_0_with_typed_parameters(store: StateStore, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "onboard-tenant", "--tenant", "initech",
                                      "--param", f"output_dir={tmp_path / 'out'}",
                                      "--param", "requested_by=ops@provider.example"])
    assert result.exit_code == 0, result.output
    assert "onboard-tenant: Completed" in result.output
    (run,) = store.runs(tenant_id="initech")
    assert (run.flow, run.state) == ("onboard-tenant", "Completed")
    assert (tmp_path / "out" / "initech" / "dr-plan.md").is_file()
    accepted = [a for a in store.audit_log() if a.outcome == "accepted"]
    assert accepted[0].channel == "cli" and accepted[0].actor == "ops@provider.example"


def test_a_refused_run_exits_1(store: StateStore) -> None:
    result = CliRunner().invoke(app, ["run", "offboard-tenant", "--tenant", "nosuchtenant"])
    assert result.exit_code == 1, result.output
    assert "UnknownTenant" in result.output
    assert [a.outcome for a in store.audit_log()] == ["refused"]


@pytest.mark.parametrize(("args", "message"), [
    (["run", "no-such-flow", "--tenant", "acme"], "unknown flow 'no-such-flow'"),
    (["run", "preprovision-container", "--tenant", "acme", "--param", "colour=blue"],
     "--param colour: the flow takes no such parameter"),
    (["run", "preprovision-container", "--tenant", "acme", "--param", "dry_run=perhaps"],
     "--param dry_run='perhaps'"),
    (["run", "preprovision-container"], "needs --tenant"),
])
def test_bad_command_lines_are_refused_audited_and_run_nothing(store: StateStore, args: list[str],
                                                               message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    (entry,) = store.audit_log()
    assert entry.outcome == "refused" and message in entry.detail["reason"] and entry.channel == "cli"
    assert store.runs() == []
