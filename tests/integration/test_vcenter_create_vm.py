"""create_vm: a new appliance VM on a distributed port group, idempotent."""

from __future__ import annotations

from draas.models.vcenter import Marks
from draas.site import Site


def test_create_vm_on_dvportgroup_is_idempotent(lab) -> None:
    block = Site.load().vcenter_block("recovery")
    with block.get_client() as vc:
        vc.create_folder("t-create-vm")
        vc.create_dvportgroup("t-create-vm-pg", 3901, dvswitch="dvs-recovery")
        try:
            first = vc.create_vm("t-appliance", folder="t-create-vm", network="t-create-vm-pg", guest_os="windows",
                                 cpus=4, memory_mb=8192, power_on=True,
                                 marks=Marks(tenant="t", purpose="master-target", run_id="run-1"))
            second = vc.create_vm("t-appliance", folder="t-create-vm", network="t-create-vm-pg", guest_os="windows")
            vm = vc.get_vm("t-create-vm/t-appliance")
            same_name = [v for v in vc.list_vms("t-create-vm") if v.name == "t-appliance"]
        finally:
            vc.destroy_vm("t-create-vm/t-appliance")
            vc.destroy("dvportgroup", "t-create-vm-pg")
            vc.destroy("folder", "t-create-vm")
    assert first.changed and not second.changed
    assert len(same_name) == 1
    assert vm.guest_id and vm.guest_id.startswith("windows")
    assert (vm.cpus, vm.memory_mb, vm.power_state) == (4, 8192, "poweredOn")
    assert [n.network for n in vm.nics] == ["t-create-vm-pg"]
    assert vm.attributes["draas.purpose"] == "master-target"
