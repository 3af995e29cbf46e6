"""A sample tenant as the DR flows need it: onboarded, its container built, its groups protected."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from draas.site import Site


@contextmanager
def protected_tenant(tenant: str, output_dir: Path, *, sync_timeout_s: float = 120,
                     before_offboard: Callable[[], None] | None = None) -> Iterator[Path]:
    """Onboard, pre-provision and protect ``tenant`` (in-process flows); offboard it afterwards, whatever
    happened (``before_offboard`` first removes what no ledger holds, e.g. committed recoveries)."""
    from flows.offboard import offboard_tenant
    from flows.onboard import onboard_tenant
    from flows.preprovision import preprovision_container
    from flows.protection import setup_protection

    onboard_tenant(tenant, output_dir=str(output_dir))
    try:
        preprovision_container(tenant)
        setup_protection(tenant, sync_timeout_s=sync_timeout_s)
        yield output_dir
    finally:
        if before_offboard is not None:
            before_offboard()
        offboard_tenant(tenant)


def destroy_recovered(site: Site, tenant: str, machines: Collection[str]) -> None:
    """Remove ``tenant``'s committed recoveries of ``machines`` from the recovery vCenter: they belong to no
    ledger, so offboarding would not remove them."""
    with site.vcenter_block("recovery").get_client() as vc:
        for vm in vc.list_vms(tenant):
            if vm.name in machines:
                vc.destroy_vm(f"{tenant}/{vm.name}")
