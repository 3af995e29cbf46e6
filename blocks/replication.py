"""Prefect block for the replication manager (Zerto Virtual Manager, REST API v1)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from draas.clients.replication.zerto import ZertoClient


class ZertoCredentials(Block):
    """A Zerto Virtual Manager (ZVM) at the protected site and the API user the orchestrator uses.

    Example:
        Protect two VMs and wait for the initial sync:
        ```python
        from blocks.replication import ZertoCredentials
        from draas.clients.replication import GroupState, ProtectionSpec

        credentials = ZertoCredentials.load("BLOCK_NAME")
        with credentials.get_client() as zvm:
            result = zvm.protect(ProtectionSpec(name="acme-gold", vms=["acme-app01", "acme-web01"]))
            zvm.wait_for_state(result.group.id, [GroupState.MEETING_SLA])
        ```
    """

    _block_type_name: ClassVar[str] = "Zerto Credentials"
    _documentation_url: ClassVar[Any] = "https://help.zerto.com/bundle/API.ZVR.HTML/page/Zerto_REST_API.htm"

    url: str = Field(description="Base URL of the ZVM REST API, e.g. https://zvm.example.com:9669.")
    username: str = Field(description="ZVM API user (vCenter user for session auth, Keycloak user for 10.x).")
    password: SecretStr = Field(description="Password of the API user.")
    auth_style: Literal["session", "keycloak"] = Field(
        default="session",
        description="session: POST /v1/session/add (ZVM on Windows, 9.x); keycloak: bearer token (ZVM appliance 10.x).",
    )
    keycloak_client_id: str = Field(default="zerto-client", description="Keycloak client id for the password grant.")
    verify_tls: bool = Field(default=True, description="Verify the ZVM's TLS certificate; turn off only for a lab.")
    connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for a connection.")
    timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for each API answer.")
    task_poll_interval: float = Field(
        default=1.0, gt=0, description="First pause between task polls, in seconds (it grows up to 5 s).")

    def get_client(self) -> ZertoClient:
        """A client for this ZVM: a ``ReplicationProvider`` (``ZertoClient``); use it as a context manager.

        Tasks open it through ``draas.sessions.session(block)`` so one flow run logs in once.
        """
        return ZertoClient(self.url, self.username, self.password, auth_style=self.auth_style,
                           keycloak_client_id=self.keycloak_client_id, verify_tls=self.verify_tls,
                           timeout_s=self.timeout, connect_timeout_s=self.connect_timeout,
                           poll_interval_s=self.task_poll_interval)
