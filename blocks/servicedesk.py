"""Prefect block for the service desk (ServiceNow Table API) and plain notification channels."""

from __future__ import annotations

from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from draas.clients.servicedesk import Notifier, ServiceDeskClient


class ServiceDeskCredentials(Block):
    """Service desk instance (ServiceNow Table API) and where plain notifications go.

    Example:
        Open an incident once per correlation id:
        ```python
        from blocks.servicedesk import ServiceDeskCredentials
        from draas.clients.servicedesk import IncidentCreate

        credentials = ServiceDeskCredentials.load("BLOCK_NAME")
        with credentials.get_client() as client:
            client.ensure_incident(IncidentCreate(short_description="Drill failed", correlation_id="drill:acme:42"))
        ```
    """

    _block_type_name: ClassVar[str] = "Service Desk Credentials"
    _documentation_url: ClassVar[Any] = (
        "https://www.servicenow.com/docs/bundle/washingtondc-api-reference/page/integrate/inbound-rest/"
        "concept/c_TableAPI.html"
    )

    url: str = Field(description="Base URL of the instance, e.g. https://example.service-now.com.")
    username: str = Field(description="Integration user for HTTP Basic authentication.")
    password: SecretStr = Field(description="Password of the integration user.")
    verify_tls: bool = Field(default=True, description="Verify TLS certificates; turn off only for a lab.")
    timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for each request.")
    webhook_url: str | None = Field(default=None, description="URL that receives notifications as a JSON POST.")
    webhook_token: SecretStr | None = Field(default=None, description="Bearer token sent to the webhook, if any.")
    smtp_host: str | None = Field(default=None, description="SMTP relay for email notifications; unset turns email off.")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="Port of the SMTP relay.")
    smtp_starttls: bool = Field(default=False, description="Use STARTTLS on the SMTP session.")
    smtp_username: str | None = Field(default=None, description="SMTP login, if the relay requires one.")
    smtp_password: SecretStr | None = Field(default=None, description="Password of the SMTP login.")
    email_from: str = Field(default="draas@localhost", description="Sender address of notification emails.")
    email_to: list[str] = Field(default_factory=list, description="Recipients of notification emails.")

    def get_client(self) -> ServiceDeskClient:
        """A ServiceDeskClient for the instance; use it as a context manager."""
        return ServiceDeskClient(self.url, self.username, self.password, verify_tls=self.verify_tls,
                                 timeout=self.timeout)

    def get_notifier(self) -> Notifier:
        """A Notifier for the configured webhook and/or SMTP relay; use it as a context manager."""
        return Notifier(self.webhook_url, webhook_token=self.webhook_token, smtp_host=self.smtp_host,
                        smtp_port=self.smtp_port, smtp_starttls=self.smtp_starttls,
                        smtp_username=self.smtp_username, smtp_password=self.smtp_password,
                        email_from=self.email_from, email_to=self.email_to, verify_tls=self.verify_tls,
                        timeout=self.timeout)
