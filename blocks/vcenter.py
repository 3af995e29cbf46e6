"""Prefect block for a vCenter Server endpoint and the account the product uses on it."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from draas.clients.vcenter import VCenterClient


class VCenterCredentials(Block):
    """A vCenter Server (SOAP API) and the service account the orchestrator logs in with.

    Example:
        Clone a VM and power it on:
        ```python
        from blocks.vcenter import VCenterCredentials

        credentials = VCenterCredentials.load("BLOCK_NAME")
        with credentials.get_client() as client:
            client.clone_vm("acme/acme-web01", "acme-web01-test", power_on=True)
        ```
    """

    _block_type_name: ClassVar[str] = "vCenter Credentials"
    _documentation_url: ClassVar[Any] = "https://developer.broadcom.com/xapis/vsphere-web-services-api/latest/"

    host: str = Field(description="Address (host name or IP) of the vCenter Server.")
    port: int = Field(default=443, ge=1, le=65535, description="Port of the vCenter SDK endpoint.")
    username: str = Field(description="SSO user the orchestrator logs in as, e.g. svc-draas@vsphere.local.")
    password: SecretStr = Field(description="Password of that user.")
    verify_tls: bool = Field(default=True, description="Verify the vCenter TLS certificate (https only).")
    protocol: Literal["https", "http"] = Field(
        default="https", description="https for vCenter; http only for a local simulator.")
    timeout: float = Field(default=60.0, gt=0, description="Socket timeout of each SOAP call, in seconds.")
    datacenter: str | None = Field(
        default=None, description="Datacenter to work in; empty means the vCenter's only datacenter.")

    def get_client(self) -> VCenterClient:
        """A VCenterClient for this vCenter; use it as a context manager."""
        return VCenterClient(self.host, self.port, self.username, self.password, protocol=self.protocol,
                             verify_tls=self.verify_tls, timeout=self.timeout, datacenter=self.datacenter)
