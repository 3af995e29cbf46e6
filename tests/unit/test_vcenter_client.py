"""vCenter adapter logic without a vCenter: errors, task polling, spec builders, block, tasks."""

from __future__ import annotations

import ssl
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Self

import pytest
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr, ValidationError
from pyVmomi import vim, vmodl

import tasks.vcenter as vc_tasks
from blocks.vcenter import VCenterCredentials
from draas.clients.vcenter import (
    ConnectParams,
    VCenterAuthFailed,
    VCenterClient,
    VCenterConnectionFailed,
    VCenterObjectNotFound,
    VCenterOperationFailed,
    VCenterSessionExpired,
    VCenterTaskFailed,
    VCenterTimeout,
    VCenterTLSError,
    VCenterTransientError,
    allocation_diff,
    allocation_of,
    allocation_spec,
    custom_values,
    customization_spec,
    flatten_snapshots,
    pyvmomi_connect,
    split_path,
)
from draas.deadline import DeadlineExceeded
from draas.errors import is_transient
from draas.models.vcenter import (
    GuestCustomization,
    IpSettings,
    Marks,
    ResourceAllocation,
    VCenterChange,
)
from lab.state import LabState, VCenterSite, site_profile
from tasks.common import RETRY_POLICY, retry_transient

PASSWORD = "s3cret-Pa55"


def client() -> VCenterClient:
    return VCenterClient("vc.example.net", 443, "svc-draas@vsphere.local", PASSWORD,
                         connect=lambda params: pytest.fail("no connection expected"))


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raised", "expected", "transient"), [
    (vim.fault.InvalidLogin(msg="Cannot complete login"), VCenterAuthFailed, False),
    (vim.fault.NoPermission(msg="no"), VCenterAuthFailed, False),
    (vmodl.fault.ManagedObjectNotFound(msg="gone"), VCenterObjectNotFound, False),
    (vim.fault.InvalidPowerState(msg="powered on"), VCenterOperationFailed, False),
    (vmodl.fault.HostCommunication(msg="host unreachable"), VCenterTransientError, True),
    (vim.fault.TaskInProgress(msg="busy"), VCenterTransientError, True),
    (ConnectionRefusedError(111, "Connection refused"), VCenterConnectionFailed, True),
    (TimeoutError("timed out"), VCenterConnectionFailed, True),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), VCenterTLSError, False),
])
def test_errors_are_classified(raised: BaseException, expected: type, transient: bool) -> None:
    c = client()
    with pytest.raises(expected) as err, c._calling("power on VM 'acme/web01'"):
        raise raised
    assert is_transient(err.value) is transient
    assert "power on VM 'acme/web01'" in str(err.value)
    assert err.value.__cause__ is raised


def test_password_never_reaches_messages_or_repr() -> None:
    c = client()
    with pytest.raises(VCenterOperationFailed) as err, c._calling("login"):
        raise vmodl.fault.InvalidArgument(msg=f"bad value {PASSWORD} for pwd")
    assert PASSWORD not in str(err.value) and "***" in str(err.value)
    assert PASSWORD not in repr(c) and PASSWORD not in repr(c.params)


def test_login_refused_through_the_connection_seam() -> None:
    seen: list[ConnectParams] = []

    def refuse(params: ConnectParams) -> Any:
        seen.append(params)
        raise vim.fault.InvalidLogin(msg="Login failure")

    c = VCenterClient("vc", 443, "svc", PASSWORD, connect=refuse)
    with pytest.raises(VCenterAuthFailed, match=r"connect to vCenter vc:443 as 'svc': InvalidLogin") as err:
        c.open()
    assert PASSWORD not in str(err.value)
    assert seen[0].password.get_secret_value() == PASSWORD and PASSWORD not in repr(seen[0])


@pytest.mark.parametrize(("protocol", "verify", "expect"), [
    ("https", True, "sslContext"), ("https", False, "disableSslCertValidation"), ("http", True, None)])
def test_default_factory_passes_tls_and_timeout(monkeypatch: pytest.MonkeyPatch, protocol: str, verify: bool,
                                                 expect: str | None) -> None:
    calls: list[dict[str, Any]] = []

    def smart_connect(**kw: Any) -> str:
        calls.append(kw)
        return "si"

    monkeypatch.setattr("pyVim.connect.SmartConnect", smart_connect)
    params = ConnectParams(host="vc", port=443, username="u", password=SecretStr(PASSWORD),
                           protocol=protocol, verify_tls=verify, timeout=12)  # type: ignore[arg-type]
    assert pyvmomi_connect(params) == "si"
    kw = calls[0]
    assert kw["pwd"] == PASSWORD and kw["protocol"] == protocol and kw["httpConnectionTimeout"] == 12
    tls_keys = {"sslContext", "disableSslCertValidation"} & set(kw)
    assert tls_keys == ({expect} if expect else set())
    if expect == "sslContext":
        assert kw["sslContext"].verify_mode == ssl.CERT_REQUIRED


# -- task polling ------------------------------------------------------------------------------


class FakeCollector:
    """Answers RetrievePropertiesEx for one task from a script of states."""

    def __init__(self, script: list[dict[str, Any]]) -> None:
        self.script = script
        self.calls = 0

    def RetrievePropertiesEx(self, specs: list[Any], options: Any) -> Any:
        assert specs[0].propSet[0].pathSet == ["info.state", "info.error", "info.result"]
        state = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        props = [SimpleNamespace(name=k, val=v) for k, v in state.items()]
        return SimpleNamespace(objects=[SimpleNamespace(obj=specs[0].objectSet[0].obj, propSet=props)], token=None)


def polling_client(script: list[dict[str, Any]]) -> tuple[VCenterClient, FakeCollector]:
    c = client()
    pc = FakeCollector(script)
    c._si = object()
    c._content = SimpleNamespace(propertyCollector=pc)
    c.poll_interval = 0.01
    return c, pc


def test_task_is_polled_until_success() -> None:
    vm = vim.VirtualMachine("vm-42")
    c, pc = polling_client([{"info.state": "queued"}, {"info.state": "running"}, {"info.state": "running"},
                            {"info.state": "success", "info.result": vm}])
    assert c._wait(vim.Task("task-1"), "clone") is vm
    assert pc.calls == 4


def test_failed_task_raises_task_failed_with_fault_name() -> None:
    error = vmodl.LocalizedMethodFault(fault=vim.fault.FileNotFound(file="[ds] x.vmdk"),
                                       localizedMessage="File [ds] x.vmdk was not found")
    c, _ = polling_client([{"info.state": "running"}, {"info.state": "error", "info.error": error}])
    with pytest.raises(VCenterTaskFailed, match="clone 'web01': task failed: FileNotFound: File") as err:
        c._wait(vim.Task("task-1"), "clone 'web01'")
    assert err.value.fault == "FileNotFound" and not is_transient(err.value)


def test_task_failing_with_a_transient_fault_is_transient() -> None:
    error = vmodl.LocalizedMethodFault(fault=vmodl.fault.HostCommunication(), localizedMessage="host lost")
    c, _ = polling_client([{"info.state": "error", "info.error": error}])
    with pytest.raises(VCenterTransientError):
        c._wait(vim.Task("task-1"), "power on")


def test_task_deadline_is_permanent_and_never_retried() -> None:
    c, pc = polling_client([{"info.state": "running"}])
    started = time.monotonic()
    with pytest.raises(VCenterTimeout, match="task still running after 0.2 s") as err:
        c._wait(vim.Task("task-1"), "clone", timeout=0.2)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 0.6 and pc.calls >= 3  # polled several times, did not sleep it out
    assert not is_transient(err.value) and isinstance(err.value, DeadlineExceeded)


# -- pure helpers ------------------------------------------------------------------------------


def test_allocation_round_trip_and_diff() -> None:
    alloc = ResourceAllocation(cpu_reservation_mhz=2000, cpu_limit_mhz=8000, memory_reservation_mb=4096,
                               memory_expandable=False, shares="high")
    spec = allocation_spec(alloc)
    assert spec.cpuAllocation.reservation == 2000 and spec.memoryAllocation.limit == -1
    assert spec.memoryAllocation.shares.level == "high"
    assert allocation_of(spec) == alloc
    assert allocation_diff(alloc, alloc) == []
    assert allocation_diff(alloc, alloc.model_copy(update={"memory_limit_mb": 8192})) == [
        "~ memory_limit_mb: -1 -> 8192"]


def test_custom_values_last_value_wins_and_unknown_keys_are_ignored() -> None:
    values = [vim.CustomFieldsManager.StringValue(key=1, value="acme"),
              vim.CustomFieldsManager.StringValue(key=2, value="drill"),
              vim.CustomFieldsManager.StringValue(key=1, value="globex"),
              vim.CustomFieldsManager.StringValue(key=9, value="x")]
    assert custom_values(values, {1: "draas.tenant", 2: "draas.purpose"}) == {
        "draas.tenant": "globex", "draas.purpose": "drill"}
    assert custom_values(None, {}) == {}


def test_marks_become_draas_attributes() -> None:
    assert Marks(tenant="acme", purpose="bubble").attributes() == {"draas.tenant": "acme", "draas.purpose": "bubble"}
    assert Marks(tenant="acme", purpose="drill", run_id="r1").attributes()["draas.run_id"] == "r1"
    with pytest.raises(ValidationError):
        Marks(tenant="", purpose="x")


def _node(name: str, moid: str, children: list[Any]) -> Any:
    return vim.vm.SnapshotTree(name=name, snapshot=vim.vm.Snapshot(moid), description=f"{name} desc",
                               createTime=datetime(2026, 1, 1, tzinfo=UTC), childSnapshotList=children,
                               id=1, vm=vim.VirtualMachine("vm-1"), state="poweredOff", quiesced=False)


def test_snapshot_tree_is_flattened_depth_first_with_current_flag() -> None:
    tree = vim.vm.SnapshotInfo(
        currentSnapshot=vim.vm.Snapshot("snapshot-3"),
        rootSnapshotList=[_node("base", "snapshot-1", [_node("pre-drill", "snapshot-3", [])]),
                          _node("other", "snapshot-2", [])])
    snaps = flatten_snapshots(tree)
    assert [(s.name, s.moid, s.current) for s in snaps] == [
        ("base", "snapshot-1", False), ("pre-drill", "snapshot-3", True), ("other", "snapshot-2", False)]
    assert flatten_snapshots(None) == []


def test_linux_customization_spec() -> None:
    custom = GuestCustomization(hostname="web01-dr", domain="acme.example.com", nics=[IpSettings.model_validate(
        {"ip": "10.99.3.40", "prefix_length": 23, "gateway": "10.99.2.1", "dns_servers": ["10.99.0.53"]})])
    spec = customization_spec(custom, windows=False)
    assert isinstance(spec.identity, vim.vm.customization.LinuxPrep)
    assert getattr(spec.identity.hostName, "name", None) == "web01-dr"
    assert spec.identity.domain == "acme.example.com"
    [nic] = spec.nicSettingMap
    assert nic.adapter.ip.ipAddress == "10.99.3.40" and nic.adapter.subnetMask == "255.255.254.0"
    assert nic.adapter.gateway == ["10.99.2.1"] and nic.adapter.dnsServerList == ["10.99.0.53"]
    assert spec.globalIPSettings.dnsServerList == ["10.99.0.53"]
    assert spec.globalIPSettings.dnsSuffixList == ["acme.example.com"]


def test_windows_customization_spec_keeps_vm_name_without_hostname() -> None:
    custom = GuestCustomization(nics=[IpSettings.model_validate({"ip": "10.99.1.10"}),
                                      IpSettings.model_validate({"ip": "10.98.1.10", "prefix_length": 16})])
    spec = customization_spec(custom, windows=True)
    assert isinstance(spec.identity, vim.vm.customization.Sysprep)
    assert isinstance(spec.identity.userData.computerName, vim.vm.customization.VirtualMachineNameGenerator)
    assert [m.adapter.subnetMask for m in spec.nicSettingMap] == ["255.255.255.0", "255.255.0.0"]
    assert all(m.adapter.gateway in (None, []) for m in spec.nicSettingMap)


def test_customization_rejects_fqdn_hostname_and_empty_nics() -> None:
    with pytest.raises(ValidationError):
        GuestCustomization(hostname="web01.acme.example.com", nics=[IpSettings.model_validate({"ip": "10.0.0.1"})])
    with pytest.raises(ValidationError):
        GuestCustomization(nics=[])


def test_split_path() -> None:
    assert split_path("/acme//dr/") == ["acme", "dr"]
    assert split_path("") == []


# -- block -------------------------------------------------------------------------------------




def test_block_defaults_are_safe_and_secret_is_hidden() -> None:
    creds = VCenterCredentials(host="vc.example.net", username="svc", password=PASSWORD)  # type: ignore[arg-type]
    assert creds.protocol == "https" and creds.verify_tls is True and creds.port == 443
    assert PASSWORD not in repr(creds) and PASSWORD not in str(creds.model_dump())
    c = creds.get_client()
    assert (c.params.host, c.params.protocol, c.params.verify_tls) == ("vc.example.net", "https", True)
    assert c.params.password.get_secret_value() == PASSWORD


def test_block_from_the_labs_site_profile() -> None:
    site = VCenterSite(site="recovery", port=40123, username="administrator@vsphere.local", password=PASSWORD,
                       datacenter="Recovery-DC", cluster="DR-Cluster", datastores=["dr-ds-01"],
                       dvswitch="dvs-recovery", pid=1)
    state = LabState(lab_dir="/nonexistent", config_path="lab.yaml", vcenter={"recovery": site})
    profile = site_profile(state)["vcenter"]
    creds = VCenterCredentials(**profile["recovery"]["credentials"])
    assert (creds.host, creds.port, creds.protocol, creds.datacenter) == ("127.0.0.1", 40123, "http", "Recovery-DC")
    assert creds.password.get_secret_value() == PASSWORD and PASSWORD not in repr(creds)
    assert "protected" not in profile


# -- tasks -------------------------------------------------------------------------------------


class FakeClient:
    """Stands in for VCenterClient behind the block's get_client()."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.entered = self.exited = 0

    def __enter__(self) -> Self:
        self.entered += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.exited += 1

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> VCenterChange:
            self.calls.append((name, args, kwargs))
            if name == "power_on_vm" and args[0] == "broken":
                raise VCenterTimeout("power on 'broken': task still running after 1 s")
            dry = bool(kwargs.get("dry_run"))
            return VCenterChange(changed=True, action=name, dry_run=dry, changes=[f"+ {name} {args[0]}"])
        return call


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    fake = FakeClient()
    monkeypatch.setattr(VCenterCredentials, "get_client", lambda self: fake)
    return fake


CREDS = VCenterCredentials(host="vc", username="svc", password=PASSWORD)  # type: ignore[arg-type]


def test_task_maps_change_to_step_result(fake: FakeClient) -> None:
    marks = Marks(tenant="acme", purpose="drill", run_id="r1")
    result = vc_tasks.create_folder.fn(CREDS, "acme/drill", marks=marks, dry_run=True)
    assert result.step == "create_folder" and result.target == "acme/drill"
    assert result.changed and result.dry_run and result.diff == ["+ create_folder acme/drill"]
    assert result.finished is not None and result.detail["action"] == "create_folder"
    assert fake.calls == [("create_folder", ("acme/drill",), {"marks": marks, "dry_run": True})]
    assert fake.entered == fake.exited == 1


def test_task_lets_errors_through_and_closes_its_session(fake: FakeClient) -> None:
    with pytest.raises(VCenterTimeout):
        vc_tasks.power_on_vm.fn(CREDS, "broken")
    assert fake.exited == 1  # session closed even on error


def test_every_vcenter_task_retries_only_transient_errors_and_never_caches() -> None:
    tasks = [obj for obj in vars(vc_tasks).values() if getattr(obj, "__module__", "") == "tasks.vcenter"
             and hasattr(obj, "fn")]
    assert len(tasks) >= 19
    for t in tasks:
        assert t.retries == RETRY_POLICY["retries"] and t.retry_condition_fn is retry_transient, t.name
        assert t.cache_policy is NO_CACHE, t.name


@pytest.mark.parametrize(("exc", "retried"), [
    (VCenterTimeout("x"), False), (VCenterConnectionFailed("x"), True),
    (VCenterAuthFailed("x"), False), (VCenterTaskFailed("x", "FileNotFound"), False)])
def test_retry_condition(exc: Exception, retried: bool) -> None:
    state = SimpleNamespace(result=lambda: (_ for _ in ()).throw(exc))
    assert retry_transient(None, None, state) is retried


# -- session renewal ---------------------------------------------------------------------------


class FakeServer:
    """A vCenter's session table: a session it terminated answers NotAuthenticated."""

    def __init__(self, refuse_all: bool = False) -> None:
        self.sessions: set[int] = set()
        self.logins = 0
        self.logouts = 0
        self.refuse_all = refuse_all
        self.lock = threading.Lock()

    def connect(self, params: ConnectParams) -> Any:
        with self.lock:
            self.logins += 1
            key = self.logins
            self.sessions.add(key)
        time.sleep(0.02)  # a login takes a moment: racing threads overlap
        server = self

        class Events:
            def QueryEvents(self, spec: Any) -> list[Any]:  # noqa: N802 - the vSphere API's name
                if server.refuse_all or key not in server.sessions:
                    raise vim.fault.NotAuthenticated(object=vim.view.ViewManager("ViewManager"))
                return []

        class Collector:
            def RetrievePropertiesEx(self, specs: list[Any], options: Any) -> Any:  # noqa: N802 - vSphere's name
                # Like vcsim: no error without a session, every property in missingSet instead.
                alive = not server.refuse_all and key in server.sessions
                objects = [SimpleNamespace(
                    obj=o.obj, propSet=[],
                    missingSet=[] if alive else [
                        SimpleNamespace(path=path, fault=vim.fault.NotAuthenticated())  # as pyVmomi gives it
                        for path in specs[0].propSet[0].pathSet])
                    for o in specs[0].objectSet]
                return SimpleNamespace(objects=objects, token=None)

        content = SimpleNamespace(eventManager=Events(), propertyCollector=Collector(),
                                  customFieldsManager=vim.CustomFieldsManager("CustomFieldsManager"))
        return SimpleNamespace(key=key, RetrieveContent=lambda: content)

    def disconnect(self, si: Any) -> None:
        self.logouts += 1
        self.sessions.discard(si.key)

    def terminate_all(self) -> None:
        self.sessions.clear()


def renewing_client(monkeypatch: pytest.MonkeyPatch, server: FakeServer) -> VCenterClient:
    monkeypatch.setattr(VCenterClient, "_find_datacenter", lambda self: vim.Datacenter("datacenter-2"))
    return VCenterClient("vc", 443, "svc", PASSWORD, datacenter="DC", connect=server.connect,
                         disconnect=server.disconnect)


def test_a_session_terminated_server_side_is_renewed_and_the_call_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer()
    before = VCenterClient.login_count()
    with renewing_client(monkeypatch, server) as c:
        assert c.query_events() == [] and server.logins == 1
        server.terminate_all()  # idle timeout, an administrator, SessionManager.Logout
        assert c.query_events() == []
        assert server.logins == 2 and len(server.sessions) == 1
        assert c.query_events() == [] and server.logins == 2  # the new session is kept
    assert VCenterClient.login_count() - before == 2 == VCenterClient.logins - before
    assert server.sessions == set()  # logged out at the end


def test_property_reads_on_a_dead_session_renew_instead_of_reading_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer()
    with renewing_client(monkeypatch, server) as c:
        assert c.get_attributes("datacenter", "DC") == {} and server.logins == 1
        server.terminate_all()
        # vcsim answers property reads of a dead session with a missingSet, not a fault: an
        # object must not look empty (or absent) just because the session expired.
        assert c.get_attributes("datacenter", "DC") == {}
        assert server.logins == 2


def test_not_authenticated_right_after_a_fresh_login_is_a_permanent_auth_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer(refuse_all=True)
    c = renewing_client(monkeypatch, server)
    with pytest.raises(VCenterAuthFailed, match="refused the session again right after a fresh login") as err:
        c.query_events()
    assert server.logins == 2  # one renewal, no loop
    assert not is_transient(err.value) and PASSWORD not in str(err.value)


def test_threads_sharing_an_expired_session_wait_for_one_login(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer()
    c = renewing_client(monkeypatch, server).open()
    server.terminate_all()
    start = threading.Barrier(12)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            start.wait(timeout=5)
            c.query_events()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not errors
    assert server.logins == 2  # the first login and exactly one renewal


def test_expired_session_is_transient_when_driven_directly() -> None:
    with pytest.raises(VCenterSessionExpired) as err, client()._calling("list VMs"):
        raise vim.fault.NotAuthenticated()
    assert is_transient(err.value)


def test_every_public_method_renews_sessions() -> None:
    public = [name for name, value in vars(VCenterClient).items()
              if not name.startswith("_") and callable(value) and name not in ("open", "close")]
    assert len(public) >= 25
    assert all(getattr(getattr(VCenterClient, name), "renews_session", False) for name in public), public
    assert not hasattr(VCenterClient.open, "renews_session")
    assert VCenterClient.thread_safe is True
