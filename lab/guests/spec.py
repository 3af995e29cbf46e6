"""What a lab guest runs: the services declared in configs/lab.yaml, as they travel with a VM.

Seeding (``lab.vcsim``) stores a VM's guest content in its extraConfig under
``guestinfo.lab.*`` keys, like data a real guest OS carries on its disks: the address the
OS is configured with (``guestinfo.lab.ip``) and the services it runs
(``guestinfo.lab.services``, JSON). The lab's replication manager copies every
``guestinfo.lab.*`` key to the VMs it recovers, so a recovered VM boots with the same
content; vcsim takes the boot address from ``guestinfo.lab.ip`` and ``lab.guests`` serves
the services.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Prefix of every extraConfig key that is part of the guest's content.
PREFIX = "guestinfo.lab."
IP_KEY = PREFIX + "ip"
SERVICES_KEY = PREFIX + "services"


class Service(BaseModel):
    """One service of a guest: a TCP listener, or an HTTP(S) server answering one path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["tcp", "http"]
    port: int = Field(ge=1, le=65535)
    scheme: Literal["http", "https"] = "http"
    path: str = Field(default="/", pattern=r"^/")
    status: int = Field(default=200, ge=100, le=599)
    body: str = ""


def parse_services(raw: Any, where: str) -> list[Service]:
    """The ``services`` of a VM in the lab config; ``ValueError`` naming ``where`` and the field."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{where}.services: must be a list")
    out: list[Service] = []
    for i, item in enumerate(raw):
        try:
            out.append(Service.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{where}.services[{i}].{field}: {first['msg']}") from None
    return out


def guest_extra_config(ip: str | None, services: list[Service]) -> dict[str, str]:
    """The ``guestinfo.lab.*`` extraConfig entries of a guest with ``ip`` and ``services``."""
    extra: dict[str, str] = {}
    if ip:
        extra[IP_KEY] = str(ip)
    if services:
        extra[SERVICES_KEY] = json.dumps([s.model_dump() for s in services], separators=(",", ":"))
    return extra


def services_from_extra(extra: dict[str, str]) -> list[Service]:
    """The services recorded in a VM's extraConfig (none when absent or unreadable)."""
    raw = extra.get(SERVICES_KEY)
    if not raw:
        return []
    try:
        return [Service.model_validate(item) for item in json.loads(raw)]
    except (ValueError, TypeError):
        return []
