"""What the end-to-end tests read from the systems to compare before and after (the tests' eyes).

Independent of the product's flows: BIND over plain dnspython queries, every device and ASA
context's running and startup config over SSH (the product's Cisco client, read-only), and the
recovery vCenter's VMs, switches and port groups (pyVmomi through the product's client, read-only).
"""

from __future__ import annotations

from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from pyVmomi import vim

from draas.site import Site


def served(site: Site, fqdn: str, rtype: str) -> tuple[str, int | None, list[str]]:
    """What BIND answers (rcode, TTL, values), read with plain dnspython, independent of the product."""
    block = site.dns_block()
    answer = dns.query.udp(dns.message.make_query(fqdn, rtype), block.server, port=block.port, timeout=3)
    wanted = dns.rdatatype.from_text(rtype)
    rrsets = [r for r in answer.answer if r.rdtype == wanted]
    ttl = rrsets[0].ttl if rrsets else None
    return dns.rcode.to_text(answer.rcode()), ttl, sorted(rd.to_text() for r in rrsets for rd in r)


def config_lines(text: str) -> list[str]:
    """A config as printed, without comment and banner lines (NX-OS stamps the time in them)."""
    return [line.rstrip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("!", ":"))]


def device_snapshot(site: Site) -> dict[tuple[str, str | None, str], list[str]]:
    """Running and startup config of every device and ASA context, over SSH."""
    snap: dict[tuple[str, str | None, str], list[str]] = {}
    for device in site.devices:
        with site.device_block(device.name).get_client() as client:
            contexts: list[str | None] = [None]
            if device.multi_context:
                system = client.running_tree("system")
                contexts = ["system"] + [top.text.split()[1] for top in system.children
                                         if top.text.startswith("context ")]
            for ctx in contexts:
                snap[(device.name, ctx, "running")] = config_lines(client.running_config(ctx))
                snap[(device.name, ctx, "startup")] = config_lines(client.show("show startup-config", ctx))
    return snap


def running(site: Site, device: str, context: str | None) -> str:
    with site.device_block(device).get_client() as client:
        return client.running_config(context)


def _all(content: Any, vimtype: Any) -> list[Any]:
    view = content.viewManager.CreateContainerView(content.rootFolder, [vimtype], True)
    try:
        return list(view.view)
    finally:
        view.Destroy()


def vcenter_snapshot(site: Site) -> dict[str, Any]:
    """The recovery vCenter's VMs (power state, networks), distributed switches and their port groups' VLANs."""
    with site.vcenter_block("recovery").get_client() as vc:
        content = vc.content
        vms = {vm.name: (vm.runtime.powerState, sorted(n.name for n in vm.network))
               for vm in _all(content, vim.VirtualMachine)}
        switches: dict[str, dict[str, Any]] = {}
        for dvs in _all(content, vim.DistributedVirtualSwitch):
            pgs = {}
            for pg in dvs.portgroup:
                vlan = getattr(getattr(pg.config.defaultPortConfig, "vlan", None), "vlanId", None)
                pgs[pg.name] = vlan if isinstance(vlan, int) else str(vlan)
            switches[dvs.name] = pgs
    return {"vms": vms, "switches": switches}
