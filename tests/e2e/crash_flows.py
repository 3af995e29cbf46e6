"""A small flow of each crash policy, run in its own process so a test can SIGKILL it.

Run as ``python tests/e2e/crash_flows.py '<json parameters>'``. The flow takes its tenant
exclusively, records and creates a VLAN on agg-1 and a folder in the recovery vCenter through
the product's tasks (exactly as pre-provisioning does), writes its run id to ``ready_file``
and then works for ``hold_s`` seconds (long enough to be killed). It stands in for the
failover flow (crash policy *hold*) until that flow exists, and for any *undo* flow.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from prefect import flow

from draas.container import DeviceConfig
from draas.site import Site
from flows.runbook import CrashPolicy, RunContext
from tasks.container import VCenterObjectPlan, record_device_config, record_vcenter_object
from tasks.network import push_device_config
from tasks.vcenter import create_folder

FLOW_NAME = "crash-policy-test"


@flow(name=FLOW_NAME)
def crash_policy_test(tenant: str, policy: str, ready_file: str, vlan: int | None = None,
                      folder: str | None = None, hold_s: float = 600.0, wait_s: float = 0.0) -> str:
    site = Site.for_config_dir(None)
    run = RunContext(FLOW_NAME, action="crash_policy_test", tenant=tenant, requested_by="ops@provider.example",
                     channel="test", policy=CrashPolicy(policy), exclusive=True, wait_s=wait_s, site=site,
                     parameters={"tenant": tenant, "policy": policy})
    with run.started(total_steps=3):
        if vlan is not None:
            cfg = DeviceConfig(device="agg-1", context=None, role="aggregation", platform="cisco_nxos",
                               template="crash-test", lines=[f"vlan {vlan}", f" name {tenant}-crash"])
            record_device_config(run.store, tenant, run.run_id, cfg)
            run.step(push_device_config(site.device_block("agg-1"), config=cfg.text))
        if folder is not None:
            record_vcenter_object(run.store, tenant, run.run_id, VCenterObjectPlan(kind="folder", name=folder))
            run.step(create_folder(site.vcenter_block("recovery"), folder))
        Path(ready_file).write_text(json.dumps({"run_id": run.run_id, "at": time.time()}))
        time.sleep(hold_s)
    return run.run_id


if __name__ == "__main__":
    crash_policy_test(**json.loads(sys.argv[1]))
