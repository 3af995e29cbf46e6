"""State machine of the lab's replication manager (a ZVM imitation), independent of HTTP.

It keeps sessions, VPG settings being edited, VPGs with their checkpoint journal, tasks and
fault modes. Checkpoints are produced lazily from the clock (one every
``checkpoint_interval_s``, every ``app_consistent_every``-th one tagged as
application-consistent), so RPO is measurable without a busy background loop. Recovery
actions run as tasks on a small thread pool: they create, power and destroy VMs through a
:class:`~lab.zerto.vsphere.VSphereBackend` and take at least ``task_duration_s`` so clients
have to poll, as with a real ZVM.
"""

from __future__ import annotations

import copy
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from lab.zerto.vsphere import ITEM_KINDS, Item, NewNic, NewVm, VmInfo, VSphereBackend, VSphereError

#: The ZVM version the lab imitates: the Linux ZVM appliance 10.0, whose login is Keycloak's.
ZVM_VERSION = "10.0"

#: ``GET /v1/vpgs/statuses``: index = the numeric Status of a VPG (the documented API v1 order).
VPG_STATUSES = [
    "Initializing", "MeetingSLA", "NotMeetingSLA", "HistoryNotMeetingSLA", "RpoNotMeetingSLA",
    "FailingOver", "Moving", "Deleting", "Recovered",
]
#: ``GET /v1/vpgs/substatuses``: index = the numeric SubStatus.
VPG_SUBSTATUSES = [
    "None", "InitialSync", "Creating", "VolumeInitialSync", "Sync", "RecoveryPossible", "DeltaSync",
    "NeedsConfiguration", "Error", "EmptyProtectionGroup", "DisconnectedFromPeerNoRecoveryPoints",
    "FullSync", "VolumeDeltaSync", "VolumeFullSync", "FailingOverCommitting", "FailingOverBeforeCommit",
    "FailingOverRollingBack", "Promoting", "MovingCommitting", "MovingBeforeCommit", "MovingRollingBack",
    "Deleting", "PendingRemove", "BitmapSync", "DisconnectedFromPeer", "ReplicationPausedUserInitiated",
    "ReplicationPausedSystemInitiated", "RecoveryStorageProfileError", "Backup", "RollingBack",
    "RecoveryStorageError", "JournalStorageError", "VmNotProtectedError",
]
#: The other list-of-values endpoints of ``/v1/vpgs`` (index = the numeric value in VPG documents).
VPG_PRIORITIES = ["Low", "Medium", "High"]
VPG_COMMIT_POLICIES = ["Rollback", "Commit", "None"]  # Failover CommitPolicy 0, 1, 2
VPG_SHUTDOWN_POLICIES = ["None", "Shutdown", "ForceShutdown"]  # Failover ShutdownPolicy 0, 1, 2
VPG_RETENTION_POLICIES = ["Backup", "Standard"]
VPG_ENTITY_TYPES = ["VCVpg", "VCvApp", "VCDvApp", "AWS", "HyperV"]
S = {name: i for i, name in enumerate(VPG_STATUSES)}
SS = {name: i for i, name in enumerate(VPG_SUBSTATUSES)}

#: Task states of ``GET /v1/tasks/{id}`` (``Status.State``).
TASK_STATES = {1: "InProgress", 2: "WaitingForUserInput", 3: "Paused", 4: "Failed", 5: "Stopped",
               6: "Completed", 7: "Cancelling"}
IN_PROGRESS, FAILED, COMPLETED = 1, 4, 6

PRIORITIES = {"low": 0, "medium": 1, "high": 2}
MAX_TASKS = 5000
TEST_SUFFIX = " - testing recovery"
BOOT_GROUP_DEFAULT = "00000000-0000-0000-0000-000000000000"
FaultMode = Literal["http503", "slow", "drop", "task_failed", "task_stuck"]


class ApiError(Exception):
    """An API error: HTTP status and a message for the ``{"Message": ...}`` body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SimConfig(BaseModel):
    """Settings of the simulator (from the lab config's ``replication`` section)."""

    username: str
    password: str
    protected_site_name: str = "Protected-Site"
    recovery_site_name: str = "Recovery-Site"
    protected_site_key: str = "protected"
    recovery_site_key: str = "recovery"
    checkpoint_interval_s: float = 5.0
    app_consistent_every: int = 6
    app_consistent_tag: str = "VSS"
    initial_sync_s: float = 3.0
    task_duration_s: float = 1.0
    session_ttl_s: float = 1800.0
    token_ttl_s: float = 300.0
    keycloak_client_id: str = "zerto-client"
    version: str = ZVM_VERSION
    task_workers: int = 4


class Fault(BaseModel):
    """A fault mode: applies to the next ``count`` matching requests (all of them if None)."""

    mode: FaultMode
    count: int | None = Field(default=None, ge=1)
    delay_s: float = Field(default=2.0, ge=0, le=120)
    path_regex: str = r"^/(v1|auth)/"
    method: str | None = None


# --- settings documents -----------------------------------------------------------------

_KNOWN_KEYS = [
    "VpgSettingsIdentifier", "VpgIdentifier", "Basic", "Name", "VpgType", "RpoInSeconds",
    "JournalHistoryInHours", "Priority", "TestIntervalInMinutes", "UseWanCompression",
    "ProtectedSiteIdentifier", "RecoverySiteIdentifier", "ServiceProfileIdentifier",
    "ZorgIdentifier", "Journal", "DatastoreIdentifier", "Limitation", "HardLimitInMB",
    "HardLimitInPercent", "WarningThresholdInMB", "WarningThresholdInPercent", "Recovery",
    "DefaultHostClusterIdentifier", "DefaultHostIdentifier", "DefaultDatastoreIdentifier",
    "DefaultDatastoreClusterIdentifier", "DefaultFolderIdentifier", "ResourcePoolIdentifier",
    "Networks", "Failover", "FailoverTest", "Hypervisor", "DefaultNetworkIdentifier", "Vms",
    "VmIdentifier", "BootGroupIdentifier", "HostClusterIdentifier", "HostIdentifier",
    "FolderIdentifier", "Nics", "NicIdentifier", "NetworkIdentifier", "ShouldReplaceMacAddress",
    "ShouldReplaceIpConfiguration", "IpConfig", "IsDhcp", "StaticIp", "SubnetMask", "Gateway",
    "PrimaryDns", "SecondaryDns", "DnsSuffix", "BootGroups", "BootDelayInSeconds", "Volumes",
    "Scripting", "Extensibility", "IsCompressionEnabled",
]
_CANON = {k.lower(): k for k in _KNOWN_KEYS}


def canon(value: Any) -> Any:
    """The document with known keys in the ZVM's spelling (the ZVM reads JSON case-insensitively)."""
    if isinstance(value, dict):
        return {_CANON.get(str(k).lower(), k): canon(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canon(v) for v in value]
    return value


def ci_get(body: Any, key: str, default: Any = None) -> Any:
    """``body[key]`` matching the key case-insensitively."""
    if not isinstance(body, dict):
        return default
    low = key.lower()
    for k, v in body.items():
        if str(k).lower() == low:
            return v
    return default


def default_settings(sid: str, protected_site: str, recovery_site: str) -> dict[str, Any]:
    """A new VPG settings document with the ZVM's defaults."""
    return {
        "VpgSettingsIdentifier": sid,
        "VpgIdentifier": None,
        "Basic": {
            "Name": None, "VpgType": "Remote", "RpoInSeconds": 300, "JournalHistoryInHours": 24,
            "Priority": "Medium", "TestIntervalInMinutes": 262080, "UseWanCompression": True,
            "ProtectedSiteIdentifier": protected_site, "RecoverySiteIdentifier": recovery_site,
            "ServiceProfileIdentifier": None, "ZorgIdentifier": None,
        },
        "Journal": {
            "DatastoreIdentifier": None,
            "Limitation": {"HardLimitInMB": 153600, "HardLimitInPercent": None,
                           "WarningThresholdInMB": 115200, "WarningThresholdInPercent": None},
        },
        "Recovery": {
            "DefaultHostClusterIdentifier": None, "DefaultHostIdentifier": None,
            "DefaultDatastoreIdentifier": None, "DefaultDatastoreClusterIdentifier": None,
            "DefaultFolderIdentifier": None, "ResourcePoolIdentifier": None,
        },
        "Networks": {
            "Failover": {"Hypervisor": {"DefaultNetworkIdentifier": None}},
            "FailoverTest": {"Hypervisor": {"DefaultNetworkIdentifier": None}},
        },
        "BootGroups": {"BootGroups": [{"BootGroupIdentifier": BOOT_GROUP_DEFAULT, "Name": "Default",
                                       "BootDelayInSeconds": 0}]},
        "Vms": [],
    }


def merge(base: Any, update: Any) -> Any:
    """``update`` laid over ``base`` (dicts merge recursively; anything else replaces)."""
    if isinstance(base, dict) and isinstance(update, dict):
        out = dict(base)
        for k, v in update.items():
            out[k] = merge(base.get(k), v) if k in base else v
        return out
    return copy.deepcopy(update)


SECTIONS = {"basic": "Basic", "journal": "Journal", "recovery": "Recovery", "networks": "Networks",
            "bootgroup": "BootGroups", "bootgroups": "BootGroups", "scripting": "Scripting"}


def _nic_entry(label: str) -> dict[str, Any]:
    side = {"Hypervisor": {"NetworkIdentifier": None, "ShouldReplaceMacAddress": False,
                           "IpConfig": None, "DnsSuffix": None}}
    return {"NicIdentifier": label, "Failover": copy.deepcopy(side), "FailoverTest": copy.deepcopy(side)}


# --- runtime objects --------------------------------------------------------------------


@dataclass
class Site:
    identifier: str
    name: str
    key: str  # the vSphere backend's site key


@dataclass
class Checkpoint:
    identifier: str
    ts: float
    tag: str | None = None


@dataclass
class RecoveredVm:
    source_vm: str  # the Zerto VM identifier of the source
    name: str
    site: str  # backend site key where it was created
    key: str  # its moref there
    kind: str  # test | failover | move


@dataclass
class Operation:
    """A failover or move between its start and its commit or rollback."""

    kind: str  # failover | move
    stage: str  # starting | before_commit | committing | rolling_back
    checkpoint: str
    vm_ids: list[str]
    started: float
    recovered: list[RecoveredVm] = field(default_factory=list)
    powered_off: list[str] = field(default_factory=list)  # source morefs we shut down


@dataclass
class TestRun:
    stage: str  # starting | running | stopping
    checkpoint: str
    vm_ids: list[str]
    started: float
    recovered: list[RecoveredVm] = field(default_factory=list)


@dataclass
class Vpg:
    identifier: str
    settings: dict[str, Any]
    protected: str  # site identifier (source of replication)
    recovery: str  # site identifier (target)
    created: float
    sync_substatus: int = SS["Creating"]
    sync_started: float | None = None
    sync_until: float | None = None
    replicating: bool = False
    link_down: bool = False
    paused: bool = False  # PauseProtection: no new checkpoints, SubStatus ReplicationPausedUserInitiated
    recovered_final: bool = False
    deleting: bool = False
    next_cp_at: float | None = None
    cp_seq: int = 0
    checkpoints: list[Checkpoint] = field(default_factory=list)
    test: TestRun | None = None
    op: Operation | None = None
    pending_task: str | None = None
    last_test: dict[str, Any] | None = None
    # Where each VM came from, so a reversed VPG recovers it back to its original place.
    origins: dict[str, dict[str, Any]] = field(default_factory=dict)
    # A failover committed without reverse protection ("Needs Configuration"): its recovered VMs,
    # so that editing the VPG later configures reverse protection from them.
    final_op: Operation | None = None

    @property
    def name(self) -> str:
        return str(self.settings["Basic"].get("Name") or "")


@dataclass
class Task:
    identifier: str
    type: str
    vpg: str | None
    started: float
    state: int = IN_PROGRESS
    completed: float | None = None
    reason: str | None = None


def iso(ts: float | None) -> str | None:
    """A ZVM timestamp: UTC ISO 8601 with milliseconds and ``Z``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str | None) -> float | None:
    """Parse a ``startDate``/``endDate`` query value (ISO 8601; naive means UTC)."""
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise ApiError(400, f"Invalid date {text!r}: use ISO 8601, e.g. 2026-01-31T12:00:00Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


class ZertoSim:
    """The simulated ZVM. Thread-safe: HTTP handlers and task threads share one lock."""

    def __init__(self, config: SimConfig, backend: VSphereBackend, clock: Callable[[], float] = time.time) -> None:
        self.cfg = config
        self.backend = backend
        self.clock = clock
        self.lock = threading.RLock()
        self.local = Site(self._site_id(config.protected_site_name), config.protected_site_name,
                          config.protected_site_key)
        self.peer = Site(self._site_id(config.recovery_site_name), config.recovery_site_name,
                         config.recovery_site_key)
        self.sites = {s.identifier: s for s in (self.local, self.peer)}
        self.sessions: dict[str, float] = {}
        self.tokens: dict[str, float] = {}
        self.settings: dict[str, dict[str, Any]] = {}
        self.vpgs: dict[str, Vpg] = {}
        self.tasks: dict[str, Task] = {}
        self.faults: list[Fault] = []
        self._cp_counter = 1000
        self._executor = ThreadPoolExecutor(max_workers=config.task_workers, thread_name_prefix="zvm-task")

    @staticmethod
    def _site_id(name: str) -> str:
        # Stable across restarts, so a client's saved identifiers keep working.
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"zerto-lab-site:{name}"))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- auth ---------------------------------------------------------------------------

    def _creds_ok(self, username: str, password: str) -> bool:
        return secrets.compare_digest(username.encode(), self.cfg.username.encode()) and \
            secrets.compare_digest(password.encode(), self.cfg.password.encode())

    def login_session(self, username: str, password: str) -> str:
        if not self._creds_ok(username, password):
            raise ApiError(401, "Invalid user name or password.")
        token = secrets.token_hex(24)
        with self.lock:
            self._prune(self.sessions)
            self.sessions[token] = self.clock() + self.cfg.session_ttl_s
        return token

    def _prune(self, table: dict[str, float]) -> None:
        """Forget expired sessions or tokens (clients that never log out leave them behind)."""
        if len(table) > 256:
            now = self.clock()
            for key in [k for k, until in table.items() if until <= now]:
                del table[key]

    def login_token(self, form: dict[str, str]) -> dict[str, Any]:
        """Keycloak's password grant: returns the token response (``access_token`` etc.)."""
        if form.get("grant_type") != "password":
            raise ApiError(400, "unsupported_grant_type")
        if form.get("client_id") != self.cfg.keycloak_client_id:
            raise ApiError(401, "invalid_client")
        if not self._creds_ok(form.get("username", ""), form.get("password", "")):
            raise ApiError(401, "invalid_grant")
        token = secrets.token_urlsafe(32)
        with self.lock:
            self._prune(self.tokens)
            self.tokens[token] = self.clock() + self.cfg.token_ttl_s
        return {"access_token": token, "expires_in": int(self.cfg.token_ttl_s), "token_type": "Bearer",
                "refresh_expires_in": 0, "not-before-policy": 0, "scope": "profile email"}

    def authorized(self, session: str | None, authorization: str | None) -> bool:
        now = self.clock()
        with self.lock:
            if session and self.sessions.get(session, 0) > now:
                self.sessions[session] = now + self.cfg.session_ttl_s  # idle timeout
                return True
            if authorization and authorization[:7].lower() == "bearer ":
                return self.tokens.get(authorization[7:].strip(), 0) > now
        return False

    def logout(self, session: str | None) -> None:
        with self.lock:
            if session:
                self.sessions.pop(session, None)

    def expire_sessions(self) -> int:
        with self.lock:
            n = len(self.sessions) + len(self.tokens)
            self.sessions.clear()
            self.tokens.clear()
            return n

    # --- faults -------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> list[dict[str, Any]]:
        try:
            re.compile(fault.path_regex)
        except re.error as exc:
            raise ApiError(400, f"path_regex is not a valid regular expression: {exc}") from None
        with self.lock:
            self.faults.append(fault)
            return [f.model_dump() for f in self.faults]

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, path: str, method: str, modes: tuple[str, ...]) -> Fault | None:
        """The first active fault of ``modes`` matching the request, consuming one use of it."""
        with self.lock:
            for fault in list(self.faults):
                if fault.mode not in modes or not re.search(fault.path_regex, path, re.IGNORECASE):
                    continue
                if fault.method and fault.method.upper() != method.upper():
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                return fault.model_copy()
        return None

    # --- sites and inventory --------------------------------------------------------------

    def _site(self, site_id: str) -> Site:
        site = self.sites.get(site_id.lower())
        if site is None:
            raise ApiError(404, f"Site {site_id} not found.")
        return site

    def site_list(self) -> list[dict[str, Any]]:
        return [{"SiteIdentifier": s.identifier, "VirtualizationSiteName": s.name,
                 "Link": {"href": f"/v1/virtualizationsites/{s.identifier}", "rel": None, "type": "SiteApi"}}
                for s in self.sites.values()]

    def local_site(self) -> dict[str, Any]:
        return {"SiteIdentifier": self.local.identifier, "SiteName": self.local.name, "SiteType": "VCenter",
                "Location": "Lab", "ContactName": "lab", "ContactEmail": "lab@example.invalid",
                "Version": self.cfg.version, "IsReplicationToSelfEnabled": False,
                "Link": {"href": "/v1/localsite", "rel": None, "type": "LocalSiteApi"}}

    def peer_sites(self) -> list[dict[str, Any]]:
        return [{"SiteIdentifier": self.peer.identifier, "PeerSiteName": self.peer.name, "HostName": "127.0.0.1",
                 "Port": 9081, "PairingStatus": 0, "Location": "Lab", "Version": self.cfg.version}]

    @staticmethod
    def obj_id(site: Site, key: str) -> str:
        return f"{site.identifier}.{key}"

    def site_vms(self, site_id: str) -> list[dict[str, Any]]:
        site = self._site(site_id)
        return [{"VmIdentifier": self.obj_id(site, vm.moref), "VmName": vm.name}
                for vm in self.backend.list_vms(site.key)]

    _ITEM_FIELDS: ClassVar[dict[str, tuple[str, str]]] = {
        "networks": ("NetworkIdentifier", "VirtualizationNetworkName"),
        "folders": ("FolderIdentifier", "FolderName"),
        "hostclusters": ("ClusterIdentifier", "VirtualizationClusterName"),
        "hosts": ("HostIdentifier", "VirtualizationHostName"),
        "datastores": ("DatastoreIdentifier", "DatastoreName"),
        "resourcepools": ("ResourcePoolIdentifier", "ResourcepoolName"),
    }

    def site_items(self, site_id: str, kind: str) -> list[dict[str, Any]]:
        site = self._site(site_id)
        if kind not in ITEM_KINDS:
            raise ApiError(404, f"No such resource {kind!r}.")
        id_field, name_field = self._ITEM_FIELDS[kind]
        return [{id_field: self.obj_id(site, it.key), name_field: it.name}
                for it in self.backend.list_items(site.key, kind)]

    def resolve(self, site: Site, kind: str, ref: str | None, cache: dict[str, list[Item]] | None = None) -> Item | None:
        """The inventory object ``ref`` names: a ZVM identifier, a bare moref, or a name."""
        if ref in (None, ""):
            return None
        items = (cache or {}).get(kind)
        if items is None:
            items = self.backend.list_items(site.key, kind)
            if cache is not None:
                cache[kind] = items
        ref = str(ref)
        prefix = site.identifier + "."
        bare = ref[len(prefix):] if ref.lower().startswith(prefix) else ref
        for it in items:
            if it.key == bare:
                return it
        for it in items:
            if it.name == bare:
                return it
        raise ApiError(400, f"{kind[:-1].capitalize()} {ref!r} not found at site {site.name}.")

    def _split_vm_id(self, vm_id: str) -> tuple[Site, str]:
        site_id, _, key = str(vm_id).partition(".")
        site = self.sites.get(site_id.lower())
        if site is None or not key:
            raise ApiError(400, f"Invalid VM identifier {vm_id!r}.")
        return site, key

    # --- VPG settings ---------------------------------------------------------------------

    def _settings(self, sid: str) -> dict[str, Any]:
        doc = self.settings.get(sid.lower())
        if doc is None:
            raise ApiError(404, f"VPG settings {sid} not found.")
        return doc

    def create_settings(self, body: Any) -> str:
        body = canon(body) if isinstance(body, dict) else {}
        sid = str(uuid.uuid4())
        vpg_id = body.get("VpgIdentifier")
        with self.lock:
            if vpg_id:
                vpg = self._vpg(str(vpg_id))
                doc = copy.deepcopy(vpg.settings)
                doc["VpgSettingsIdentifier"] = sid
                doc["VpgIdentifier"] = vpg.identifier
            else:
                doc = default_settings(sid, self.local.identifier, self.peer.identifier)
                extra = {k: v for k, v in body.items() if k not in ("VpgSettingsIdentifier", "VpgIdentifier")}
                doc = merge(doc, extra)
            self.settings[sid] = doc
        if doc.get("Vms"):
            self._complete_vms(doc)
        return sid

    def list_settings(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(list(self.settings.values()))

    def get_settings(self, sid: str, section: str | None = None) -> Any:
        with self.lock:
            doc = self._settings(sid)
            if section is None:
                return copy.deepcopy(doc)
            key = SECTIONS.get(section.lower())
            if key is None and section.lower() != "vms":
                raise ApiError(404, f"No settings section {section!r}.")
            return copy.deepcopy(doc.get(key or "Vms"))

    def put_settings(self, sid: str, body: Any, section: str | None = None) -> None:
        body = canon(body)
        with self.lock:
            doc = self._settings(sid)
            if section is None:
                if not isinstance(body, dict):
                    raise ApiError(400, "VPG settings must be a JSON object.")
                fresh = default_settings(doc["VpgSettingsIdentifier"], self.local.identifier, self.peer.identifier)
                body = {k: v for k, v in body.items() if k not in ("VpgSettingsIdentifier", "VpgIdentifier")}
                new = merge(fresh, body)
                new["VpgIdentifier"] = doc.get("VpgIdentifier")
                doc.clear()
                doc.update(new)
            elif section.lower() == "vms":
                if not isinstance(body, list):
                    raise ApiError(400, "Vms must be a JSON array.")
                doc["Vms"] = body
            else:
                key = SECTIONS.get(section.lower())
                if key is None:
                    raise ApiError(404, f"No settings section {section!r}.")
                if not isinstance(body, dict):
                    raise ApiError(400, f"{key} must be a JSON object.")
                base = default_settings("", self.local.identifier, self.peer.identifier).get(key, {})
                doc[key] = merge(base, body)
        self._complete_vms(doc)

    def add_settings_vm(self, sid: str, body: Any) -> str:
        body = canon(body)
        vm_id = ci_get(body, "VmIdentifier")
        if not vm_id:
            raise ApiError(400, "VmIdentifier is required.")
        with self.lock:
            doc = self._settings(sid)
            if any(str(v.get("VmIdentifier")).lower() == str(vm_id).lower() for v in doc["Vms"]):
                raise ApiError(400, f"VM {vm_id} is already in these VPG settings.")
            doc["Vms"].append(body)
        self._complete_vms(doc)
        return str(vm_id)

    def _settings_vm(self, doc: dict[str, Any], vm_id: str) -> dict[str, Any]:
        for vm in doc["Vms"]:
            if str(vm.get("VmIdentifier")).lower() == vm_id.lower():
                return vm
        raise ApiError(404, f"VM {vm_id} is not in these VPG settings.")

    def get_settings_vm(self, sid: str, vm_id: str, nic: str | None = None, nics: bool = False) -> Any:
        with self.lock:
            vm = self._settings_vm(self._settings(sid), vm_id)
            if not nics and nic is None:
                return copy.deepcopy(vm)
            if nic is None:
                return copy.deepcopy(vm.get("Nics") or [])
            return copy.deepcopy(self._nic(vm, nic))

    @staticmethod
    def _nic(vm: dict[str, Any], nic_id: str) -> dict[str, Any]:
        for n in vm.get("Nics") or []:
            if str(n.get("NicIdentifier", "")).lower() == nic_id.lower():
                return n
        raise ApiError(404, f"NIC {nic_id!r} not found on VM {vm.get('VmIdentifier')}.")

    def put_settings_vm(self, sid: str, vm_id: str, body: Any, nic: str | None = None) -> None:
        body = canon(body)
        if not isinstance(body, dict):
            raise ApiError(400, "Body must be a JSON object.")
        with self.lock:
            vm = self._settings_vm(self._settings(sid), vm_id)
            if nic is None:
                vm.clear()
                vm.update(body)
                vm["VmIdentifier"] = vm.get("VmIdentifier") or vm_id
            else:
                entry = self._nic(vm, nic)
                label = entry["NicIdentifier"]
                entry.clear()
                entry.update(merge(_nic_entry(label), body))
                entry["NicIdentifier"] = label
        self._complete_vms(self._settings(sid))

    def delete_settings_vm(self, sid: str, vm_id: str) -> None:
        with self.lock:
            doc = self._settings(sid)
            vm = self._settings_vm(doc, vm_id)
            doc["Vms"].remove(vm)

    def delete_settings(self, sid: str) -> None:
        with self.lock:
            self._settings(sid)
            self.settings.pop(sid.lower(), None)

    def _complete_vms(self, doc: dict[str, Any]) -> None:
        """Give every VM entry the defaults and one Nics entry per NIC of the source VM."""
        with self.lock:
            entries = list(doc.get("Vms") or [])
        by_site: dict[str, dict[str, VmInfo]] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not entry.get("VmIdentifier"):
                continue
            try:
                site, key = self._split_vm_id(str(entry["VmIdentifier"]))
            except ApiError:
                continue  # reported on commit
            if site.key not in by_site:
                by_site[site.key] = {vm.moref: vm for vm in self.backend.list_vms(site.key)}
            src = by_site[site.key].get(key)
            with self.lock:
                entry.setdefault("BootGroupIdentifier", BOOT_GROUP_DEFAULT)
                entry.setdefault("Recovery", {"HostClusterIdentifier": None, "HostIdentifier": None,
                                              "DatastoreIdentifier": None, "FolderIdentifier": None,
                                              "ResourcePoolIdentifier": None})
                nics = entry.get("Nics") or []
                if src is not None:
                    have = {str(n.get("NicIdentifier", "")).lower() for n in nics}
                    for nic in src.nics:
                        if nic.label.lower() not in have:
                            nics.append(_nic_entry(nic.label))
                entry["Nics"] = [merge(_nic_entry(str(n.get("NicIdentifier", ""))), n) for n in nics]

    def _validate(self, doc: dict[str, Any], editing: Vpg | None) -> tuple[Site, Site, dict[str, VmInfo]]:
        """Check a settings document as the ZVM does on commit; returns the sites and source VMs."""
        basic = doc.get("Basic") or {}
        name = str(basic.get("Name") or "").strip()
        if not name:
            raise ApiError(400, "VPG name (Basic.Name) is required.")
        with self.lock:
            for vpg in self.vpgs.values():
                if vpg.name == name and vpg is not editing:
                    raise ApiError(400, f"A VPG named {name!r} already exists.")
        rpo = basic.get("RpoInSeconds")
        if not isinstance(rpo, int) or rpo <= 0:
            raise ApiError(400, "Basic.RpoInSeconds must be a positive integer.")
        hist = basic.get("JournalHistoryInHours")
        if not isinstance(hist, (int, float)) or hist <= 0:
            raise ApiError(400, "Basic.JournalHistoryInHours must be positive.")
        prio = basic.get("Priority")
        if isinstance(prio, str) and prio.lower() not in PRIORITIES or not isinstance(prio, (str, int)):
            raise ApiError(400, "Basic.Priority must be Low, Medium or High.")
        if editing is not None:
            src_site, dst_site = self.sites[editing.protected], self.sites[editing.recovery]
        else:
            src_site = self._site(str(basic.get("ProtectedSiteIdentifier") or self.local.identifier))
            dst_site = self._site(str(basic.get("RecoverySiteIdentifier") or self.peer.identifier))
        if src_site is dst_site:
            raise ApiError(400, "Protected and recovery sites must differ.")
        vms = doc.get("Vms") or []
        if not vms:
            raise ApiError(400, "A VPG needs at least one VM (Vms is empty).")
        source = {vm.moref: vm for vm in self.backend.list_vms(src_site.key)}
        found: dict[str, VmInfo] = {}
        for entry in vms:
            vm_id = str(entry.get("VmIdentifier") or "")
            site, key = self._split_vm_id(vm_id)
            if site is not src_site or key not in source:
                raise ApiError(400, f"VM {vm_id} not found at protected site {src_site.name}.")
            with self.lock:
                for vpg in self.vpgs.values():
                    if vpg is editing:
                        continue
                    if any(str(v.get("VmIdentifier")).lower() == vm_id.lower() for v in vpg.settings["Vms"]):
                        raise ApiError(400, f"VM {source[key].name} is already protected by VPG {vpg.name!r}.")
            found[vm_id.lower()] = source[key]
        cache: dict[str, list[Item]] = {}
        rec = doc.get("Recovery") or {}
        self.resolve(dst_site, "hostclusters", rec.get("DefaultHostClusterIdentifier"), cache)
        self.resolve(dst_site, "hosts", rec.get("DefaultHostIdentifier"), cache)
        self.resolve(dst_site, "datastores", rec.get("DefaultDatastoreIdentifier"), cache)
        self.resolve(dst_site, "folders", rec.get("DefaultFolderIdentifier"), cache)
        self.resolve(dst_site, "resourcepools", rec.get("ResourcePoolIdentifier"), cache)
        self.resolve(dst_site, "datastores", (doc.get("Journal") or {}).get("DatastoreIdentifier"), cache)
        nets = doc.get("Networks") or {}
        for side in ("Failover", "FailoverTest"):
            self.resolve(dst_site, "networks",
                         ((nets.get(side) or {}).get("Hypervisor") or {}).get("DefaultNetworkIdentifier"), cache)
        for entry in vms:
            vrec = entry.get("Recovery") or {}
            self.resolve(dst_site, "hostclusters", vrec.get("HostClusterIdentifier"), cache)
            self.resolve(dst_site, "hosts", vrec.get("HostIdentifier"), cache)
            self.resolve(dst_site, "datastores", vrec.get("DatastoreIdentifier"), cache)
            self.resolve(dst_site, "folders", vrec.get("FolderIdentifier"), cache)
            self.resolve(dst_site, "resourcepools", vrec.get("ResourcePoolIdentifier"), cache)
            for nic in entry.get("Nics") or []:
                for side in ("Failover", "FailoverTest"):
                    hyp = (nic.get(side) or {}).get("Hypervisor") or {}
                    self.resolve(dst_site, "networks", hyp.get("NetworkIdentifier"), cache)
        return src_site, dst_site, found

    def commit_settings(self, sid: str, path: str) -> str:
        with self.lock:
            doc = copy.deepcopy(self._settings(sid))
            editing = self._vpg(doc["VpgIdentifier"]) if doc.get("VpgIdentifier") else None
            if editing is not None and editing.recovered_final:
                return self._configure_reverse(editing, doc, sid, path)
        self._complete_vms(doc)
        src_site, dst_site, source = self._validate(doc, editing)
        with self.lock:
            if editing is not None and editing.identifier not in self.vpgs:
                raise ApiError(404, f"VPG {editing.identifier} not found.")
            self.settings.pop(sid.lower(), None)
            if editing is None:
                vpg_id = str(uuid.uuid4())
                doc["VpgIdentifier"] = vpg_id
                doc["Basic"]["ProtectedSiteIdentifier"] = src_site.identifier
                doc["Basic"]["RecoverySiteIdentifier"] = dst_site.identifier
                vpg = Vpg(identifier=vpg_id, settings=doc, protected=src_site.identifier,
                          recovery=dst_site.identifier, created=self.clock())
                self._remember_origins(vpg, source)
                self.vpgs[vpg_id] = vpg

                def work(task: Task) -> None:
                    time.sleep(self.cfg.task_duration_s)
                    with self.lock:
                        self._start_sync(vpg, SS["InitialSync"])

                return self._start_task("CreateProtectionGroup", vpg, work, path, busy=False)

            vpg = editing

            def apply(task: Task) -> None:
                time.sleep(self.cfg.task_duration_s)
                with self.lock:
                    doc["VpgSettingsIdentifier"] = None
                    vpg.settings = doc
                    self._remember_origins(vpg, source)

            return self._start_task("UpdateProtectionGroup", vpg, apply, path, busy=False)

    def _configure_reverse(self, vpg: Vpg, doc: dict[str, Any], sid: str, path: str) -> str:
        """Commit an edit of a VPG in Needs Configuration: reverse protection from its recovered VMs.

        A failover committed without reverse protection leaves the VPG in Recovered/NeedsConfiguration;
        editing it and saving configures protection back to the original site (the ZVM's reverse
        settings), from the VMs the failover recovered. The edit's Basic section (RPO, journal
        history, priority, ...) is kept; membership and placement come from the recovered VMs and
        where each one came from.
        """
        op = vpg.final_op
        if op is None:
            raise ApiError(400, f"VPG {vpg.name!r} has no recovered VMs to protect back.")
        basic = {k: v for k, v in (doc.get("Basic") or {}).items()
                 if k not in ("ProtectedSiteIdentifier", "RecoverySiteIdentifier", "Name")}
        self.settings.pop(sid.lower(), None)

        def work(task: Task) -> None:
            time.sleep(self.cfg.task_duration_s)
            with self.lock:
                vpg.settings["Basic"].update(basic)
            self._reverse(vpg, op, keep_source=False)

        return self._start_task("UpdateProtectionGroup", vpg, work, path)

    def _remember_origins(self, vpg: Vpg, source: dict[str, VmInfo]) -> None:
        for vm_id, info in source.items():
            vpg.origins.setdefault(vm_id, {"site": vpg.protected, "info": info.model_dump()})

    def _start_sync(self, vpg: Vpg, substatus: int) -> None:
        now = self.clock()
        vpg.sync_substatus = substatus
        vpg.sync_started = now
        vpg.sync_until = now + self.cfg.initial_sync_s
        vpg.replicating = False
        vpg.next_cp_at = None

    # --- VPGs and checkpoints -------------------------------------------------------------

    def _vpg(self, vpg_id: str) -> Vpg:
        vpg = self.vpgs.get(str(vpg_id).lower())
        if vpg is None:
            raise ApiError(404, f"VPG {vpg_id} not found.")
        return vpg

    def _tick(self, vpg: Vpg, now: float) -> None:
        """Bring the VPG's sync state and checkpoint journal up to ``now``."""
        if vpg.sync_until is not None and now >= vpg.sync_until:
            done = vpg.sync_until
            vpg.sync_until = None
            vpg.sync_started = None
            vpg.replicating = True
            vpg.next_cp_at = done
        if vpg.replicating and not vpg.link_down and not vpg.paused and vpg.next_cp_at is not None:
            interval = max(self.cfg.checkpoint_interval_s, 0.01)
            # After a long idle period only the journal's span matters: skip what would be pruned.
            horizon = now - float(vpg.settings["Basic"].get("JournalHistoryInHours") or 24) * 3600
            if vpg.next_cp_at < horizon:
                vpg.next_cp_at += ((horizon - vpg.next_cp_at) // interval) * interval
            while vpg.next_cp_at <= now:
                self._add_checkpoint(vpg, vpg.next_cp_at, None)
                vpg.next_cp_at += interval
            while vpg.checkpoints and vpg.checkpoints[0].ts < horizon:
                vpg.checkpoints.pop(0)

    def _add_checkpoint(self, vpg: Vpg, ts: float, tag: str | None) -> Checkpoint:
        self._cp_counter += 1
        if tag is None:
            vpg.cp_seq += 1
            every = self.cfg.app_consistent_every
            if every > 0 and vpg.cp_seq % every == 0:
                tag = self.cfg.app_consistent_tag
        cp = Checkpoint(identifier=str(self._cp_counter), ts=ts, tag=tag)
        vpg.checkpoints.append(cp)
        return cp

    def _status(self, vpg: Vpg, now: float) -> tuple[int, int, int]:
        """(Status, SubStatus, ProgressPercentage) of the VPG now."""
        if vpg.deleting:
            return S["Deleting"], SS["Deleting"], 0
        if vpg.op is not None:
            moving = vpg.op.kind == "move"
            stage = vpg.op.stage
            status = S["Moving"] if moving else S["FailingOver"]
            sub = {
                "starting": SS["None"],
                "before_commit": SS["MovingBeforeCommit"] if moving else SS["FailingOverBeforeCommit"],
                "committing": SS["MovingCommitting"] if moving else SS["FailingOverCommitting"],
                "rolling_back": SS["MovingRollingBack"] if moving else SS["FailingOverRollingBack"],
            }[stage]
            return status, sub, 0
        if vpg.recovered_final:
            return S["Recovered"], SS["NeedsConfiguration"], 100
        if not vpg.replicating:
            if vpg.sync_until is not None and vpg.sync_started is not None:
                span = max(vpg.sync_until - vpg.sync_started, 1e-6)
                pct = int(min(99, max(0, (now - vpg.sync_started) / span * 100)))
                return S["Initializing"], vpg.sync_substatus, pct
            return S["Initializing"], SS["Creating"], 0
        rpo = self._actual_rpo(vpg, now)
        configured = int(vpg.settings["Basic"].get("RpoInSeconds") or 300)
        sub = SS["ReplicationPausedUserInitiated"] if vpg.paused else \
            SS["DisconnectedFromPeer"] if vpg.link_down else SS["None"]
        if rpo > configured:
            return S["RpoNotMeetingSLA"], sub, 0
        return S["MeetingSLA"], sub, 0

    def _actual_rpo(self, vpg: Vpg, now: float) -> int:
        if not vpg.checkpoints:
            return 0
        return int(max(0.0, now - vpg.checkpoints[-1].ts))

    def vpg_json(self, vpg: Vpg, now: float | None = None) -> dict[str, Any]:
        now = self.clock() if now is None else now
        self._tick(vpg, now)
        status, sub, pct = self._status(vpg, now)
        basic = vpg.settings["Basic"]
        prio = basic.get("Priority", 1)
        prio_num = PRIORITIES.get(str(prio).lower(), prio) if isinstance(prio, str) else prio
        hist_min = int(float(basic.get("JournalHistoryInHours") or 24) * 60)
        actual_hist = int((now - vpg.checkpoints[0].ts) / 60) if vpg.checkpoints else 0
        test = None
        if vpg.test is not None:
            test = {"StartTime": iso(vpg.test.started), "Stage": vpg.test.stage,
                    "CheckpointIdentifier": vpg.test.checkpoint}
        return {
            "VpgIdentifier": vpg.identifier,
            "VpgName": vpg.name,
            "Status": status,
            "SubStatus": sub,
            "ActualRPO": self._actual_rpo(vpg, now) if vpg.replicating or vpg.op or vpg.recovered_final else 0,
            "ConfiguredRpoSeconds": int(basic.get("RpoInSeconds") or 300),
            "ActualHistoryInMinutes": actual_hist,
            "ConfiguredHistoryInMinutes": hist_min,
            "VmsCount": len(vpg.settings.get("Vms") or []),
            "Priority": prio_num,
            "ProgressPercentage": pct,
            "ProtectedSite": {"identifier": vpg.protected, "type": "VCenter"},
            "RecoverySite": {"identifier": vpg.recovery, "type": "VCenter"},
            "SourceSite": self.sites[vpg.protected].name,
            "TargetSite": self.sites[vpg.recovery].name,
            "LastTest": (vpg.last_test or {}).get("Finished"),
            "ActiveProcessesApi": {"RunningFailOverTestApi": test},
            "Entities": {"Protected": 0, "Recovery": 0, "Source": 0, "Target": 0},
            "OrganizationName": basic.get("ZorgIdentifier"),
            "ServiceProfileName": basic.get("ServiceProfileIdentifier"),
            "Link": {"href": f"/v1/vpgs/{vpg.identifier}", "rel": None, "type": "VpgApi"},
        }

    def list_vpgs(self, name: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            now = self.clock()
            return [self.vpg_json(v, now) for v in self.vpgs.values() if name is None or v.name == name]

    def get_vpg(self, vpg_id: str) -> dict[str, Any]:
        with self.lock:
            return self.vpg_json(self._vpg(vpg_id))

    def protected_vms(self) -> list[dict[str, Any]]:
        with self.lock:
            now = self.clock()
            out = []
            for vpg in self.vpgs.values():
                info = self.vpg_json(vpg, now)
                for entry in vpg.settings.get("Vms") or []:
                    vm_id = str(entry.get("VmIdentifier"))
                    origin = vpg.origins.get(vm_id.lower(), {}).get("info", {})
                    out.append({"VmIdentifier": vm_id, "VmName": origin.get("name"), "VpgIdentifier": vpg.identifier,
                                "VpgName": vpg.name, "Status": info["Status"], "SubStatus": info["SubStatus"],
                                "ActualRPO": info["ActualRPO"]})
            return out

    def list_checkpoints(self, vpg_id: str, start: str | None, end: str | None) -> list[dict[str, Any]]:
        lo, hi = parse_time(start), parse_time(end)
        with self.lock:
            vpg = self._vpg(vpg_id)
            self._tick(vpg, self.clock())
            return [self._cp_json(cp) for cp in vpg.checkpoints
                    if (lo is None or cp.ts >= lo) and (hi is None or cp.ts <= hi)]

    @staticmethod
    def _cp_json(cp: Checkpoint) -> dict[str, Any]:
        return {"CheckpointIdentifier": cp.identifier, "TimeStamp": iso(cp.ts), "Tag": cp.tag}

    def checkpoint_stats(self, vpg_id: str) -> dict[str, Any]:
        with self.lock:
            vpg = self._vpg(vpg_id)
            self._tick(vpg, self.clock())
            cps = vpg.checkpoints
            return {"Earliest": self._cp_json(cps[0]) if cps else None,
                    "Latest": self._cp_json(cps[-1]) if cps else None}

    def tag_checkpoint(self, vpg_id: str, body: Any) -> dict[str, Any]:
        tag = ci_get(body, "checkpointName") or ci_get(body, "Tag")
        if not isinstance(tag, str) or not tag.strip():
            raise ApiError(400, "checkpointName is required.")
        with self.lock:
            vpg = self._vpg(vpg_id)
            now = self.clock()
            self._tick(vpg, now)
            if not vpg.replicating or vpg.link_down:
                raise ApiError(400, f"VPG {vpg.name!r} is not replicating; cannot insert a checkpoint.")
            return self._cp_json(self._add_checkpoint(vpg, now, tag.strip()))

    def _checkpoint(self, vpg: Vpg, cp_id: Any) -> Checkpoint:
        self._tick(vpg, self.clock())
        if not vpg.checkpoints:
            raise ApiError(400, f"VPG {vpg.name!r} has no checkpoint yet.")
        if cp_id in (None, ""):
            return vpg.checkpoints[-1]
        for cp in vpg.checkpoints:
            if cp.identifier == str(cp_id):
                return cp
        raise ApiError(400, f"Checkpoint {cp_id} not found in the journal of VPG {vpg.name!r}.")

    def set_link(self, vpg_id: str, paused: bool) -> dict[str, Any]:
        """Lab control: cut (or restore) a VPG's replication link so its RPO grows."""
        with self.lock:
            vpg = self._vpg(vpg_id)
            now = self.clock()
            self._tick(vpg, now)
            if vpg.link_down and not paused and vpg.replicating:
                vpg.next_cp_at = now
            vpg.link_down = paused
            return self.vpg_json(vpg, now)

    def pause(self, vpg_id: str, path: str) -> str:
        """``POST /v1/vpgs/{id}/Pause``: stop taking checkpoints (the journal is kept) until resumed."""
        with self.lock:
            vpg = self._ready_vpg(vpg_id)
            if not vpg.replicating or vpg.op is not None:
                raise ApiError(400, f"VPG {vpg.name!r} is not replicating; it cannot be paused.")
            self._tick(vpg, self.clock())

            def work(task: Task) -> None:
                with self.lock:
                    vpg.paused = True

            return self._start_task("PauseProtectionGroup", vpg, work, path)

    def resume(self, vpg_id: str, path: str) -> str:
        """``POST /v1/vpgs/{id}/Resume``: replicate again; the next checkpoint is taken at once."""
        with self.lock:
            vpg = self._ready_vpg(vpg_id)

            def work(task: Task) -> None:
                with self.lock:
                    if vpg.paused:
                        vpg.paused = False
                        vpg.next_cp_at = self.clock()

            return self._start_task("ResumeProtectionGroup", vpg, work, path)

    # --- tasks ----------------------------------------------------------------------------

    def _start_task(self, ttype: str, vpg: Vpg | None, work: Callable[[Task], None], path: str,
                    busy: bool = True) -> str:
        """Register a task and run ``work`` on the pool.

        A ``task_failed`` fault replaces the work with a failure; a ``task_stuck`` fault leaves the
        task InProgress for good (the VPG stays busy until it is deleted with Force or the lab resets).
        """
        fault = self.take_fault(path, "POST", ("task_failed", "task_stuck"))
        task = Task(identifier=f"{self.local.identifier}.{uuid.uuid4()}", type=ttype,
                    vpg=vpg.identifier if vpg else None, started=self.clock())
        with self.lock:
            if len(self.tasks) >= MAX_TASKS:  # keep the newest; finished ones go first
                done = [k for k, t in self.tasks.items() if t.state != IN_PROGRESS]
                for key in done[: len(self.tasks) - MAX_TASKS + 1]:
                    del self.tasks[key]
            self.tasks[task.identifier] = task
            if vpg is not None and busy:
                vpg.pending_task = task.identifier
        if fault is not None and fault.mode == "task_stuck":
            return task.identifier  # never runs, never ends
        self._executor.submit(self._run, task, vpg, work, fault is not None)
        return task.identifier

    def _run(self, task: Task, vpg: Vpg | None, work: Callable[[Task], None], inject_failure: bool) -> None:
        t0 = time.monotonic()
        try:
            if inject_failure:
                time.sleep(self.cfg.task_duration_s / 2)
                raise RuntimeError("Task failed (injected by the lab's task_failed fault mode).")
            work(task)
            remaining = self.cfg.task_duration_s - (time.monotonic() - t0)
            if remaining > 0:
                time.sleep(remaining)
            with self.lock:
                task.state, task.completed = COMPLETED, self.clock()
        except Exception as exc:  # noqa: BLE001 - the task reports it, as the ZVM does
            with self.lock:
                task.state, task.completed = FAILED, self.clock()
                task.reason = str(exc) or type(exc).__name__
        finally:
            with self.lock:
                if vpg is not None and vpg.pending_task == task.identifier:
                    vpg.pending_task = None

    def task_json(self, task: Task, now: float | None = None) -> dict[str, Any]:
        now = self.clock() if now is None else now
        if task.state == IN_PROGRESS:
            span = max(self.cfg.task_duration_s, 1e-6)
            progress = int(min(95, (now - task.started) / span * 95))
        else:
            progress = 100 if task.state == COMPLETED else 0
        return {
            "TaskIdentifier": task.identifier,
            "Type": task.type,
            "Status": {"State": task.state, "Progress": progress},
            "Progress": progress,
            "Started": iso(task.started),
            "Completed": iso(task.completed),
            "InitiatedBy": self.cfg.username,
            "IsCancellable": False,
            "CompleteReason": task.reason,
            "RelatedEntities": {"Vpgs": [{"identifier": task.vpg, "href": f"/v1/vpgs/{task.vpg}", "type": "VpgApi"}]
                                if task.vpg else [], "Sites": [], "Vms": [], "Vras": []},
            "Link": {"href": f"/v1/tasks/{task.identifier}", "rel": None, "type": "TaskApi"},
        }

    def get_task(self, task_id: str) -> dict[str, Any]:
        with self.lock:
            task = self.tasks.get(task_id) or next(
                (t for k, t in self.tasks.items() if k.lower() == task_id.lower()), None)
            if task is None:
                raise ApiError(404, f"Task {task_id} not found.")
            return self.task_json(task)

    def list_tasks(self, vpg_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            now = self.clock()
            return [self.task_json(t, now) for t in self.tasks.values()
                    if vpg_id is None or (t.vpg or "").lower() == vpg_id.lower()]

    # --- recovery -------------------------------------------------------------------------

    def _ready_vpg(self, vpg_id: str) -> Vpg:
        vpg = self._vpg(vpg_id)
        if vpg.pending_task is not None:
            raise ApiError(400, f"VPG {vpg.name!r} has an operation in progress (task {vpg.pending_task}).")
        if vpg.deleting:
            raise ApiError(400, f"VPG {vpg.name!r} is being deleted.")
        return vpg

    def _select_vms(self, vpg: Vpg, body: Any) -> list[str]:
        all_ids = [str(v.get("VmIdentifier")) for v in vpg.settings.get("Vms") or []]
        wanted = ci_get(body, "VmIdentifiers")
        if not wanted:
            return all_ids
        lower = {i.lower(): i for i in all_ids}
        out = []
        for vm_id in wanted:
            if str(vm_id).lower() not in lower:
                raise ApiError(400, f"VM {vm_id} is not protected by VPG {vpg.name!r}.")
            out.append(lower[str(vm_id).lower()])
        return out

    def _network_for(self, vpg: Vpg, entry: dict[str, Any], label: str, side: str) -> str | None:
        for nic in entry.get("Nics") or []:
            if str(nic.get("NicIdentifier", "")).lower() == label.lower():
                net = ((nic.get(side) or {}).get("Hypervisor") or {}).get("NetworkIdentifier")
                if net:
                    return str(net)
        net = (((vpg.settings.get("Networks") or {}).get(side) or {}).get("Hypervisor") or {}).get(
            "DefaultNetworkIdentifier")
        return str(net) if net else None

    def _recover_vms(self, vpg: Vpg, vm_ids: list[str], kind: str, cp: Checkpoint,
                     created: list[RecoveredVm], read_source: bool = True) -> None:
        """Create the recovered VMs (powered off) at the VPG's recovery site, appending to ``created``.

        ``read_source=False`` (an unplanned failover that shuts nothing down): the protected site
        is not contacted at all; the VMs are built from the replica (what was recorded when they
        were protected), as the recovery site's ZVM does when the protected site is lost.
        """
        with self.lock:
            src_site, dst_site = self.sites[vpg.protected], self.sites[vpg.recovery]
            settings = copy.deepcopy(vpg.settings)
            origins = copy.deepcopy(vpg.origins)
        entries = {str(e.get("VmIdentifier")).lower(): e for e in settings.get("Vms") or []}
        live: dict[str, VmInfo] = {}
        if read_source:
            try:
                live = {vm.moref: vm for vm in self.backend.list_vms(src_site.key)}
            except (VSphereError, OSError):  # the protected site went down: recover from the replica alone
                live = {}
        cache: dict[str, list[Item]] = {}
        rec = settings.get("Recovery") or {}
        side = "FailoverTest" if kind == "test" else "Failover"
        for vm_id in vm_ids:
            _, key = self._split_vm_id(vm_id)
            src = live.get(key)
            if src is None:  # unplanned failover: the source VM may be gone; use what we recorded
                info = origins.get(vm_id.lower(), {}).get("info")
                if info is None:
                    raise RuntimeError(f"No replica data for VM {vm_id}.")
                src = VmInfo.model_validate(info)
            entry = entries.get(vm_id.lower(), {})
            vrec = entry.get("Recovery") or {}

            def pick(kind_: str, vm_key: str, vpg_key: str, vrec: dict[str, Any] = vrec) -> Item | None:
                return self.resolve(dst_site, kind_, vrec.get(vm_key) or rec.get(vpg_key), cache)

            folder = pick("folders", "FolderIdentifier", "DefaultFolderIdentifier")
            pool = pick("resourcepools", "ResourcePoolIdentifier", "ResourcePoolIdentifier")
            cluster = pick("hostclusters", "HostClusterIdentifier", "DefaultHostClusterIdentifier")
            host = pick("hosts", "HostIdentifier", "DefaultHostIdentifier")
            datastore = pick("datastores", "DatastoreIdentifier", "DefaultDatastoreIdentifier")
            nics: list[NewNic] = []
            for nic in src.nics:
                ref = self._network_for(vpg, entry, nic.label, side)
                if ref is None and side == "FailoverTest":
                    ref = self._network_for(vpg, entry, nic.label, "Failover")
                net = self.resolve(dst_site, "networks", ref, cache) if ref else None
                if net is None:  # no mapping: the same network name, if the recovery site has one
                    try:
                        net = self.resolve(dst_site, "networks", nic.network, cache)
                    except ApiError:
                        net = None
                if net is None:
                    raise RuntimeError(f"No {side} network configured for {src.name} {nic.label}.")
                nics.append(NewNic(network_key=net.key, device_type=nic.device_type,
                                   mac=nic.mac if kind != "test" else None))
            name = src.name + TEST_SUFFIX if kind == "test" else src.name
            spec = NewVm(
                name=name, folder_key=folder.key if folder else None,
                pool_key=pool.key if pool else None, cluster_key=cluster.key if cluster else None,
                host_key=host.key if host else None, datastore=datastore.key if datastore else None,
                num_cpus=src.num_cpus, memory_mb=src.memory_mb, guest_id=src.guest_id, nics=nics,
                # The replica carries the guest's content (from the live VM or, when it is gone,
                # from what was recorded with the VM's origin).
                extra_config=dict(src.guestinfo),
                annotation=f"Recovered by the lab ZVM: VPG {vpg.name}, {kind}, checkpoint {cp.identifier} "
                           f"({iso(cp.ts)})",
            )
            moref = self.backend.create_vm(dst_site.key, spec)
            created.append(RecoveredVm(source_vm=vm_id, name=name, site=dst_site.key, key=moref, kind=kind))

    def _destroy(self, vms: list[RecoveredVm]) -> None:
        errors = []
        for vm in vms:
            try:
                self.backend.destroy_vm(vm.site, vm.key)
            except Exception as exc:  # noqa: BLE001 - try them all, then report
                errors.append(f"{vm.name}: {exc}")
        if errors:
            raise RuntimeError("Could not remove recovered VMs: " + "; ".join(errors))

    def failover_test(self, vpg_id: str, body: Any, path: str) -> str:
        with self.lock:
            vpg = self._ready_vpg(vpg_id)
            if vpg.test is not None:
                raise ApiError(400, f"VPG {vpg.name!r} already has a failover test running.")
            if vpg.op is not None or not vpg.replicating:
                raise ApiError(400, f"VPG {vpg.name!r} is not in a state that allows a failover test.")
            cp = self._checkpoint(vpg, ci_get(body, "CheckpointIdentifier"))
            vm_ids = self._select_vms(vpg, body)

            def work(task: Task) -> None:
                with self.lock:
                    vpg.test = TestRun(stage="starting", checkpoint=cp.identifier, vm_ids=vm_ids,
                                       started=self.clock())
                created: list[RecoveredVm] = []
                try:
                    self._recover_vms(vpg, vm_ids, "test", cp, created)
                except BaseException:
                    self._destroy(created)
                    with self.lock:
                        vpg.test = None
                    raise
                with self.lock:
                    vpg.test.stage, vpg.test.recovered = "running", created

            return self._start_task("FailoverTest", vpg, work, path)

    def failover_test_stop(self, vpg_id: str, body: Any, path: str) -> str:
        with self.lock:
            vpg = self._ready_vpg(vpg_id)
            if vpg.test is None or vpg.test.stage != "running":
                raise ApiError(400, f"VPG {vpg.name!r} has no failover test running.")
            test = vpg.test
            success = ci_get(body, "FailoverTestSuccess", True)
            summary = ci_get(body, "FailoverTestSummary", "")

            def work(task: Task) -> None:
                with self.lock:
                    test.stage = "stopping"
                try:
                    self._destroy(test.recovered)
                except BaseException:
                    with self.lock:
                        test.stage = "running"
                    raise
                with self.lock:
                    vpg.test = None
                    vpg.last_test = {"Started": iso(test.started), "Finished": iso(self.clock()),
                                     "Success": bool(success), "Summary": str(summary or ""),
                                     "CheckpointIdentifier": test.checkpoint}

            return self._start_task("StopFailoverTest", vpg, work, path)

    def failover(self, vpg_id: str, body: Any, path: str, kind: str = "failover") -> str:
        with self.lock:
            vpg = self._ready_vpg(vpg_id)
            if vpg.test is not None:
                raise ApiError(400, f"Stop the failover test of VPG {vpg.name!r} first.")
            if vpg.op is not None or vpg.recovered_final:
                raise ApiError(400, f"VPG {vpg.name!r} is already failed over or moving.")
            if kind == "move" and not vpg.replicating:
                raise ApiError(400, f"VPG {vpg.name!r} must be replicating to be moved.")
            cp = self._checkpoint(vpg, None if kind == "move" else ci_get(body, "CheckpointIdentifier"))
            vm_ids = self._select_vms(vpg, body) if kind == "failover" else \
                [str(v.get("VmIdentifier")) for v in vpg.settings["Vms"]]
            policy = ci_get(body, "CommitPolicy", 2)
            if kind == "move":
                shutdown = 2 if ci_get(body, "ForceShutdown", False) else 1
                reverse = bool(ci_get(body, "ReverseProtection", False))
                keep = bool(ci_get(body, "KeepSourceVms", False))
            else:
                shutdown = int(ci_get(body, "ShutdownPolicy", 0) or 0)
                reverse = bool(ci_get(body, "IsReverseProtection", False))
                keep = False
            if policy not in (0, 1, 2):
                raise ApiError(400, "CommitPolicy must be 0 (Rollback), 1 (Commit) or 2 (None).")

            def work(task: Task) -> None:
                with self.lock:
                    src_site = self.sites[vpg.protected]
                    op = vpg.op = Operation(kind=kind, stage="starting", checkpoint=cp.identifier,
                                            vm_ids=vm_ids, started=self.clock())
                    self._tick(vpg, self.clock())
                    vpg.replicating = False  # the journal stops at the failover point
                    vpg.next_cp_at = None
                final = cp
                try:
                    if shutdown:
                        for vm_id in vm_ids:
                            _, key = self._split_vm_id(vm_id)
                            if self.backend.set_power(src_site.key, key, False):
                                op.powered_off.append(key)
                    if kind == "move":  # the sources are down: a last checkpoint holds every write (no loss)
                        with self.lock:
                            final = self._add_checkpoint(vpg, self.clock(), None)
                            op.checkpoint = final.identifier
                    self._recover_vms(vpg, vm_ids, kind, final, op.recovered,
                                      read_source=kind == "move" or bool(shutdown))
                except BaseException:
                    self._undo_failover(vpg, op)
                    raise
                with self.lock:
                    op.stage = "before_commit"
                if policy == 1:
                    self._commit(vpg, op, reverse, keep)
                elif policy == 0:
                    self._rollback(vpg, op)

            return self._start_task("Move" if kind == "move" else "FailOver", vpg, work, path)

    def _undo_failover(self, vpg: Vpg, op: Operation) -> None:
        """Remove what a failover created and restart the source VMs it shut down."""
        with self.lock:
            src_site = self.sites[vpg.protected]
        try:
            self._destroy(op.recovered)
            for key in op.powered_off:
                self.backend.set_power(src_site.key, key, True)
        finally:
            with self.lock:
                vpg.op = None
                vpg.replicating = True
                vpg.next_cp_at = self.clock()

    def _rollback(self, vpg: Vpg, op: Operation) -> None:
        with self.lock:
            op.stage = "rolling_back"
        try:
            self._undo_failover(vpg, op)
        except BaseException:
            with self.lock:
                vpg.op = op
                op.stage = "before_commit"
            raise

    def _commit(self, vpg: Vpg, op: Operation, reverse: bool, keep_source: bool) -> None:
        with self.lock:
            op.stage = "committing"
        if not reverse:
            with self.lock:
                vpg.op = None
                vpg.recovered_final = True
                vpg.final_op = op
            return
        self._reverse(vpg, op, keep_source)

    def _reverse(self, vpg: Vpg, op: Operation, keep_source: bool) -> None:
        """Reverse protection: the recovered VMs become the protected ones, replicating back.

        The old sources are removed (their disks seed the new replica: a delta sync, as with the
        real product); when none of them is left at the original site the new replica is seeded
        from scratch (a full sync).
        """
        with self.lock:
            src_site, dst_site = self.sites[vpg.protected], self.sites[vpg.recovery]
        existing = {vm.moref for vm in self.backend.list_vms(src_site.key)}
        seeded = False
        for vm_id in op.vm_ids:
            _, key = self._split_vm_id(vm_id)
            if key in existing:
                seeded = True
                if not keep_source:
                    self.backend.destroy_vm(src_site.key, key)
        fresh = {vm.moref: vm for vm in self.backend.list_vms(dst_site.key)}
        src_nets = {it.name: it.key for it in self.backend.list_items(src_site.key, "networks")}
        with self.lock:
            new_vms = []
            origins: dict[str, dict[str, Any]] = {}
            entries = {str(e.get("VmIdentifier")).lower(): e for e in vpg.settings.get("Vms") or []}
            for rvm in op.recovered:
                new_id = self.obj_id(dst_site, rvm.key)
                origin = vpg.origins.get(rvm.source_vm.lower(), {})
                info = origin.get("info") or {}
                nics = []
                for nic in info.get("nics") or []:
                    net_key = src_nets.get(nic.get("network", ""))
                    entry = _nic_entry(nic["label"])
                    if net_key:
                        net_id = self.obj_id(src_site, net_key)
                        entry["Failover"]["Hypervisor"]["NetworkIdentifier"] = net_id
                        entry["FailoverTest"]["Hypervisor"]["NetworkIdentifier"] = net_id
                    nics.append(entry)
                new_vms.append({
                    "VmIdentifier": new_id,
                    "BootGroupIdentifier": (entries.get(rvm.source_vm.lower()) or {}).get(
                        "BootGroupIdentifier", BOOT_GROUP_DEFAULT),
                    "Recovery": {
                        "HostClusterIdentifier": None, "HostIdentifier": None,
                        "DatastoreIdentifier": self.obj_id(src_site, info["datastore"]) if info.get("datastore") else None,
                        "FolderIdentifier": self.obj_id(src_site, info["folder_moref"]) if info.get("folder_moref") else None,
                        "ResourcePoolIdentifier": self.obj_id(src_site, info["pool_moref"]) if info.get("pool_moref") else None,
                    },
                    "Nics": nics,
                })
                if rvm.key in fresh:
                    origins[new_id.lower()] = {"site": dst_site.identifier, "info": fresh[rvm.key].model_dump()}
            vpg.settings["Vms"] = new_vms
            vpg.settings["Recovery"] = default_settings("", "", "")["Recovery"]
            vpg.settings["Networks"] = default_settings("", "", "")["Networks"]
            vpg.settings["Basic"]["ProtectedSiteIdentifier"] = dst_site.identifier
            vpg.settings["Basic"]["RecoverySiteIdentifier"] = src_site.identifier
            vpg.protected, vpg.recovery = dst_site.identifier, src_site.identifier
            vpg.origins = origins
            vpg.checkpoints = []
            vpg.cp_seq = 0
            vpg.op = None
            vpg.recovered_final = False
            vpg.final_op = None
            self._start_sync(vpg, SS["DeltaSync"] if seeded else SS["FullSync"])

    def _await_op(self, vpg_id: str, kind: str, action: str) -> tuple[Vpg, Operation]:
        vpg = self._ready_vpg(vpg_id)
        op = vpg.op
        if op is None or op.kind != kind or op.stage != "before_commit":
            what = "a move" if kind == "move" else "a failover"
            raise ApiError(400, f"VPG {vpg.name!r} is not waiting for {action} of {what}.")
        return vpg, op

    def failover_commit(self, vpg_id: str, body: Any, path: str, kind: str = "failover") -> str:
        with self.lock:
            vpg, op = self._await_op(vpg_id, kind, "commit")
            if kind == "move":
                reverse = bool(ci_get(body, "ReverseProtection", False))
                keep = bool(ci_get(body, "KeepSourceVms", False))
            else:
                reverse = bool(ci_get(body, "IsReverseProtection", False))
                keep = False
            return self._start_task("MoveCommit" if kind == "move" else "FailOverCommit", vpg,
                                    lambda task: self._commit(vpg, op, reverse, keep), path)

    def failover_rollback(self, vpg_id: str, path: str, kind: str = "failover") -> str:
        with self.lock:
            vpg, op = self._await_op(vpg_id, kind, "rollback")
            return self._start_task("MoveRollback" if kind == "move" else "FailOverRollback", vpg,
                                    lambda task: self._rollback(vpg, op), path)

    def delete_vpg(self, vpg_id: str, body: Any, path: str) -> str:
        force = bool(ci_get(body, "Force", False))
        with self.lock:
            vpg = self._vpg(vpg_id)
            if vpg.deleting:
                raise ApiError(400, f"VPG {vpg.name!r} is already being deleted.")
            if not force and (vpg.pending_task or vpg.test is not None or vpg.op is not None):
                raise ApiError(400, f"VPG {vpg.name!r} is busy (test, failover or task in progress); "
                                    "stop it first or use Force.")

            def work(task: Task) -> None:
                with self.lock:
                    vpg.deleting = True
                    leftovers = (vpg.test.recovered if vpg.test else []) + (vpg.op.recovered if vpg.op else [])
                self._destroy(leftovers)
                time.sleep(self.cfg.task_duration_s / 2)
                with self.lock:
                    self.vpgs.pop(vpg.identifier, None)

            return self._start_task("RemoveProtectionGroup", vpg, work, path)

    # --- lab control ----------------------------------------------------------------------

    def lab_state(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock()
            vpgs = []
            for vpg in self.vpgs.values():
                info = self.vpg_json(vpg, now)
                info["StatusName"] = VPG_STATUSES[info["Status"]]
                info["SubStatusName"] = VPG_SUBSTATUSES[info["SubStatus"]]
                info["Settings"] = copy.deepcopy(vpg.settings)
                info["CheckpointCount"] = len(vpg.checkpoints)
                info["LinkDown"] = vpg.link_down
                info["LastTestResult"] = vpg.last_test
                info["TestVms"] = [vars(v) for v in (vpg.test.recovered if vpg.test else [])]
                info["Operation"] = None if vpg.op is None else {
                    "Kind": vpg.op.kind, "Stage": vpg.op.stage, "Checkpoint": vpg.op.checkpoint,
                    "RecoveredVms": [vars(v) for v in vpg.op.recovered], "PoweredOff": list(vpg.op.powered_off)}
                vpgs.append(info)
            return {
                "sites": {"protected": self.local.identifier, "recovery": self.peer.identifier},
                "vpgs": vpgs,
                "tasks": [self.task_json(t, now) for t in self.tasks.values()],
                "settings_in_edit": len(self.settings),
                "sessions": len(self.sessions) + len(self.tokens),
                "faults": [f.model_dump() for f in self.faults],
            }

    def reset(self) -> dict[str, Any]:
        """Lab control: forget every VPG, task, setting and fault; remove recovered VMs."""
        with self.lock:
            doomed: list[RecoveredVm] = []
            for vpg in self.vpgs.values():
                if vpg.test:
                    doomed += vpg.test.recovered
                if vpg.op:
                    doomed += vpg.op.recovered
            count = len(self.vpgs)
            self.vpgs.clear()
            self.settings.clear()
            self.tasks.clear()
            self.faults.clear()
        self._destroy(doomed)
        return {"removed_vpgs": count, "removed_vms": len(doomed)}
