"""Cisco adapter: transactional config changes over SSH with netmiko (NX-OS, ASA incl. contexts, IOS-XE).

A change runs like napalm's merge: render the candidate (jinja2, ``StrictUndefined``) →
read the running config (``show running-config``, inside the ASA context after
``changeto context``) → compute the diff as hierarchical lines → push only the missing
lines (or ``no`` lines for a removal), one by one, each checked for a device error →
save. ``dry_run=True`` returns the diff and pushes nothing. When a line is rejected or
the session drops half way, the client puts the touched blocks back as they were
before the push (removing what it added, re-adding what it replaced) and raises.

Exceptions::

    CiscoError (DraasError)
    ├── CiscoTransientError (TransientError)    connect timeout, SSH session lost, read timeout
    ├── CiscoAuthFailed (PermanentError)        login, enable secret or host key refused
    ├── CiscoCommandRejected (PermanentError)   the device printed an error (% Invalid input, ERROR:)
    ├── CiscoConfigPushFailed (PermanentError)  a push failed half way; what it pushed was reverted
    │   └── CiscoPushInterrupted (also CiscoTransientError): the session dropped; safe to retry
    └── CiscoTemplateError (PermanentError)     a device template does not render

Multi-context ASA: an SSH session reaches the admin context's management address and lands
in ``host/admin>``. The client knows where it landed (from the prompt) and where it is: it
says ``changeto system`` before touching the system execution space (creating or removing
contexts) and ``changeto context X`` before a tenant context's config; ``context=None``
means the context the session landed in.

One client keeps one SSH session for as many operations as its owner likes (a whole flow
run, see ``draas/sessions.py``); it runs one command at a time, so it is not thread-safe. A
session that died (device timeout, transient error) is opened again on the next call.

No message, repr or diff contains the login password, the enable secret or a secret
value of the config (pre-shared keys, passwords): those are replaced by ``*****``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, ClassVar, Literal, Protocol, Self, cast

import paramiko
from netmiko.exceptions import (
    NetmikoAuthenticationException,
    NetmikoBaseException,
    NetmikoTimeoutException,
)
from pydantic import BaseModel, Field, SecretStr, computed_field

from draas.clients.cisco_config import (
    CiscoError,
    CiscoTemplateError,
    ConfigNode,
    commands,
    diff_lines,
    mask_secrets,
    missing,
    parse_config,
    removals,
    restore,
)
from draas.errors import PermanentError, TransientError

__all__ = [
    "CiscoAuthFailed", "CiscoClient", "CiscoCommandRejected", "CiscoConfigPushFailed", "CiscoConnection",
    "CiscoDeviceParams", "CiscoError", "CiscoPushInterrupted", "CiscoTemplateError", "CiscoTransientError",
    "ConfigChange", "DeviceFacts", "Platform",
]

Platform = Literal["cisco_nxos", "cisco_asa", "cisco_ios"]


# -- exceptions --------------------------------------------------------------------------------
class CiscoTransientError(CiscoError, TransientError):
    """Worth retrying: the device did not answer in time or the SSH session dropped."""


class CiscoAuthFailed(CiscoError, PermanentError):
    """Login refused, wrong enable secret, or the device's SSH host key is not trusted."""


class CiscoCommandRejected(CiscoError, PermanentError):
    """The device answered a command with an error (``% Invalid input``, ``ERROR: ...``)."""

    def __init__(self, message: str, command: str = "", output: str = "") -> None:
        super().__init__(message)
        self.command = command
        self.output = output


class CiscoConfigPushFailed(CiscoError, PermanentError):
    """A config push failed half way. ``reverted`` tells whether the device is as before.

    Attributes:
        device: device label.
        context: ASA context, if any.
        failed_command: the line that failed (secrets masked).
        pushed: lines the device had accepted before the failure (secrets masked).
        reverted: True when the touched blocks were verified back to their state before the push.
        remaining: revert lines that could not be applied (empty when reverted).
    """

    def __init__(self, message: str, *, device: str, context: str | None, failed_command: str,
                 pushed: list[str], reverted: bool, remaining: list[str]) -> None:
        super().__init__(message)
        self.device = device
        self.context = context
        self.failed_command = failed_command
        self.pushed = pushed
        self.reverted = reverted
        self.remaining = remaining


class CiscoPushInterrupted(CiscoConfigPushFailed, CiscoTransientError):
    """The session dropped during a push. The change is idempotent, so a retry converges."""


# -- models ------------------------------------------------------------------------------------
class CiscoDeviceParams(BaseModel):
    """How to reach one device over SSH."""

    name: str = Field(default="", description="Label used in messages (defaults to host:port).")
    host: str = Field(description="Management address of the device.")
    port: int = Field(default=22, ge=1, le=65535, description="SSH port.")
    platform: Platform = Field(description="netmiko device_type: cisco_nxos, cisco_asa or cisco_ios.")
    username: str = Field(description="SSH login user.")
    password: SecretStr = Field(description="SSH login password.")
    secret: SecretStr | None = Field(default=None, description="Enable secret (IOS and ASA).")
    conn_timeout: float = Field(default=10.0, gt=0, description="Seconds to open the SSH session.")
    read_timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for each command's output.")
    verify_host_key: bool = Field(default=True, description="Refuse hosts whose SSH key is not known.")
    known_hosts_file: str | None = Field(default=None, description="Extra known_hosts file to trust.")

    @property
    def label(self) -> str:
        return self.name or f"{self.host}:{self.port}"


class ConfigChange(BaseModel):
    """What a config change did (or, with ``dry_run``, would do) on one device/context.

    ``diff`` marks added lines ``+``, removed lines ``-`` and context parents with a
    blank; ``commands`` are the CLI lines sent (or to send). Secrets are masked in both.
    """

    device: str
    context: str | None = None
    operation: Literal["apply", "remove"]
    diff: list[str] = Field(default_factory=list)
    commands: list[str] = Field(default_factory=list)
    pushed: bool = False
    saved: bool = False
    dry_run: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def changed(self) -> bool:
        """True when the device lacked (or, for a removal, had) some of the lines."""
        return bool(self.commands)


class DeviceFacts(BaseModel):
    """A few facts read from a device."""

    device: str
    platform: Platform
    hostname: str
    context: str | None = None
    config_lines: int


class CiscoConnection(Protocol):
    """The part of a netmiko connection the client uses (the seam for fakes in tests)."""

    base_prompt: str

    def enable(self) -> str: ...

    def send_command(self, command_string: str, **kwargs: Any) -> str: ...

    def send_config_set(self, config_commands: Sequence[str], **kwargs: Any) -> str: ...

    def config_mode(self) -> str: ...

    def exit_config_mode(self) -> str: ...

    def save_config(self) -> str: ...

    def disconnect(self) -> None: ...


ConnectionFactory = Callable[..., CiscoConnection]


class _MaskConfigSecrets(logging.Filter):
    """Mask config secrets in netmiko's debug log, which records every line sent and read.

    netmiko itself hides only the login password and enable secret.
    """

    @staticmethod
    def _mask(text: str) -> str:
        # netmiko also logs the regex it waits for: a secret appears there regex-escaped.
        return mask_secrets(re.sub(r"\\(.)", r"\1", text) if "\\" in text else text)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self._mask(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._mask(a) if isinstance(a, str) else a for a in record.args)
        return True


log = logging.getLogger(__name__)
_netmiko_log = logging.getLogger("netmiko")
if not any(type(f).__name__ == _MaskConfigSecrets.__name__ for f in _netmiko_log.filters):
    _netmiko_log.addFilter(_MaskConfigSecrets())


def _netmiko_connect(**kwargs: Any) -> CiscoConnection:
    from netmiko import ConnectHandler

    return cast(CiscoConnection, ConnectHandler(**kwargs))


#: A device error: ``% Invalid input ...``, ``ERROR: ...`` (warnings and notes are not errors).
_ERROR = re.compile(r"^\s*(%(?!\s*(warning|note|info))|error:|%error)", re.IGNORECASE | re.MULTILINE)


def device_error(output: str) -> str | None:
    """The first error line in a device's output, or None."""
    for line in output.splitlines():
        if _ERROR.match(line):
            return line.strip()
    return None


# -- client ------------------------------------------------------------------------------------
class CiscoClient:
    """Config reads and transactional config changes on one Cisco device.

    Use it as a context manager; it opens one SSH session, enters enable mode and keeps
    the session for every call. ``connection_factory`` replaces netmiko's
    ``ConnectHandler`` (it receives ConnectHandler's keyword arguments).
    """

    #: One SSH session runs one command at a time: a shared client must be used by one thread at once.
    thread_safe: ClassVar[bool] = False

    def __init__(self, params: CiscoDeviceParams, connection_factory: ConnectionFactory | None = None) -> None:
        self.params = params
        self._factory = connection_factory or _netmiko_connect
        self._conn: CiscoConnection | None = None
        self._multi_context = False  # an ASA in multiple-context mode (the prompt shows host/context)
        self._landed: str | None = None  # ASA context the session landed in (None: no contexts)
        self._context: str | None = None  # ASA context the session is in now

    def __repr__(self) -> str:
        return f"CiscoClient({self.params.label}, {self.params.platform})"

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- session ---------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the SSH session and enter enable mode (no-op when open)."""
        if self._conn is not None:
            return
        p = self.params
        kwargs: dict[str, Any] = {
            "device_type": p.platform, "host": p.host, "port": p.port, "username": p.username,
            "password": p.password.get_secret_value(),
            "secret": p.secret.get_secret_value() if p.secret else "",
            "conn_timeout": p.conn_timeout, "auth_timeout": p.conn_timeout, "banner_timeout": p.conn_timeout,
            "ssh_strict": p.verify_host_key, "system_host_keys": p.verify_host_key,
            "alt_host_keys": bool(p.known_hosts_file), "alt_key_file": p.known_hosts_file or "",
            "allow_agent": False, "use_keys": False, "fast_cli": True,
        }
        with self._translate("connect"):
            conn = self._factory(**kwargs)
        try:
            with self._translate("enable"):
                conn.enable()
        except CiscoError:
            self._quiet_disconnect(conn)
            raise
        self._conn = conn
        if self.params.platform == "cisco_asa":
            self._multi_context = self._multi_context or "/" in self._base_prompt()
            self._landed = self._prompt_context()
        self._context = self._landed

    def close(self) -> None:
        """Close the SSH session (idempotent)."""
        conn, self._conn = self._conn, None
        self._context = self._landed
        if conn is not None:
            self._quiet_disconnect(conn)

    def _revive(self) -> None:
        """Open the session again when the device closed it (idle timeout) since the last call."""
        conn = self._conn
        is_alive = getattr(conn, "is_alive", None)
        if conn is None or is_alive is None:
            return
        try:
            alive = bool(is_alive())
        except Exception:  # noqa: BLE001 - a broken session is a dead one
            alive = False
        if not alive:
            log.info("%s: SSH session closed by the device; opening a new one", self.params.label)
            self.close()
            self.connect()

    def _base_prompt(self) -> str:
        return str(getattr(self._conn, "base_prompt", "") or "")

    def _prompt_context(self) -> str | None:
        """The ASA context the prompt shows (``host/X``); ``system`` without one on a multi-context ASA."""
        prompt = re.split(r"\(conf", self._base_prompt(), maxsplit=1)[0]
        if "/" in prompt:
            return prompt.split("/", 1)[1]
        return "system" if self._multi_context else None

    @staticmethod
    def _quiet_disconnect(conn: CiscoConnection) -> None:
        with contextlib.suppress(Exception):
            conn.disconnect()

    @property
    def _session(self) -> CiscoConnection:
        if self._conn is None:
            self.connect()
        assert self._conn is not None
        return self._conn

    def _redact(self, text: str) -> str:
        for secret in (self.params.password, self.params.secret):
            if secret is not None and secret.get_secret_value():
                text = text.replace(secret.get_secret_value(), "********")
        return mask_secrets(text)

    def _first_line(self, exc: BaseException) -> str:
        text = str(exc).strip()
        return self._redact(text.splitlines()[0]) if text else ""

    @contextlib.contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Map netmiko/paramiko/socket errors onto the adapter's exceptions."""
        label = self.params.label
        try:
            yield
        except CiscoError:
            raise
        except NetmikoAuthenticationException as exc:
            raise CiscoAuthFailed(f"{label}: {what}: authentication refused") from exc
        except paramiko.BadHostKeyException as exc:
            raise CiscoAuthFailed(f"{label}: {what}: SSH host key changed") from exc
        except NetmikoTimeoutException as exc:
            # netmiko reports every SSH setup error as a timeout, an unknown host key included
            if "known_hosts" in str(exc) or "host key" in str(exc).lower():
                raise CiscoAuthFailed(f"{label}: {what}: SSH host key not trusted") from exc
            self.close()  # the session is in an unknown state: the next call opens a new one
            raise CiscoTransientError(f"{label}: {what}: {self._first_line(exc) or 'timed out'}") from exc
        except (TimeoutError, NetmikoBaseException, paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise CiscoTransientError(f"{label}: {what}: {type(exc).__name__}: {self._first_line(exc)}") from exc
        except ValueError as exc:  # netmiko's "Failed to enter enable/configuration mode"
            message = self._first_line(exc)
            if "enable" in message.lower():
                raise CiscoAuthFailed(f"{label}: {what}: enable refused (check the enable secret)") from exc
            raise CiscoCommandRejected(f"{label}: {what}: {message}") from exc

    def _check(self, command: str, output: str) -> str:
        error = device_error(output)
        if error is not None:
            shown = self._redact(command.strip())
            raise CiscoCommandRejected(f"{self.params.label}: {shown!r} rejected: {self._redact(error)}",
                                       command=shown, output=self._redact(output))
        return output

    def show(self, command: str, context: str | None = None) -> str:
        """Run an exec command (``show ...``) and return its output.

        Raises:
            CiscoCommandRejected: the device answered with an error.
        """
        self._revive()
        self._enter_context(context)
        with self._translate(command.split()[0] if command.split() else "command"):
            out = self._session.send_command(command, read_timeout=self.params.read_timeout)
        return self._check(command, out)

    @property
    def current_context(self) -> str | None:
        """The ASA context the session is in (``system``, ``admin``, a tenant's); None without contexts."""
        return self._context

    def _enter_context(self, context: str | None) -> None:
        """``changeto`` the ASA context; ``None`` is the context the session landed in (admin).

        The client follows the prompt (``host/X#``, ``host#`` in the system execution space),
        so it knows where the session is between calls and after a new login.
        """
        if self.params.platform != "cisco_asa":
            if context:
                raise ValueError(f"{self.params.label}: contexts exist only on the ASA, not on {self.params.platform}")
            return
        _ = self._session  # log in first: the login tells where the session lands
        target = context or self._landed
        if target == self._context:
            return
        command = "changeto system" if target in (None, "system") else f"changeto context {target}"
        with self._translate("changeto"):
            out = self._session.send_command(command, read_timeout=self.params.read_timeout)
        self._check(command, out)
        if not self._multi_context:  # landed in the system space: the device just proved it has contexts
            self._multi_context = True
            self._landed = self._landed or "system"
        shown = self._prompt_context()
        self._context = shown
        if shown != (target or "system"):
            raise CiscoCommandRejected(f"{self.params.label}: {command!r}: the prompt shows context {shown!r}",
                                       command=command, output=self._redact(out))

    # -- reads -----------------------------------------------------------------------------------
    def running_config(self, context: str | None = None) -> str:
        """The running config as the device prints it."""
        return self.show("show running-config", context)

    def running_tree(self, context: str | None = None) -> ConfigNode:
        """The running config as a tree."""
        return parse_config(self.running_config(context))

    def context_exists(self, context: str) -> bool:
        """True when the ASA's system context defines ``context``."""
        tree = self.running_tree("system")
        return any(top.text == f"context {context}" for top in tree.children)

    def _running_tree_if_context(self, context: str | None) -> ConfigNode | None:
        """The running tree, or None when ``context`` is an ASA context that does not exist."""
        if context not in (None, "system") and not self.context_exists(context):
            return None
        return self.running_tree(context)

    def startup_tree(self, context: str | None = None) -> ConfigNode:
        return parse_config(self.show("show startup-config", context))

    def facts(self, context: str | None = None) -> DeviceFacts:
        """Hostname (``hostname`` line, else the prompt) and the size of the running config."""
        tree = self.running_tree(context)
        named = next((top.text.split(None, 1)[1] for top in tree.children
                      if top.text.startswith(("hostname ", "switchname "))), None)
        prompt = self._base_prompt()
        in_context = "/" in re.split(r"\(conf", prompt, maxsplit=1)[0]
        # In an ASA context the prompt shows the device's (system) hostname; the context's own
        # ``hostname`` line is not the device's name.
        hostname = (None if in_context else named) or re.split(r"[/(]", prompt, maxsplit=1)[0]
        return DeviceFacts(device=self.params.label, platform=self.params.platform, hostname=hostname,
                           context=self._context if self.params.platform == "cisco_asa" else context,
                           config_lines=len(tree))

    # -- changes ---------------------------------------------------------------------------------
    def apply(self, config: str | Sequence[str], context: str | None = None, dry_run: bool = False,
              save: bool = True) -> ConfigChange:
        """Make the device hold every line of ``config`` (merge; other lines stay).

        Args:
            config: rendered config text, or its lines (indentation gives nesting).
            context: ASA context (``system`` for the system context).
            dry_run: return the diff and push nothing.
            save: save the config after a push, or when the startup config lacks the lines.

        Raises:
            CiscoConfigPushFailed: a line was rejected; the pushed lines were reverted.
            CiscoPushInterrupted: the session dropped during the push (transient).
        """
        candidate = parse_config(config)
        before = self._running_tree_if_context(context) if dry_run else None
        if before is None and dry_run:
            # The context is created by an earlier step of the same change: all of it is new.
            before = parse_config("")
        elif before is None:
            before = self.running_tree(context)
        diff = missing(candidate, before)
        cmds = commands(diff)
        change = ConfigChange(device=self.params.label, context=context, operation="apply",
                              diff=diff_lines(diff, "+"), commands=[mask_secrets(c) for c in cmds],
                              dry_run=dry_run)
        if dry_run:
            return change
        if cmds:
            self._push(cmds, before, candidate, context)
            change.pushed = True
        if save and (change.pushed or missing(candidate, self.startup_tree(context)).children):
            self.save(context)
            change.saved = True
        return change

    def remove(self, config: str | Sequence[str], context: str | None = None, dry_run: bool = False,
               save: bool = True) -> ConfigChange:
        """Delete the lines of ``config`` from the device (blocks it owns go as a whole).

        Raises:
            CiscoConfigPushFailed: a ``no`` line was rejected; the removed lines were re-added.
            CiscoPushInterrupted: the session dropped during the push (transient).
        """
        block = parse_config(config)
        running = self._running_tree_if_context(context)
        if running is None:
            # The whole context is gone, and with it everything that was to be removed.
            return ConfigChange(device=self.params.label, context=context, operation="remove", dry_run=dry_run)
        before = running
        diff = removals(block, before)
        cmds = commands(diff, negate_leaves=True)
        change = ConfigChange(device=self.params.label, context=context, operation="remove",
                              diff=diff_lines(diff, "-", before), commands=[mask_secrets(c) for c in cmds],
                              dry_run=dry_run)
        if dry_run:
            return change
        if cmds:
            self._push(cmds, before, block, context)
            change.pushed = True
        if save and (change.pushed or removals(block, self.startup_tree(context)).children):
            self.save(context)
            change.saved = True
        return change

    def save(self, context: str | None = None) -> str:
        """Save the running config (``copy running-config startup-config`` / ``write memory``)."""
        self._revive()
        self._enter_context(context)
        with self._translate("save"):
            out = self._session.save_config()
        return self._check("save", out)

    def _send_config_lines(self, lines: Sequence[str], accepted: list[str]) -> None:
        """Send config lines one by one in configuration mode; stop at the first error."""
        session = self._session
        with self._translate("configure"):
            session.config_mode()
        for line in lines:
            with self._translate("config push"):
                out = session.send_config_set([line], enter_config_mode=False, exit_config_mode=False,
                                              read_timeout=self.params.read_timeout)
            self._check(line, out)
            accepted.append(line)
        with self._translate("configure"):
            session.exit_config_mode()

    def _push(self, cmds: list[str], before: ConfigNode, scope: ConfigNode, context: str | None) -> None:
        accepted: list[str] = []
        try:
            self._send_config_lines(cmds, accepted)
        except CiscoError as exc:
            failed = cmds[len(accepted)] if len(accepted) < len(cmds) else "end"
            self._revert_and_raise(exc, before, scope, context, accepted, failed)

    def _leave_config_mode(self) -> None:
        """Back to exec mode after a failure, so the next call of a kept session starts clean."""
        if self._conn is None:
            return
        with contextlib.suppress(CiscoError):
            with self._translate("configure"):
                self._conn.exit_config_mode()

    def _revert_and_raise(self, cause: CiscoError, before: ConfigNode, scope: ConfigNode,
                          context: str | None, accepted: list[str], failed: str) -> None:
        transient = isinstance(cause, CiscoTransientError)
        remaining: list[str] = []
        revert_error = ""
        try:
            if transient:  # the session is gone: a fresh one for the revert
                self.close()
                self.connect()
            else:
                with self._translate("configure"):
                    self._session.exit_config_mode()
            undo = restore(before, self.running_tree(context), scope)
            if undo:
                self._send_config_lines(undo, [])
            remaining = restore(before, self.running_tree(context), scope)
        except CiscoError as exc:
            revert_error = f"; revert failed: {exc}"
            remaining = remaining or ["<unknown: the device could not be read back>"]
            self._leave_config_mode()
        reverted = not remaining
        label = self.params.label + (f"/{context}" if context else "")
        state = "pushed lines reverted" if reverted else f"NOT reverted, {len(remaining)} line(s) left"
        message = (f"{label}: config push failed at {mask_secrets(failed.strip())!r} after "
                   f"{len(accepted)} accepted line(s): {cause}; {state}{revert_error}")
        cls = CiscoPushInterrupted if transient else CiscoConfigPushFailed
        raise cls(self._redact(message), device=self.params.label, context=context,
                  failed_command=mask_secrets(failed.strip()), pushed=[mask_secrets(c) for c in accepted],
                  reverted=reverted, remaining=[mask_secrets(c) for c in remaining]) from cause
