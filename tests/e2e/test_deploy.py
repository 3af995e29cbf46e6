"""draas deploy against the session's Prefect server: <flow>/<tenant> deployments, typed forms, drill schedules."""

from __future__ import annotations

import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from dateutil.rrule import rrulestr
from prefect import get_client
from typer.testing import CliRunner

from deployments.deploy import deploy, existing, plan_deployments, write_prefect_yaml
from draas.cli import app
from draas.validation import load_tenant, load_tenants
from flows import FLOWS, TENANTLESS

POOL = "draas-test"


def test_deploy_creates_updates_and_removes_per_tenant_deployments(prefect_harness: None, tmp_path: Path) -> None:
    tenants = load_tenants()
    specs = plan_deployments(tenants, FLOWS, TENANTLESS)

    dry = CliRunner().invoke(app, ["deploy", "--work-pool", POOL, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would create failover/acme" in dry.output and not existing()

    changes = deploy(specs, POOL)
    assert sorted(changes["create"]) == sorted(s.full_name for s in specs)
    found = existing()
    assert set(found) == {s.full_name for s in specs}
    assert {f"{f}/{t.id}" for f in FLOWS if f not in TENANTLESS for t in tenants} <= set(found)

    with get_client(sync_client=True) as client:
        failover = client.read_deployment(found["failover/acme"].id)
        props = failover.parameter_openapi_schema["properties"]
        assert {"tenant", "requested_by", "mode", "recovery_point"} <= set(props)
        assert failover.parameters == {"tenant": "acme"} and failover.work_pool_name == POOL
        assert failover.concurrency_limit == 1 or failover.global_concurrency_limit is not None
        # The worker starts the engine directly (no workspace supervisor process first), in the project.
        assert failover.job_variables["working_dir"] == str(Path(__file__).resolve().parents[2])
        assert shlex.split(failover.job_variables["command"]) == [sys.executable, "-m", "prefect.engine"]
        assert set(failover.job_variables) == {"working_dir", "command"}
        for tenant in tenants:
            if "drill" not in FLOWS:
                break
            drill = client.read_deployment(found[f"drill/{tenant.id}"].id)
            zone = ZoneInfo(tenant.timezone)
            starts = sorted(rrulestr(s.schedule.rrule)[0].replace(tzinfo=zone) for s in drill.schedules)
            assert len(starts) == 2 and starts[0] > datetime.now(UTC)
            months = (starts[1].year - starts[0].year) * 12 + starts[1].month - starts[0].month
            assert 5 <= months <= 7
            assert all(tenant.business_hours.contains(s.replace(tzinfo=None), tenant.drills.duration) for s in starts)
        watch = client.read_deployment(found["watch-protection/globex"].id)
        assert [s.schedule.interval.total_seconds() for s in watch.schedules] == [300]

    # Re-deploying updates in place; a tenant gone from the configs loses its deployments.
    fewer = plan_deployments([t for t in tenants if t.id != "initech"], FLOWS, TENANTLESS)
    changes = deploy(fewer, POOL)
    assert changes["create"] == [] and all(n.endswith("/initech") for n in changes["delete"]) and changes["delete"]
    assert not [n for n in existing() if n.endswith("/initech")]

    written = write_prefect_yaml(fewer, POOL, tmp_path / "prefect.yaml")
    doc = yaml.safe_load(written.read_text())
    assert {d["name"] for d in doc["deployments"]} == {s.name for s in fewer}
    assert any(d["entrypoint"] == "flows/failover.py:failover" for d in doc["deployments"])
    with get_client(sync_client=True) as client:
        for deployment in existing().values():
            client.delete_deployment(deployment.id)
    assert load_tenant("acme").id == "acme"
