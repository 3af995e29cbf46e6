"""Outputs of the planning calculators: recovery waves, journal sizing, RPO estimates."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Wave(BaseModel):
    """Machines that can be recovered in parallel: all they depend on is in earlier waves."""

    index: int = Field(ge=1)
    machines: list[str]


class RecoveryPlan(BaseModel):
    """The order a tenant (or a subset of its machines) is recovered in."""

    tenant: str
    waves: list[Wave]

    @property
    def machines(self) -> list[str]:
        return [name for wave in self.waves for name in wave.machines]

    def wave_of(self, machine: str) -> int:
        for wave in self.waves:
            if machine in wave.machines:
                return wave.index
        raise KeyError(machine)


class JournalSizing(BaseModel):
    """Journal capacity and target-side I/O for one journal-based protection group.

    Design guide I/O profile: every source write costs three target I/Os, one sequential
    write to the journal and one random read plus one random write on the replica volume.
    """

    group: str
    change_gb_per_day: float
    window_hours: float
    capacity_gb: float = Field(description="Journal capacity needed to keep the whole window")
    space_limit_gb: float | None = Field(default=None, description="Cap of a space-based policy")
    provisioned_gb: float = Field(description="What to provision: capacity, or the cap if lower")
    hours_covered: float = Field(description="Window the provisioned journal actually holds")
    source_write_iops: float
    iops_estimated: bool = Field(description="True when IOPS were derived from the change rate")
    journal_write_iops: float = Field(description="Sequential writes on the journal volume")
    replica_read_iops: float = Field(description="Random reads on the replica volume")
    replica_write_iops: float = Field(description="Random writes on the replica volume")
    target_iops: float = Field(description="All target-side I/Os: 3 per source write")
    journal_write_mbps: float = Field(description="Average sequential write throughput, megabits/s")


class RpoEstimate(BaseModel):
    """The smallest RPO a protection group can hold on its site's bandwidth."""

    group: str
    package: str
    target_seconds: float
    interval_seconds: float = Field(description="Replication cadence: CDP checkpoints or schedule")
    required_mbps: float = Field(
        description="Peak change rate of every group sharing the site link, after compression"
    )
    available_mbps: float = Field(description="Site bandwidth (at most 100 Mbps)")
    utilisation: float
    achievable_seconds: float | None = Field(description="None: replication cannot keep up")

    @property
    def achievable(self) -> bool:
        return (
            self.achievable_seconds is not None and self.achievable_seconds <= self.target_seconds
        )
