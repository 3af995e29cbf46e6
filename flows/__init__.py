"""Prefect flows: thin runbooks over tasks.

``FLOWS`` names every flow the product runs, for the CLI (``draas run <flow> --tenant T``),
deployments and docs; modules are imported on first use (importing Prefect is slow).
"""

from __future__ import annotations

import importlib
from typing import Any

#: flow name -> "module:function"
FLOWS: dict[str, str] = {
    "onboard-tenant": "flows.onboard:onboard_tenant",
    "preprovision-container": "flows.preprovision:preprovision_container",
    "setup-protection": "flows.protection:setup_protection",
    "watch-protection": "flows.watch:watch_protection",
    "failover": "flows.failover:failover",
    "rollback-failover": "flows.failover:rollback_failover",
    "failback": "flows.failback:failback",
    "offboard-tenant": "flows.offboard:offboard_tenant",
    "sweep-orphans": "flows.sweep:sweep_orphans",
    "check-readiness": "flows.readiness:check_readiness",
    "drill": "flows.drill:drill",
}

#: flows that take no tenant (they work across tenants)
TENANTLESS = frozenset({"sweep-orphans"})


def load_flow(name: str) -> Any:
    """The Prefect flow called ``name``; KeyError names the known flows."""
    try:
        module, _, attr = FLOWS[name].partition(":")
    except KeyError:
        raise KeyError(f"unknown flow {name!r}; known flows: {', '.join(sorted(FLOWS))}") from None
    return getattr(importlib.import_module(module), attr)
