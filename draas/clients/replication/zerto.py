"""Zerto adapter: ``ReplicationProvider`` over the ZVM REST API v1 with httpx.

Authentication is either the classic session (``POST /v1/session/add`` with Basic auth →
``x-zerto-session`` header) or, for ZVM appliances 10.x, Keycloak's password grant (→
bearer token). A 401 on any call triggers exactly one new login and one retry of that call.
Groups are VPGs, created and edited through ``vpgSettings`` + ``commit``; recovery points are
checkpoints; every action returns a task that :meth:`ZertoClient.wait_task` polls until a
terminal state or a deadline (each poll's HTTP timeout capped by the time left). Zerto's task
types map to the neutral :class:`OperationKind` here and nowhere else. ``transport=`` takes
any httpx transport (respx in unit tests).
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from draas.clients.replication.base import (
    ReplicationAuthFailed,
    ReplicationCommitFailed,
    ReplicationDeadlineExceeded,
    ReplicationError,
    ReplicationFailoverFailed,
    ReplicationFailoverTestFailed,
    ReplicationNotFound,
    ReplicationProtectFailed,
    ReplicationProvider,
    ReplicationRequestRejected,
    ReplicationResponseError,
    ReplicationRollbackFailed,
    ReplicationTaskFailed,
    ReplicationTransientError,
    wait_limit,
)
from draas.clients.replication.models import (
    FailoverOptions,
    GroupState,
    InventoryItem,
    IpSettings,
    OperationKind,
    ProtectionSpec,
    ProtectResult,
    RecoveryPoint,
    ReplicationGroup,
    ReplicationTask,
    Site,
    TaskState,
    VmProtection,
)
from draas.deadline import Deadline

M = TypeVar("M", bound=BaseModel)

#: Used when the ZVM has no ``/v1/vpgs/statuses`` (older versions): the documented API v1 order.
DEFAULT_STATUSES = [
    "Initializing", "MeetingSLA", "NotMeetingSLA", "HistoryNotMeetingSLA", "RpoNotMeetingSLA",
    "FailingOver", "Moving", "Deleting", "Recovered",
]
DEFAULT_SUBSTATUSES = [
    "None", "InitialSync", "Creating", "VolumeInitialSync", "Sync", "RecoveryPossible", "DeltaSync",
    "NeedsConfiguration", "Error", "EmptyProtectionGroup", "DisconnectedFromPeerNoRecoveryPoints",
    "FullSync", "VolumeDeltaSync", "VolumeFullSync", "FailingOverCommitting", "FailingOverBeforeCommit",
    "FailingOverRollingBack", "Promoting", "MovingCommitting", "MovingBeforeCommit", "MovingRollingBack",
    "Deleting", "PendingRemove", "BitmapSync", "DisconnectedFromPeer", "ReplicationPausedUserInitiated",
    "ReplicationPausedSystemInitiated", "RecoveryStorageProfileError", "Backup", "RollingBack",
    "RecoveryStorageError", "JournalStorageError", "VmNotProtectedError",
]
STATE_OF_STATUS = {
    "Initializing": GroupState.INITIALIZING,
    "MeetingSLA": GroupState.MEETING_SLA,
    "NotMeetingSLA": GroupState.NOT_MEETING_SLA,
    "RpoNotMeetingSLA": GroupState.NOT_MEETING_SLA,
    "HistoryNotMeetingSLA": GroupState.NOT_MEETING_SLA,
    "FailingOver": GroupState.FAILING_OVER,
    "Moving": GroupState.MOVING,
    "Deleting": GroupState.DELETING,
    "Recovered": GroupState.RECOVERED,
}
COMMIT_POLICY = {"auto_rollback": 0, "auto_commit": 1, "manual": 2}
SHUTDOWN_POLICY = {"none": 0, "graceful": 1, "force": 2}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


#: Zerto task types (``GET /v1/tasks`` ``Type``, lower case) and the action names we post, by operation.
TASK_TYPES: dict[OperationKind, tuple[str, ...]] = {
    OperationKind.PROTECT: ("createprotectiongroup", "updateprotectiongroup", "forceupdateprotectiongroup"),
    OperationKind.UNPROTECT: ("removeprotectiongroup", "forceremoveprotectiongroup", "forcekillprotectiongroup"),
    OperationKind.TEST: ("failovertest",),
    OperationKind.STOP_TEST: ("stopfailovertest", "failoverteststop"),
    OperationKind.FAILOVER: ("failover", "failoverbeforecommit"),
    OperationKind.MOVE: ("move", "movebeforecommit"),
    OperationKind.COMMIT: ("failovercommit", "movecommit"),
    OperationKind.ROLLBACK: ("failoverrollback", "moverollback"),
    OperationKind.PAUSE: ("pauseprotectiongroup", "pause"),
    OperationKind.RESUME: ("resumeprotectiongroup", "resume"),
}
_KIND_OF_TYPE = {t: kind for kind, types in TASK_TYPES.items() for t in types}
_FAILURE_OF_KIND: dict[OperationKind, type[ReplicationTaskFailed]] = {
    OperationKind.PROTECT: ReplicationProtectFailed,
    OperationKind.TEST: ReplicationFailoverTestFailed,
    OperationKind.STOP_TEST: ReplicationFailoverTestFailed,
    OperationKind.FAILOVER: ReplicationFailoverFailed,
    OperationKind.MOVE: ReplicationFailoverFailed,
    OperationKind.COMMIT: ReplicationCommitFailed,
    OperationKind.ROLLBACK: ReplicationRollbackFailed,
}
#: Smallest HTTP timeout of a poll near its deadline (a zero timeout would fail at once).
MIN_CALL_TIMEOUT_S = 0.05


def operation_kind(task_type: str) -> OperationKind:
    """The neutral operation of a Zerto task type (``OTHER`` for types the product does not start)."""
    return _KIND_OF_TYPE.get(task_type.lower(), OperationKind.OTHER)


def _failure_class(kind: OperationKind | None) -> type[ReplicationTaskFailed]:
    """The operation-specific error for a failed task."""
    return _FAILURE_OF_KIND.get(kind or OperationKind.OTHER, ReplicationTaskFailed)


def _ts(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _iso(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ZertoClient(ReplicationProvider):
    """A ZVM REST API v1 client; a context manager (logs out and closes on exit).

    Args:
        url: Base URL of the ZVM (e.g. ``https://zvm.example:9669``).
        username: API user.
        password: Its password (kept as ``SecretStr``).
        auth_style: ``"session"`` (``/v1/session/add``) or ``"keycloak"`` (ZVM appliance 10.x).
        keycloak_client_id: Keycloak client for the password grant.
        verify_tls: Verify the ZVM's certificate.
        timeout_s: Read timeout of each request; ``connect_timeout_s`` for connecting.
        poll_interval_s: First pause between task polls (grows up to ``max_poll_interval_s``).
        transport: An httpx transport (tests pass respx's mock here).
        app_consistent_tags: Checkpoint tags that mark application-consistent points.
    """

    product = "zerto"

    def __init__(self, url: str, username: str, password: SecretStr | str, *,
                 auth_style: str = "session", keycloak_client_id: str = "zerto-client",
                 verify_tls: bool = True, timeout_s: float = 30.0, connect_timeout_s: float = 5.0,
                 poll_interval_s: float = 1.0, max_poll_interval_s: float = 5.0,
                 transport: httpx.BaseTransport | None = None,
                 app_consistent_tags: Iterable[str] = ("VSS", "app-consistent"),
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if auth_style not in ("session", "keycloak"):
            raise ValueError("auth_style must be 'session' or 'keycloak'")
        self.url = url.rstrip("/")
        self.username = username
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)
        self.auth_style = auth_style
        self.keycloak_client_id = keycloak_client_id
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.poll_interval_s = poll_interval_s
        self.max_poll_interval_s = max_poll_interval_s
        self.app_consistent_tags = {t.lower() for t in app_consistent_tags}
        self._sleep = sleep
        self._clock = clock
        self._token: SecretStr | None = None
        self._statuses: list[str] | None = None
        self._substatuses: list[str] | None = None
        self._local: Site | None = None
        self._http = httpx.Client(
            base_url=self.url, verify=verify_tls, transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"ZertoClient(url={self.url!r}, username={self.username!r}, auth_style={self.auth_style!r})"

    def __enter__(self) -> Self:
        return self

    def close(self) -> None:
        """Log out (session style, best effort) and close the connection pool."""
        if self._token is not None and self.auth_style == "session":
            try:
                self._http.delete("/v1/session", headers=self._auth_headers())
            except httpx.HTTPError:
                pass  # the session expires on its own
        self._token = None
        self._http.close()

    # --- HTTP plumbing ------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        if self._token is None:
            return {}
        if self.auth_style == "session":
            return {"x-zerto-session": self._token.get_secret_value()}
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}

    def _timeout(self, limit_s: float | None) -> httpx.Timeout | None:
        """The HTTP timeout of one call that must end within ``limit_s`` seconds (None: the client's)."""
        if limit_s is None:
            return None
        cap = max(MIN_CALL_TIMEOUT_S, limit_s)
        return httpx.Timeout(min(self.timeout_s, cap), connect=min(self.connect_timeout_s, cap))

    def _send(self, method: str, path: str, limit_s: float | None = None, **kwargs: Any) -> httpx.Response:
        """One HTTP exchange (within ``limit_s`` when given); transport problems become ReplicationTransientError."""
        timeout = self._timeout(limit_s)
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ReplicationTransientError(f"{method} {path}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ReplicationTransientError(f"{method} {path}: connection failed ({type(exc).__name__})") from exc

    def _message(self, resp: httpx.Response) -> str:
        """The server's error text, short, with our password and token blanked out (it may echo them)."""
        try:
            body = resp.json()
        except ValueError:
            text = resp.text[:200].strip()
        else:
            text = str(body)[:200]
            if isinstance(body, dict):
                text = next((str(body[k])[:300] for k in ("Message", "message", "error_description", "error")
                             if body.get(k)), text)
        for secret in (self._password, self._token):
            if secret is not None and secret.get_secret_value():
                text = text.replace(secret.get_secret_value(), "********")
        return text

    def login(self, limit_s: float | None = None) -> None:
        """Open a session or get a bearer token (done lazily by every call)."""
        pwd = self._password.get_secret_value()
        if self.auth_style == "session":
            path = "/v1/session/add"
            resp = self._send("POST", path, limit_s, auth=(self.username, pwd), json={"AuthenticationMethod": 1})
            self._raise_for_login(resp, path)
            token = resp.headers.get("x-zerto-session")
            if not token:
                raise ReplicationResponseError(f"POST {path}: no x-zerto-session header in the answer")
        else:
            path = "/auth/realms/zerto/protocol/openid-connect/token"
            resp = self._send("POST", path, limit_s, data={"grant_type": "password",
                                                            "client_id": self.keycloak_client_id,
                                                            "username": self.username, "password": pwd})
            self._raise_for_login(resp, path)
            try:
                token = resp.json()["access_token"]
            except (ValueError, KeyError, TypeError):
                raise ReplicationResponseError(f"POST {path}: answer has no access_token") from None
        self._token = SecretStr(str(token))

    def _raise_for_login(self, resp: httpx.Response, path: str) -> None:
        if resp.status_code in (400, 401, 403):
            raise ReplicationAuthFailed(f"POST {path}: login as {self.username!r} refused "
                                        f"(HTTP {resp.status_code}: {self._message(resp)})")
        if resp.status_code == 429 or resp.status_code >= 500:
            raise ReplicationTransientError(f"POST {path}: HTTP {resp.status_code}: {self._message(resp)}")
        if resp.status_code >= 300:
            raise ReplicationResponseError(f"POST {path}: unexpected HTTP {resp.status_code}")

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                limit_s: float | None = None) -> Any:
        """Call the API; returns the decoded JSON (None for an empty body).

        Logs in when needed; on 401 logs in again once and repeats the call once. ``limit_s``
        caps each HTTP exchange's timeout (a wait passes the time left before its deadline).
        """
        if self._token is None:
            self.login(limit_s)
        kwargs: dict[str, Any] = {"params": params}
        if json is not None:
            kwargs["json"] = json
        resp = self._send(method, path, limit_s, headers=self._auth_headers(), **kwargs)
        if resp.status_code == 401:
            self._token = None
            self.login(limit_s)
            resp = self._send(method, path, limit_s, headers=self._auth_headers(), **kwargs)
            if resp.status_code == 401:
                raise ReplicationAuthFailed(f"{method} {path}: unauthorized again right after a new login")
        self._raise_for_status(resp, method, path)
        if not resp.content.strip():
            return None
        try:
            return resp.json()
        except ValueError:
            raise ReplicationResponseError(f"{method} {path}: the answer is not valid JSON") from None

    def _raise_for_status(self, resp: httpx.Response, method: str, path: str) -> None:
        code = resp.status_code
        if code < 300:
            return
        what = f"{method} {path}: HTTP {code}: {self._message(resp)}"
        if code == 429 or code >= 500:
            raise ReplicationTransientError(what)
        if code == 404:
            raise ReplicationNotFound(what)
        if code == 403:
            raise ReplicationAuthFailed(what)
        raise ReplicationRequestRejected(what)

    @staticmethod
    def _parse(model: type[M], data: Any, endpoint: str) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ReplicationResponseError(f"{endpoint}: unexpected answer ({exc.error_count()} "
                                           f"field errors)") from None

    def _list(self, data: Any, endpoint: str) -> list[dict[str, Any]]:
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise ReplicationResponseError(f"{endpoint}: expected a JSON array of objects")
        return data

    @staticmethod
    def _task_id(data: Any, endpoint: str, field: str = "TaskIdentifier") -> str:
        """The identifier a POST returns: a JSON string (or an object holding ``field``)."""
        if isinstance(data, str) and data:
            return data
        if isinstance(data, dict) and data.get(field):
            return str(data[field])
        raise ReplicationResponseError(f"{endpoint}: expected a {field}")

    # --- sites and inventory ------------------------------------------------------------

    def local_site(self) -> Site:
        if self._local is None:
            data = self.request("GET", "/v1/localsite")
            if not isinstance(data, dict) or "SiteIdentifier" not in data:
                raise ReplicationResponseError("GET /v1/localsite: no SiteIdentifier")
            self._local = Site(id=str(data["SiteIdentifier"]), name=str(data.get("SiteName", "")))
        return self._local

    def sites(self) -> list[Site]:
        ep = "/v1/virtualizationsites"
        return [Site(id=str(s.get("SiteIdentifier")), name=str(s.get("VirtualizationSiteName", "")))
                for s in self._list(self.request("GET", ep), f"GET {ep}")]

    def peer_site(self) -> Site:
        local = self.local_site()
        for site in self.sites():
            if site.id != local.id:
                return site
        raise ReplicationNotFound("GET /v1/virtualizationsites: no peer site is paired with this ZVM")

    _FIELDS: ClassVar[dict[str, tuple[str, str]]] = {
        "vms": ("VmIdentifier", "VmName"),
        "networks": ("NetworkIdentifier", "VirtualizationNetworkName"),
        "folders": ("FolderIdentifier", "FolderName"),
        "hostclusters": ("ClusterIdentifier", "VirtualizationClusterName"),
        "hosts": ("HostIdentifier", "VirtualizationHostName"),
        "datastores": ("DatastoreIdentifier", "DatastoreName"),
        "resourcepools": ("ResourcePoolIdentifier", "ResourcepoolName"),
    }

    def inventory(self, site_id: str, kind: str) -> list[InventoryItem]:
        """VMs, networks, folders, hostclusters, hosts, datastores or resourcepools of a site."""
        id_field, name_field = self._FIELDS[kind]
        ep = f"/v1/virtualizationsites/{site_id}/{kind}"
        return [InventoryItem(id=str(i.get(id_field)), name=str(i.get(name_field, "")))
                for i in self._list(self.request("GET", ep), f"GET {ep}")]

    def _resolver(self, site_id: str) -> Callable[[str, str | None], str | None]:
        cache: dict[str, list[InventoryItem]] = {}

        def resolve(kind: str, ref: str | None) -> str | None:
            if ref is None:
                return None
            if kind not in cache:
                cache[kind] = self.inventory(site_id, kind)
            for item in cache[kind]:
                if item.id == ref:
                    return item.id
            matches = [i for i in cache[kind] if i.name == ref]
            if len(matches) == 1:
                return matches[0].id
            if len(matches) > 1:
                raise ReplicationRequestRejected(f"{kind[:-1]} name {ref!r} is ambiguous at site {site_id}")
            raise ReplicationNotFound(f"{kind[:-1]} {ref!r} not found at site {site_id}")

        return resolve

    # --- statuses -----------------------------------------------------------------------

    def _status_lists(self) -> tuple[list[str], list[str]]:
        """Status and sub-status names, read from the ZVM once (versions number them differently)."""
        if self._statuses is None or self._substatuses is None:
            self._statuses = self._names("/v1/vpgs/statuses", DEFAULT_STATUSES)
            self._substatuses = self._names("/v1/vpgs/substatuses", DEFAULT_SUBSTATUSES)
        return self._statuses, self._substatuses

    def _names(self, path: str, default: list[str]) -> list[str]:
        try:
            data = self.request("GET", path)
        except ReplicationNotFound:
            return list(default)
        if isinstance(data, list) and all(isinstance(d, str) for d in data):
            return data
        raise ReplicationResponseError(f"GET {path}: expected a JSON array of names")

    def _group(self, data: Any, endpoint: str) -> ReplicationGroup:
        if not isinstance(data, dict) or "VpgIdentifier" not in data:
            raise ReplicationResponseError(f"{endpoint}: not a VPG")
        statuses, subs = self._status_lists()
        code, sub = data.get("Status"), data.get("SubStatus")
        status = statuses[code] if isinstance(code, int) and 0 <= code < len(statuses) else str(code)
        substatus = subs[sub] if isinstance(sub, int) and 0 <= sub < len(subs) else str(sub)
        test = ((data.get("ActiveProcessesApi") or {}).get("RunningFailOverTestApi"))
        protected = (data.get("ProtectedSite") or {}).get("identifier")
        # Reversed: replicating from the site this ZVM would recover to (a committed reverse protection).
        reversed_ = bool(protected) and str(protected).lower() != self.local_site().id.lower()
        try:
            return ReplicationGroup(
                id=str(data["VpgIdentifier"]), name=str(data.get("VpgName", "")),
                state=STATE_OF_STATUS.get(status, GroupState.UNKNOWN), status=status, substatus=substatus,
                status_code=code if isinstance(code, int) else None,
                substatus_code=sub if isinstance(sub, int) else None,
                actual_rpo_s=int(data.get("ActualRPO") or 0),
                configured_rpo_s=int(data.get("ConfiguredRpoSeconds") or 0),
                vm_count=int(data.get("VmsCount") or 0),
                progress_percent=int(data.get("ProgressPercentage") or 0),
                protected_site_id=protected,
                recovery_site_id=(data.get("RecoverySite") or {}).get("identifier"),
                test_running=bool(test), last_test=_ts(data.get("LastTest")),
                awaiting_commit=substatus in ("FailingOverBeforeCommit", "MovingBeforeCommit"),
                committing=substatus in ("FailingOverCommitting", "MovingCommitting"),
                reversed=reversed_,
            )
        except (ValueError, TypeError, ValidationError):
            raise ReplicationResponseError(f"{endpoint}: unexpected VPG fields") from None

    # --- groups -------------------------------------------------------------------------

    def list_groups(self) -> list[ReplicationGroup]:
        ep = "GET /v1/vpgs"
        return [self._group(d, ep) for d in self._list(self.request("GET", "/v1/vpgs"), ep)]

    def find_group(self, name: str) -> ReplicationGroup | None:
        ep = "GET /v1/vpgs"
        # Filter here as well: not every ZVM version honours the name parameter.
        for data in self._list(self.request("GET", "/v1/vpgs", params={"name": name}), ep):
            if data.get("VpgName") == name:
                return self._group(data, ep)
        return None

    def status(self, group: str, limit_s: float | None = None) -> ReplicationGroup:
        if _UUID.match(group):
            try:
                return self._group(self.request("GET", f"/v1/vpgs/{group}", limit_s=limit_s),
                                   f"GET /v1/vpgs/{group}")
            except ReplicationNotFound:
                pass  # a VPG may be named like an id; try the name
        found = self.find_group(group)
        if found is None:
            raise ReplicationNotFound(f"no VPG with id or name {group!r}")
        return found

    def _vpg_id(self, group: str) -> str:
        return self.status(group).id

    def protected_vms(self, group_id: str | None = None) -> list[InventoryItem]:
        """VMs protected by any VPG (or by ``group_id``)."""
        ep = "GET /v1/vms"
        return [InventoryItem(id=str(v.get("VmIdentifier")), name=str(v.get("VmName", "")))
                for v in self._list(self.request("GET", "/v1/vms"), ep)
                if group_id is None or str(v.get("VpgIdentifier")) == group_id]

    def plan_protect(self, spec: ProtectionSpec) -> list[str]:
        """What :meth:`protect` would change (empty: nothing); changes nothing itself."""
        existing = self.find_group(spec.name)
        if existing is None:
            return [f"+ vpg {spec.name} ({len(spec.vms)} VMs, RPO {spec.rpo_seconds} s)"]
        return self._diff(existing, spec) + self.settings_drift(spec)

    def protect(self, spec: ProtectionSpec, timeout_s: float | None = None, *,
                deadline: Deadline | None = None) -> ProtectResult:
        limit = wait_limit(deadline, timeout_s if timeout_s is not None or deadline is not None else 300.0,
                           f"protect {spec.name}")
        existing = self.find_group(spec.name)
        if existing is not None:
            diff = self._diff(existing, spec) + self.settings_drift(spec)
            if not diff:
                return ProtectResult(group=existing, changed=False)
            body: dict[str, Any] = {"VpgIdentifier": existing.id}
            site_id = existing.recovery_site_id or self.peer_site().id
            source_id = existing.protected_site_id or self.local_site().id
        else:
            diff = [f"+ vpg {spec.name} ({len(spec.vms)} VMs, RPO {spec.rpo_seconds} s)"]
            body = {}
            site_id, source_id = self.peer_site().id, self.local_site().id
        sid = self._task_id(self.request("POST", "/v1/vpgSettings", json=body), "POST /v1/vpgSettings",
                           field="VpgSettingsIdentifier")
        try:
            doc = self.request("GET", f"/v1/vpgSettings/{sid}")
            if not isinstance(doc, dict) or not isinstance(doc.get("Basic"), dict):
                raise ReplicationResponseError(f"GET /v1/vpgSettings/{sid}: not a settings document")
            doc = self._apply(doc, spec, source_id, site_id, new=existing is None)
            self.request("PUT", f"/v1/vpgSettings/{sid}", json=doc)
            task_id = self._task_id(self.request("POST", f"/v1/vpgSettings/{sid}/commit"),
                                    f"POST /v1/vpgSettings/{sid}/commit")
        except ReplicationError:
            try:  # do not leave an edit session behind
                self.request("DELETE", f"/v1/vpgSettings/{sid}")
            except ReplicationError:
                pass
            raise
        task = self.wait_task(task_id, deadline=limit)
        group = self.status(task.group_ids[0]) if task.group_ids else self.find_group(spec.name)
        if group is None:
            raise ReplicationProtectFailed(f"VPG {spec.name!r} not found after its commit task completed", task)
        return ProtectResult(group=group, changed=True, diff=diff, task=task)

    def _diff(self, group: ReplicationGroup, spec: ProtectionSpec) -> list[str]:
        """What ``protect`` would change on an existing VPG (VM membership and RPO)."""
        current = self.protected_vms(group.id)
        wanted = [v.vm for v in spec.members]
        diff = []
        for ref in wanted:
            if not any(ref in (vm.id, vm.name) for vm in current):
                diff.append(f"+ vm {ref}")
        for vm in current:
            if vm.id not in wanted and vm.name not in wanted:
                diff.append(f"- vm {vm.name or vm.id}")
        if group.configured_rpo_s and group.configured_rpo_s != spec.rpo_seconds:
            diff.append(f"~ rpo {group.configured_rpo_s} s -> {spec.rpo_seconds} s")
        return diff

    def settings_drift(self, spec: ProtectionSpec) -> list[str]:
        """How the settings of the existing VPG ``spec.name`` differ from ``spec``; changes nothing.

        Covers what :meth:`protect` writes besides RPO: journal history and limits, priority, WAN
        compression, test interval, the recovery cluster/host/datastore/folder/pool, default
        networks, and per VM its recovery folder/datastore and per NIC the failover and test
        network, MAC replacement and re-IP. The settings are read through an edit session that is
        discarded again (the ZVM has no other way to read them). VM membership and RPO are
        :meth:`plan_protect`'s business; a group that does not exist yields ``["+ vpg ..."]``.
        Names that cannot be resolved at a site are reported as drift, not raised.
        """
        group = self.find_group(spec.name)
        if group is None:
            return [f"+ vpg {spec.name} ({len(spec.vms)} VMs, RPO {spec.rpo_seconds} s)"]
        site_id = group.recovery_site_id or self.peer_site().id
        source_id = group.protected_site_id or self.local_site().id
        doc = self._current_settings(group.id)
        try:
            wanted = self._apply(doc, spec, source_id, site_id, new=False, keep_unknown=True)
        except ReplicationNotFound as exc:
            return [f"! {exc}"]
        names = self._names_at(site_id, source_id)
        vm_of = {str(v.get("VmIdentifier")): v for v in doc.get("Vms") or []}
        drift = _flat_diff(_without_membership(doc), _without_membership(wanted), names)
        for entry in wanted.get("Vms") or []:
            vm_id = str(entry.get("VmIdentifier"))
            if vm_id not in vm_of:
                continue  # not protected yet: plan_protect reports "+ vm"
            label = f"vm {names.get(vm_id, vm_id)}"
            drift += [f"{line[:2]}{label} {line[2:]}" for line in
                      _flat_diff(_flatten(vm_of[vm_id]), _flatten(entry), names)]
        return drift

    def _current_settings(self, vpg_id: str) -> dict[str, Any]:
        """The VPG's settings document, read through an edit session that is discarded again."""
        sid = self._task_id(self.request("POST", "/v1/vpgSettings", json={"VpgIdentifier": vpg_id}),
                            "POST /v1/vpgSettings", field="VpgSettingsIdentifier")
        try:
            doc = self.request("GET", f"/v1/vpgSettings/{sid}")
        finally:
            try:
                self.request("DELETE", f"/v1/vpgSettings/{sid}")
            except ReplicationError:
                pass  # the ZVM expires abandoned edit sessions
        if not isinstance(doc, dict) or not isinstance(doc.get("Basic"), dict):
            raise ReplicationResponseError(f"GET /v1/vpgSettings/{sid}: not a settings document")
        return doc

    def _names_at(self, *site_ids: str) -> dict[str, str]:
        """Identifier -> name of every inventory item of the sites (to show drift by name)."""
        names: dict[str, str] = {}
        for site_id in site_ids:
            for kind in self._FIELDS:
                if kind == "vms" and site_id != site_ids[-1]:
                    continue  # the protected site's VMs are enough
                try:
                    names.update({i.id: i.name for i in self.inventory(site_id, kind)})
                except ReplicationError:
                    continue
        return names

    def _apply(self, doc: dict[str, Any], spec: ProtectionSpec, source_id: str, site_id: str,
               new: bool, keep_unknown: bool = False) -> dict[str, Any]:
        """The settings document with ``spec`` applied (names resolved to identifiers).

        ``keep_unknown``: a VM not found at the protected site is left out instead of raising.
        """
        doc = copy.deepcopy(doc)
        at = self._resolver(site_id)
        basic = doc["Basic"]
        basic.update(Name=spec.name, RpoInSeconds=spec.rpo_seconds, JournalHistoryInHours=spec.journal_history_hours,
                     Priority=spec.priority, UseWanCompression=spec.use_wan_compression)
        if spec.test_interval_minutes is not None:
            basic["TestIntervalInMinutes"] = spec.test_interval_minutes
        if new:
            basic["ProtectedSiteIdentifier"], basic["RecoverySiteIdentifier"] = source_id, site_id
        journal = doc.setdefault("Journal", {}) or {}
        limits = journal.setdefault("Limitation", {}) or {}
        if spec.journal_hard_limit_mb is not None:
            limits["HardLimitInMB"] = spec.journal_hard_limit_mb
        if spec.journal_warning_mb is not None:
            limits["WarningThresholdInMB"] = spec.journal_warning_mb
        if spec.journal_datastore is not None:
            journal["DatastoreIdentifier"] = at("datastores", spec.journal_datastore)
        rec = doc.setdefault("Recovery", {}) or {}
        for key, kind, ref in (("DefaultHostClusterIdentifier", "hostclusters", spec.recovery_cluster),
                               ("DefaultHostIdentifier", "hosts", spec.recovery_host),
                               ("DefaultDatastoreIdentifier", "datastores", spec.recovery_datastore),
                               ("DefaultFolderIdentifier", "folders", spec.recovery_folder),
                               ("ResourcePoolIdentifier", "resourcepools", spec.recovery_resource_pool)):
            if ref is not None:
                rec[key] = at(kind, ref)
        nets = doc.setdefault("Networks", {}) or {}
        for side, ref in (("Failover", spec.failover_network), ("FailoverTest", spec.test_network)):
            if ref is not None:
                nets.setdefault(side, {}).setdefault("Hypervisor", {})["DefaultNetworkIdentifier"] = at("networks", ref)
        source_vms = {vm.name: vm.id for vm in self.inventory(source_id, "vms")}
        ids = set(source_vms.values())
        old = {str(v.get("VmIdentifier")): v for v in doc.get("Vms") or []}
        vms = []
        for vp in spec.members:
            vm_id = vp.vm if vp.vm in ids else source_vms.get(vp.vm)
            if vm_id is None:
                if keep_unknown:
                    continue
                raise ReplicationNotFound(f"VM {vp.vm!r} not found at the protected site")
            vms.append(self._vm_entry(old.get(vm_id) or {"VmIdentifier": vm_id}, vp, at))
        doc["Vms"] = vms
        return doc

    @staticmethod
    def _ip(ip: IpSettings) -> dict[str, Any]:
        return {"IsDhcp": ip.dhcp, "StaticIp": ip.ip, "SubnetMask": ip.subnet_mask, "Gateway": ip.gateway,
                "PrimaryDns": ip.primary_dns, "SecondaryDns": ip.secondary_dns}

    def _vm_entry(self, entry: dict[str, Any], vp: VmProtection,
                  at: Callable[[str, str | None], str | None]) -> dict[str, Any]:
        entry = copy.deepcopy(entry)
        if vp.recovery_folder is not None or vp.recovery_datastore is not None:
            rec = entry.setdefault("Recovery", {}) or {}
            if vp.recovery_folder is not None:
                rec["FolderIdentifier"] = at("folders", vp.recovery_folder)
            if vp.recovery_datastore is not None:
                rec["DatastoreIdentifier"] = at("datastores", vp.recovery_datastore)
        if vp.boot_group is not None:
            entry["BootGroupIdentifier"] = vp.boot_group
        nics = entry.setdefault("Nics", []) or []
        for mapping in vp.nics:
            nic = next((n for n in nics if str(n.get("NicIdentifier", "")).lower() == mapping.nic.lower()), None)
            if nic is None:
                nic = {"NicIdentifier": mapping.nic}
                nics.append(nic)
            for side, net, ip in (("Failover", mapping.failover_network, mapping.failover_ip),
                                  ("FailoverTest", mapping.test_network, mapping.test_ip)):
                hyp = nic.setdefault(side, {}).setdefault("Hypervisor", {})
                if net is not None:
                    hyp["NetworkIdentifier"] = at("networks", net)
                hyp["ShouldReplaceMacAddress"] = mapping.replace_mac
                if ip is not None:
                    hyp["ShouldReplaceIpConfiguration"] = True
                    hyp["IpConfig"] = self._ip(ip)
                    hyp["DnsSuffix"] = ip.dns_suffix
        entry["Nics"] = nics
        return entry

    def unprotect(self, group: str, force: bool = False) -> ReplicationTask | None:
        try:
            vpg_id = self._vpg_id(group)
        except ReplicationNotFound:
            return None  # gone already
        path = f"/v1/vpgs/{vpg_id}"
        data = self.request("DELETE", path, json={"Force": force, "KeepRecoveryVolumes": False})
        return self._started(self._task_id(data, f"DELETE {path}"), "RemoveProtectionGroup", vpg_id)

    # --- checkpoints --------------------------------------------------------------------

    def _point(self, data: Any, endpoint: str) -> RecoveryPoint:
        if not isinstance(data, dict) or not data.get("CheckpointIdentifier"):
            raise ReplicationResponseError(f"{endpoint}: not a checkpoint")
        ts = _ts(data.get("TimeStamp"))
        if ts is None:
            raise ReplicationResponseError(f"{endpoint}: checkpoint without a valid TimeStamp")
        tag = data.get("Tag") or None
        return RecoveryPoint(id=str(data["CheckpointIdentifier"]), timestamp=ts, tag=tag,
                             app_consistent=bool(tag) and str(tag).lower() in self.app_consistent_tags)

    def recovery_points(self, group: str, since: datetime | None = None,
                        until: datetime | None = None) -> list[RecoveryPoint]:
        vpg_id = self._vpg_id(group)
        path = f"/v1/vpgs/{vpg_id}/checkpoints"
        params = {}
        if since is not None:
            params["startDate"] = _iso(since)
        if until is not None:
            params["endDate"] = _iso(until)
        points = [self._point(d, f"GET {path}") for d in self._list(self.request("GET", path, params=params),
                                                                    f"GET {path}")]
        return sorted(points, key=lambda p: p.timestamp)

    def tag_recovery_point(self, group: str, tag: str) -> RecoveryPoint:
        vpg_id = self._vpg_id(group)
        path = f"/v1/vpgs/{vpg_id}/Checkpoints"
        data = self.request("POST", path, json={"checkpointName": tag})
        if isinstance(data, dict) and data.get("CheckpointIdentifier"):
            return self._point(data, f"POST {path}")
        # Older ZVMs answer with no body: find the point we just inserted.
        tagged = [p for p in self.recovery_points(vpg_id) if p.tag == tag]
        if not tagged:
            raise ReplicationResponseError(f"POST {path}: the tagged checkpoint does not appear in the journal")
        return tagged[-1]

    # --- recovery actions ---------------------------------------------------------------

    def _started(self, task_id: str, task_type: str, vpg_id: str) -> ReplicationTask:
        return ReplicationTask(id=task_id, type=task_type, kind=operation_kind(task_type),
                               state=TaskState.IN_PROGRESS, group_ids=[vpg_id])

    def _action(self, vpg_id: str, action: str, body: dict[str, Any] | None) -> ReplicationTask:
        path = f"/v1/vpgs/{vpg_id}/{action}"
        data = self.request("POST", path, json=body if body is not None else {})
        return self._started(self._task_id(data, f"POST {path}"), action, vpg_id)

    def _vm_ids(self, group: ReplicationGroup, vms: Iterable[str] | None) -> list[str] | None:
        if vms is None:
            return None
        members = self.protected_vms(group.id)
        out = []
        for ref in vms:
            match = next((m.id for m in members if ref in (m.id, m.name)), None)
            if match is None:
                raise ReplicationNotFound(f"VM {ref!r} is not protected by VPG {group.name!r}")
            out.append(match)
        return out

    def start_test(self, group: str, recovery_point: str | None = None,
                   vms: Iterable[str] | None = None) -> ReplicationTask:
        g = self.status(group)
        body: dict[str, Any] = {}
        if recovery_point:
            body["CheckpointIdentifier"] = recovery_point
        ids = self._vm_ids(g, vms)
        if ids is not None:
            body["VmIdentifiers"] = ids
        return self._action(g.id, "FailoverTest", body)

    def stop_test(self, group: str, success: bool = True, summary: str = "") -> ReplicationTask:
        return self._action(self._vpg_id(group), "FailoverTestStop",
                            {"FailoverTestSuccess": success, "FailoverTestSummary": summary})

    def failover(self, group: str, options: FailoverOptions | None = None) -> ReplicationTask:
        opts = options or FailoverOptions()
        g = self.status(group)
        if opts.planned:
            return self._action(g.id, "move", {
                "CommitPolicy": COMMIT_POLICY[opts.commit], "ForceShutdown": opts.shutdown_source == "force",
                "ReverseProtection": opts.reverse_protection, "KeepSourceVms": opts.keep_source_vms})
        body: dict[str, Any] = {
            "CommitPolicy": COMMIT_POLICY[opts.commit], "ShutdownPolicy": SHUTDOWN_POLICY[opts.shutdown_source],
            "TimeToWaitBeforeShutdownInSec": 0, "IsReverseProtection": opts.reverse_protection,
        }
        if opts.recovery_point:
            body["CheckpointIdentifier"] = opts.recovery_point
        ids = self._vm_ids(g, opts.vms)
        if ids is not None:
            body["VmIdentifiers"] = ids
        return self._action(g.id, "Failover", body)

    def commit(self, group: str, reverse_protection: bool = False) -> ReplicationTask:
        g = self.status(group)
        if g.state == GroupState.MOVING:
            return self._action(g.id, "moveCommit", {"ReverseProtection": reverse_protection, "KeepSourceVms": False})
        return self._action(g.id, "FailoverCommit", {"IsReverseProtection": reverse_protection})

    def rollback(self, group: str) -> ReplicationTask:
        g = self.status(group)
        return self._action(g.id, "moveRollback" if g.state == GroupState.MOVING else "FailoverRollback", None)

    def pause(self, group: str) -> ReplicationTask:
        """``POST /v1/vpgs/{id}/Pause`` (PauseProtection): replication stops, the journal is kept."""
        return self._action(self._vpg_id(group), "Pause", None)

    def resume(self, group: str) -> ReplicationTask:
        """``POST /v1/vpgs/{id}/Resume`` (ResumeProtection): replication catches up from where it paused."""
        return self._action(self._vpg_id(group), "Resume", None)

    def reverse(self, group: str) -> ReplicationTask | None:
        g = self.status(group)
        if g.awaiting_commit:
            return self.commit(g.id, reverse_protection=True)
        if g.replicating and g.reversed:
            return None  # already protected from the other site
        if g.state == GroupState.RECOVERED:
            # Committed without reverse protection (Needs Configuration): editing the VPG and saving
            # it configures protection from the recovered VMs back to the original site.
            sid = self._task_id(self.request("POST", "/v1/vpgSettings", json={"VpgIdentifier": g.id}),
                                "POST /v1/vpgSettings", field="VpgSettingsIdentifier")
            path = f"/v1/vpgSettings/{sid}/commit"
            return self._started(self._task_id(self.request("POST", path), f"POST {path}"),
                                 "UpdateProtectionGroup", g.id)
        raise ReplicationRequestRejected(
            f"VPG {g.name!r} is {g.status}/{g.substatus}: Zerto reverses protection when a failover or "
            "move is committed; fail over (or move) first, then reverse")

    # --- waiting ------------------------------------------------------------------------

    def task(self, task_id: str, limit_s: float | None = None) -> ReplicationTask:
        """The task as the ZVM reports it now."""
        path = f"/v1/tasks/{task_id}"
        data = self.request("GET", path, limit_s=limit_s)
        if not isinstance(data, dict):
            raise ReplicationResponseError(f"GET {path}: not a task")
        raw_state: Any = (data.get("Status") or {}).get("State")
        try:
            state = TaskState(int(raw_state))
        except (TypeError, ValueError):
            raise ReplicationResponseError(f"GET {path}: task without a known Status.State") from None
        vpgs = ((data.get("RelatedEntities") or {}).get("Vpgs")) or []
        task_type = str(data.get("Type", ""))
        return ReplicationTask(
            id=str(data.get("TaskIdentifier", task_id)), type=task_type, kind=operation_kind(task_type),
            state=state, progress=int(data.get("Progress") or 0), started=_ts(data.get("Started")),
            completed=_ts(data.get("Completed")), reason=data.get("CompleteReason"),
            group_ids=[str(v.get("identifier")) for v in vpgs if isinstance(v, dict) and v.get("identifier")],
        )

    def wait_task(self, task: str | ReplicationTask, timeout_s: float | None = None, *,
                  deadline: Deadline | None = None) -> ReplicationTask:
        task_id = task.id if isinstance(task, ReplicationTask) else task
        limit = wait_limit(deadline, timeout_s, f"task {task_id}")
        end = self._clock() + limit.remaining()  # the deadline on this client's (injectable) clock
        pause = self.poll_interval_s
        last_error: ReplicationTransientError | None = None
        current: ReplicationTask | None = None
        while True:
            remaining = end - self._clock()
            if remaining <= 0:
                where = f"at {current.progress}%" if current else "never answered"
                raise ReplicationDeadlineExceeded(
                    f"task {task_id} not finished by its deadline {limit.describe()} ({where})") from last_error
            try:
                current = self.task(task_id, limit_s=remaining)
                last_error = None
            except ReplicationTransientError as exc:  # a blip while polling is not a failed task
                last_error = exc
            if current is not None and current.state.terminal and last_error is None:
                if current.state == TaskState.COMPLETED:
                    return current
                error = _failure_class(current.kind)
                raise error(f"task {task_id} ({current.type}) ended {current.state.name}: "
                            f"{current.reason or 'no reason given'}", current)
            remaining = end - self._clock()
            if remaining > 0:
                self._sleep(min(pause, remaining))
            pause = min(pause * 1.5, self.max_poll_interval_s)

    def wait_for_state(self, group: str, states: Iterable[GroupState], timeout_s: float | None = None, *,
                       deadline: Deadline | None = None) -> ReplicationGroup:
        wanted = set(states)
        limit = wait_limit(deadline, timeout_s, f"VPG {group}")
        end = self._clock() + limit.remaining()
        pause = self.poll_interval_s
        current: ReplicationGroup | None = None
        last_error: ReplicationTransientError | None = None
        while True:
            remaining = end - self._clock()
            if remaining <= 0:
                now = f"{current.status}/{current.substatus}" if current else "unknown"
                raise ReplicationDeadlineExceeded(
                    f"VPG {group!r} not {'/'.join(sorted(s.value for s in wanted))} by its deadline "
                    f"{limit.describe()} (now {now})") from last_error
            try:
                current = self.status(group, limit_s=remaining)
                last_error = None
                if current.state in wanted:
                    return current
            except ReplicationTransientError as exc:
                last_error = exc
            remaining = end - self._clock()
            if remaining > 0:
                self._sleep(min(pause, remaining))
            pause = min(pause * 1.5, self.max_poll_interval_s)

    def running_operation(self, group: str, kind: OperationKind) -> ReplicationTask | None:
        """An in-progress ZVM task of ``kind`` on the VPG, if the ZVM lists one."""
        try:
            group_id = self._vpg_id(group)
            data = self.request("GET", "/v1/tasks", params={"vpgIdentifier": group_id})
        except ReplicationNotFound:
            return None
        types = TASK_TYPES.get(kind, ())
        for item in self._list(data, "GET /v1/tasks"):
            state = (item.get("Status") or {}).get("State")
            vpgs = [str(v.get("identifier")) for v in ((item.get("RelatedEntities") or {}).get("Vpgs") or [])]
            task_type = str(item.get("Type", ""))
            if state == TaskState.IN_PROGRESS and task_type.lower() in types and group_id in vpgs:
                return ReplicationTask(id=str(item["TaskIdentifier"]), type=task_type, kind=kind,
                                       state=TaskState.IN_PROGRESS, progress=int(item.get("Progress") or 0),
                                       group_ids=[group_id])
        return None


#: Settings paths shown by their meaning, not the ZVM's key names.
_LABELS = {
    "Basic.RpoInSeconds": "rpo (s)", "Basic.JournalHistoryInHours": "journal history (h)",
    "Basic.Priority": "priority", "Basic.UseWanCompression": "WAN compression",
    "Basic.TestIntervalInMinutes": "test interval (min)",
    "Journal.Limitation.HardLimitInMB": "journal hard limit (MB)",
    "Journal.Limitation.WarningThresholdInMB": "journal warning (MB)",
    "Journal.DatastoreIdentifier": "journal datastore",
    "Recovery.DefaultHostClusterIdentifier": "recovery cluster", "Recovery.DefaultHostIdentifier": "recovery host",
    "Recovery.DefaultDatastoreIdentifier": "recovery datastore", "Recovery.DefaultFolderIdentifier": "recovery folder",
    "Recovery.ResourcePoolIdentifier": "recovery resource pool",
    "Networks.Failover.Hypervisor.DefaultNetworkIdentifier": "failover network",
    "Networks.FailoverTest.Hypervisor.DefaultNetworkIdentifier": "test network",
}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": leaf}`` of a settings document; NIC lists are keyed by their NicIdentifier."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
    elif isinstance(value, list) and prefix.endswith("Nics."):
        for nic in value:
            if isinstance(nic, dict):
                label = str(nic.get("NicIdentifier", "?"))
                out.update(_flatten({k: v for k, v in nic.items() if k != "NicIdentifier"},
                                    f"{prefix[:-5]}nic {label}."))
    else:
        out[prefix[:-1]] = value
    return out


def _without_membership(doc: dict[str, Any]) -> dict[str, Any]:
    """The flattened settings without the VMs and the RPO (what :meth:`ZertoClient.plan_protect` compares)."""
    flat = _flatten({k: v for k, v in doc.items() if k != "Vms"})
    flat.pop("Basic.RpoInSeconds", None)
    return flat


def _flat_diff(current: dict[str, Any], wanted: dict[str, Any], names: dict[str, str]) -> list[str]:
    """``~ what: old -> new`` per leaf that differs (a missing leaf equals None)."""
    def show(value: Any) -> str:
        return names.get(str(value), str(value)) if value is not None else "none"

    lines = []
    for path in sorted(set(current) | set(wanted)):
        old, new = current.get(path), wanted.get(path)
        if old == new or (old in (None, "") and new in (None, "")):
            continue
        label = _LABELS.get(path) or path.replace("Hypervisor.", "").replace("Identifier", "").replace(".", " ")
        lines.append(f"~ {label}: {show(old)} -> {show(new)}")
    return lines
