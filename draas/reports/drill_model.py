"""What a DR Test Report is made of: the drill flow fills it, the report module renders it.

Pure data (pydantic), no I/O. Times are timezone-aware UTC; durations are seconds. Offsets
(``*_at_s``) count from the start of the recovery (the engine's start), so a reader can draw
the timeline without clocks. :func:`judge` turns the facts into the verdict against the
service definition's success criteria.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Verdict = Literal["PASS", "PASS WITH WARNINGS", "FAIL"]

#: The success criteria of the service definition, as the report states them.
SUCCESS_CRITERIA = [
    "Every protected machine in the scope of the test (the unchanged elements) is recovered in the isolated "
    "bubble and passes its verification checks.",
    "Isolation is proven before any recovered machine is powered on; no production network carries a test machine.",
    "Every object created for the test is removed afterwards (zero left).",
    "Achieved RTO and RPO are measured and compared with the tenant's targets.",
]


class CheckEvidence(BaseModel):
    """One verification check of one VM: what was probed, what came back, when."""

    vm: str
    check: str
    type: str
    status: Literal["passed", "failed", "not_run"]
    target: str | None = Field(default=None, description="ip:port probed, as the tenant knows it")
    detail: str = Field(description="what came back")
    attempts: int = 0
    started: datetime
    finished: datetime


class StepEvidence(BaseModel):
    """One step of one VM (move NIC, re-IP, power on, guest up, check...)."""

    step: str
    target: str = ""
    started: datetime
    finished: datetime | None = None
    seconds: float | None = None
    status: Literal["ok", "failed", "skipped"] = "ok"
    error: str | None = None


class VmRecord(BaseModel):
    machine: str
    vm: str = Field(description="the test VM's name in the recovery vCenter")
    wave: int
    depends_on: list[str] = Field(default_factory=list)
    status: Literal["verified", "failed", "optional_failed", "not_started"]
    optional: bool = False
    error: str | None = None
    powered_on_at_s: float | None = None
    guest_up_at_s: float | None = None
    verified_at_s: float | None = None
    steps: list[StepEvidence] = Field(default_factory=list)
    checks: list[CheckEvidence] = Field(default_factory=list)
    networks: list[str] = Field(default_factory=list, description="port groups its NICs were on during the test")


class IsolationCheck(BaseModel):
    name: str
    passed: bool
    detail: str
    checked_at: datetime


class IsolationEvidence(BaseModel):
    """What was checked before any power-on, and whether isolation was proven."""

    proven: bool
    checks: list[IsolationCheck] = Field(default_factory=list)
    nic_backings_ok: bool | None = Field(default=None, description="during the test no NIC of a test VM was "
                                                                   "on a production port group (None: not checked)")


class TeardownEvidence(BaseModel):
    created: list[str] = Field(default_factory=list, description="every object the drill created (ledger)")
    removed: list[str] = Field(default_factory=list)
    leftovers: list[str] = Field(default_factory=list, description="objects still present after teardown")
    verified_absent: bool = False


class RecoveryPointInfo(BaseModel):
    group: str
    checkpoint_id: str
    time: datetime
    tag: str | None = None
    consistency: Literal["crash", "application"]
    package: str = ""
    replication_during_test: Literal["running", "paused and resumed"] = "running"


class ChangeInfo(BaseModel):
    kind: str
    subject: str
    description: str
    detected_at: datetime


class HistoryPoint(BaseModel):
    run_id: str
    started: datetime
    verdict: Verdict
    rto_s: float | None = None
    rpo_s: float | None = None


class Person(BaseModel):
    name: str
    email: str
    roles: list[str] = Field(default_factory=list)


class DrillReportData(BaseModel):
    """Everything a DR Test Report shows; rendering it is deterministic for the same data."""

    tenant: str
    tenant_name: str
    run_id: str
    started: datetime
    finished: datetime
    requested_by: str
    channel: str
    approved_by: str | None = None
    ticket: str | None = None
    scope: list[str] = Field(description="protection groups tested")
    verdict: Verdict
    cause: str | None = Field(default=None, description="why the drill failed (FAIL)")
    warnings: list[str] = Field(default_factory=list)
    rto_s: float | None = Field(default=None, description="request accepted -> all VMs verified, approval excluded")
    rto_target_s: float
    machine_s: float | None = Field(default=None, description="recovery engine time (machine time)")
    approval_wait_s: float = 0.0
    rpo_s: float | None = Field(default=None, description="request time - recovery point time (worst group)")
    rpo_target_s: float
    recovery_points: list[RecoveryPointInfo] = Field(default_factory=list)
    vms: list[VmRecord] = Field(default_factory=list)
    isolation: IsolationEvidence
    teardown: TeardownEvidence
    untested_changes: list[ChangeInfo] = Field(default_factory=list)
    history: list[HistoryPoint] = Field(default_factory=list, description="earlier drills of the tenant, oldest first")
    authorised_persons: list[Person] = Field(default_factory=list)
    success_criteria: list[str] = Field(default_factory=lambda: list(SUCCESS_CRITERIA))
    retest_scheduled_for: datetime | None = None
    incident: str | None = None


def judge(data: DrillReportData) -> tuple[Verdict, str | None, list[str]]:
    """The verdict, the cause of a FAIL, and the warnings, from the facts in ``data``.

    FAIL: isolation not proven, a required VM not verified, a drill object left after teardown,
    or a cause already set (the replication manager's test failed, the run was cancelled...).
    PASS WITH WARNINGS: an optional VM failed, a check could not run, RTO or RPO over target.
    """
    warnings: list[str] = []
    causes: list[str] = [data.cause] if data.cause else []
    if not data.isolation.proven:
        causes.append("isolation was not proven: " + ("; ".join(c.detail for c in data.isolation.checks
                                                                  if not c.passed) or "not checked"))
    if data.isolation.nic_backings_ok is False:
        causes.append("a test VM was seen on a production port group")
    failed = [v for v in data.vms if v.status in ("failed", "not_started") and not v.optional]
    if failed:
        causes.append("not verified: " + ", ".join(f"{v.vm} ({v.error or v.status})" for v in failed))
    if data.teardown.leftovers:
        causes.append("left after teardown: " + ", ".join(data.teardown.leftovers))
    for v in data.vms:
        if v.status == "optional_failed":
            warnings.append(f"optional machine {v.vm} failed: {v.error}")
        for c in v.checks:
            if c.status == "not_run":
                warnings.append(f"{c.vm} {c.check} not run: {c.detail}")
    if data.rto_s is not None and data.rto_s > data.rto_target_s:
        warnings.append(f"RTO {data.rto_s:.0f} s over the target of {data.rto_target_s:.0f} s")
    if data.rpo_s is not None and data.rpo_s > data.rpo_target_s:
        warnings.append(f"RPO {data.rpo_s:.0f} s over the target of {data.rpo_target_s:.0f} s")
    if causes:
        return "FAIL", "; ".join(causes), warnings
    return ("PASS WITH WARNINGS" if warnings else "PASS"), None, warnings
