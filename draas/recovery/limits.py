"""The recovery engine's caps, kept apart so the site file can name them without importing the engine."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EngineLimits(BaseModel):
    """The engine's concurrency caps and per-VM patience (the site file's ``recovery:`` section)."""

    model_config = ConfigDict(extra="forbid")

    vcenter_ops: int = Field(default=16, ge=1, description="vCenter calls in flight at once")
    boots_per_host: int = Field(default=32, ge=1, description="VMs booting at once on one ESXi host")
    check_workers: int = Field(default=32, ge=1, description="checks running at once")
    boot_timeout_s: float = Field(default=900.0, gt=0, description="power-on to guest up")
    check_timeout_s: float | None = Field(default=None, gt=0, description="cap of each check's own timeout")
    check_retries: int = Field(default=1, ge=0, description="re-runs of a VM's failing checks")
    check_poll_s: float = Field(default=1.0, gt=0)
    progress_every_s: float = Field(default=1.0, ge=0)
