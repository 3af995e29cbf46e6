"""Prefect block for one Cisco device reached over SSH (NX-OS, ASA, IOS-XE)."""

from __future__ import annotations

from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from draas.clients.cisco import CiscoClient, CiscoDeviceParams, ConnectionFactory, Platform


class CiscoDeviceCredentials(Block):
    """SSH endpoint and credentials of one Cisco device of the recovery site.

    Example:
        Push a rendered config block, then save:
        ```python
        from blocks.cisco import CiscoDeviceCredentials

        device = CiscoDeviceCredentials.load("BLOCK_NAME")
        with device.get_client() as client:
            change = client.apply("vlan 1011\\n  name acme-web\\n")
            print(change.diff)
        ```
    """

    _block_type_name: ClassVar[str] = "Cisco Device Credentials"
    _documentation_url: ClassVar[Any] = "https://ktbyers.github.io/netmiko/docs/netmiko/index.html"

    device_name: str = Field(default="", description="Name of the device in the inventory (used in messages).")
    host: str = Field(description="Management address (IP or host name) of the device.")
    port: int = Field(default=22, ge=1, le=65535, description="SSH port of the device.")
    platform: Platform = Field(description="Device OS as a netmiko device_type: cisco_nxos, cisco_asa or cisco_ios.")
    username: str = Field(description="SSH login user.")
    password: SecretStr = Field(description="SSH login password.")
    enable_secret: SecretStr | None = Field(default=None, description="Enable secret (IOS and ASA privileged mode).")
    conn_timeout: float = Field(default=10.0, gt=0, description="Seconds to open the SSH session and log in.")
    read_timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for the output of each command.")
    verify_host_key: bool = Field(
        default=True, description="Refuse devices whose SSH host key is not in known_hosts (like TLS verification).")
    known_hosts_file: str | None = Field(default=None, description="Extra known_hosts file with the devices' keys.")

    def params(self) -> CiscoDeviceParams:
        return CiscoDeviceParams(
            name=self.device_name, host=self.host, port=self.port, platform=self.platform,
            username=self.username, password=self.password, secret=self.enable_secret,
            conn_timeout=self.conn_timeout, read_timeout=self.read_timeout,
            verify_host_key=self.verify_host_key, known_hosts_file=self.known_hosts_file,
        )

    def get_client(self, connection_factory: ConnectionFactory | None = None) -> CiscoClient:
        """A CiscoClient for this device; use it as a context manager."""
        return CiscoClient(self.params(), connection_factory=connection_factory)
