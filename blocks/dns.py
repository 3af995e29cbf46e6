"""Prefect block for a zone's primary DNS server and the TSIG key allowed to update it."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from draas.clients.dns import DnsClient


class DnsServerCredentials(Block):
    """Primary DNS server of the tenants' zones and the TSIG key for RFC 2136 dynamic updates.

    Example:
        Replace or create a record:
        ```python
        from blocks.dns import DnsServerCredentials
        from draas.clients.dns import DnsRecord

        credentials = DnsServerCredentials.load("BLOCK_NAME")
        with credentials.get_client() as client:
            client.upsert(DnsRecord(zone="acme.example.com", name="www", rtype="A", values=["10.10.3.40"]))
        ```
    """

    _block_type_name: ClassVar[str] = "DNS Server Credentials"
    _documentation_url: ClassVar[Any] = "https://datatracker.ietf.org/doc/html/rfc2136"

    server: str = Field(description="Address (IP or host name) of the zones' primary DNS server.")
    port: int = Field(default=53, ge=1, le=65535, description="DNS port of the server (UDP and TCP).")
    tsig_key_name: str = Field(description="Name of the TSIG key as configured on the server.")
    tsig_secret: SecretStr = Field(description="Base64 secret of the TSIG key.")
    tsig_algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"] = Field(
        default="hmac-sha256", description="HMAC algorithm of the TSIG key.")
    timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for each DNS answer.")

    def get_client(self) -> DnsClient:
        """A DnsClient for this server; use it as a context manager."""
        return DnsClient(self.server, self.port, tsig_key_name=self.tsig_key_name,
                         tsig_secret=self.tsig_secret, tsig_algorithm=self.tsig_algorithm,
                         timeout=self.timeout)
