"""The Zerto adapter's error paths, auth and polling, with respx behind its ``transport=`` seam."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from blocks.replication import ZertoCredentials
from draas.clients.replication import (
    FailoverOptions,
    GroupState,
    OperationKind,
    ProtectionSpec,
    ReplicationAuthFailed,
    ReplicationDeadlineExceeded,
    ReplicationError,
    ReplicationFailoverTestFailed,
    ReplicationNotFound,
    ReplicationProvider,
    ReplicationRequestRejected,
    ReplicationResponseError,
    ReplicationTaskFailed,
    ReplicationTransientError,
    ZertoClient,
)
from draas.deadline import Deadline, DeadlineExceeded
from draas.errors import is_transient

BASE = "https://zvm.example.test:9669"
USER = "svc-draas"
PASSWORD = "Pa55-unit-SECRET-zvm"
TOKEN1 = "session-token-ONE-7f3a9c"
TOKEN2 = "session-token-TWO-51be02"
LOCAL = "11111111-1111-1111-1111-111111111111"
PEER = "22222222-2222-2222-2222-222222222222"
VPG = "33333333-3333-3333-3333-333333333333"
STATUSES = ["Initializing", "MeetingSLA", "NotMeetingSLA", "RpoNotMeetingSLA", "HistoryNotMeetingSLA",
            "FailingOver", "Moving", "Deleting", "Recovered"]
SUBSTATUSES = ["None", "InitialSync", "Creating", "VolumeInitialSync", "Sync", "RecoveryPossible", "DeltaSync",
               "NeedsConfiguration", "Error", "EmptyProtectionGroup", "DisconnectedFromPeerNoRecoveryPoints",
               "FullSync", "VolumeDeltaSync", "VolumeFullSync", "FailingOverCommitting", "FailingOverBeforeCommit"]


class FakeTime:
    """Clock and sleep for polling tests: sleeping advances the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture()
def router() -> respx.Router:
    r = respx.Router(base_url=BASE, assert_all_called=False)
    tokens = iter([TOKEN1, TOKEN2])

    def login(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"x-zerto-session": next(tokens, "session-token-LATER")})

    r.post("/v1/session/add").mock(side_effect=login)
    r.delete("/v1/session").mock(return_value=httpx.Response(200))
    r.get("/v1/vpgs/statuses").mock(return_value=httpx.Response(200, json=STATUSES))
    r.get("/v1/vpgs/substatuses").mock(return_value=httpx.Response(200, json=SUBSTATUSES))
    r.get("/v1/tasks").mock(return_value=httpx.Response(200, json=[]))
    r.get("/v1/localsite").mock(return_value=httpx.Response(200, json={"SiteIdentifier": LOCAL, "SiteName": "P"}))
    r.get("/v1/virtualizationsites").mock(return_value=httpx.Response(200, json=[
        {"SiteIdentifier": LOCAL, "VirtualizationSiteName": "P"},
        {"SiteIdentifier": PEER, "VirtualizationSiteName": "R"}]))
    return r


@pytest.fixture()
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture()
def make(router: respx.Router, fake_time: FakeTime) -> Callable[..., ZertoClient]:
    def factory(**kw: Any) -> ZertoClient:
        return ZertoClient(BASE, USER, SecretStr(PASSWORD), transport=httpx.MockTransport(router.handler),
                           poll_interval_s=0.5, sleep=fake_time.sleep, clock=fake_time.clock, **kw)
    return factory


def vpg_json(status: int = 1, substatus: int = 0, **extra: Any) -> dict[str, Any]:
    data = {"VpgIdentifier": VPG, "VpgName": "acme-gold", "Status": status, "SubStatus": substatus,
            "ActualRPO": 7, "ConfiguredRpoSeconds": 300, "VmsCount": 2, "Priority": 1, "ProgressPercentage": 0,
            "ProtectedSite": {"identifier": LOCAL}, "RecoverySite": {"identifier": PEER},
            "ActiveProcessesApi": {"RunningFailOverTestApi": None}, "LastTest": None}
    data.update(extra)
    return data


def task_json(state: int, task_type: str = "FailoverTest", reason: str | None = None, progress: int = 50) -> dict[str, Any]:
    return {"TaskIdentifier": "T-1", "Type": task_type, "Status": {"State": state}, "Progress": progress,
            "Started": "2026-01-01T00:00:00.000Z", "Completed": None, "CompleteReason": reason,
            "RelatedEntities": {"Vpgs": [{"identifier": VPG}]}}


def assert_no_secret(exc: BaseException, client: ZertoClient | None = None, log: str = "") -> None:
    """Neither the password nor a session token appears anywhere an operator could see it."""
    texts = ["".join(traceback.format_exception(exc)), repr(exc), log]
    cause: BaseException | None = exc
    while cause is not None:
        texts += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
    if client is not None:
        texts.append(repr(client))
    for text in texts:
        for secret in (PASSWORD, TOKEN1, TOKEN2):
            assert secret not in text


# --- authentication -----------------------------------------------------------------------------


def test_401_then_success_reauthenticates_exactly_once(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    route = router.get("/v1/vpgs").mock(side_effect=[httpx.Response(401, json={"Message": "denied"}),
                                                     httpx.Response(200, json=[vpg_json()])])
    with make() as zvm:
        groups = zvm.list_groups()
    assert [g.name for g in groups] == ["acme-gold"] and groups[0].state == GroupState.MEETING_SLA
    assert route.call_count == 2
    assert router.routes[0].call_count == 2  # initial login + exactly one re-login
    assert route.calls[0].request.headers["x-zerto-session"] == TOKEN1
    assert route.calls[1].request.headers["x-zerto-session"] == TOKEN2
    login = router.routes[0].calls[0].request
    assert login.headers["authorization"].startswith("Basic ") and b"AuthenticationMethod" in login.content


def test_401_after_relogin_is_permanent_and_does_not_loop(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    route = router.get("/v1/vpgs").mock(return_value=httpx.Response(401))
    zvm = make()
    with pytest.raises(ReplicationAuthFailed) as err:
        zvm.list_groups()
    assert route.call_count == 2 and router.routes[0].call_count == 2
    assert not is_transient(err.value)
    assert_no_secret(err.value, zvm)


def test_refused_login_names_the_user_not_the_password(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    router.routes[0].mock(side_effect=None, return_value=httpx.Response(401, json={"Message": "Invalid user name or password."}))
    with pytest.raises(ReplicationAuthFailed) as err:
        make().local_site()
    assert USER in str(err.value) and "/v1/session/add" in str(err.value)
    assert_no_secret(err.value)


def test_an_error_body_echoing_the_password_or_token_is_blanked(router: respx.Router,
                                                                make: Callable[..., ZertoClient]) -> None:
    router.routes[0].mock(side_effect=None, return_value=httpx.Response(
        401, json={"Message": f"login svc-draas/{PASSWORD} refused"}))
    with pytest.raises(ReplicationAuthFailed) as refused:
        make().local_site()
    assert "********" in str(refused.value)
    assert_no_secret(refused.value)

    token = "session-ECHOED-by-server"
    router.routes[0].mock(return_value=httpx.Response(200, headers={"x-zerto-session": token}))
    zvm = make()
    router.get("/v1/vpgs").mock(return_value=httpx.Response(500, json={"Message": f"session {token} broke"}))
    with pytest.raises(ReplicationTransientError) as broken:
        zvm.list_groups()
    assert token not in str(broken.value) and "********" in str(broken.value)


def test_keycloak_bearer_and_reauth(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    token = router.post("/auth/realms/zerto/protocol/openid-connect/token").mock(side_effect=[
        httpx.Response(200, json={"access_token": TOKEN1, "expires_in": 300, "token_type": "Bearer"}),
        httpx.Response(200, json={"access_token": TOKEN2, "expires_in": 300, "token_type": "Bearer"})])
    site = router.get("/v1/localsite").mock(side_effect=[
        httpx.Response(401), httpx.Response(200, json={"SiteIdentifier": LOCAL, "SiteName": "P"})])
    with make(auth_style="keycloak") as zvm:
        assert zvm.local_site().id == LOCAL
    form = token.calls[0].request.content.decode()
    assert "grant_type=password" in form and "client_id=zerto-client" in form
    assert token.call_count == 2
    assert site.calls[1].request.headers["authorization"] == f"Bearer {TOKEN2}"
    assert router.routes[0].call_count == 0  # no session login in keycloak style


def test_keycloak_refused(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    router.post("/auth/realms/zerto/protocol/openid-connect/token").mock(
        return_value=httpx.Response(401, json={"error": "invalid_grant"}))
    with pytest.raises(ReplicationAuthFailed, match="invalid_grant") as err:
        make(auth_style="keycloak").list_groups()
    assert_no_secret(err.value)


# --- transport and HTTP errors ---------------------------------------------------------------------


def test_503_is_transient(router: respx.Router, make: Callable[..., ZertoClient], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    router.get("/v1/vpgs").mock(return_value=httpx.Response(503, json={"Message": "Service Unavailable"}))
    zvm = make()
    with pytest.raises(ReplicationTransientError) as err:
        zvm.list_groups()
    assert is_transient(err.value) and "GET /v1/vpgs" in str(err.value) and "503" in str(err.value)
    assert_no_secret(err.value, zvm, caplog.text)


@pytest.mark.parametrize("failure", [httpx.ReadTimeout("read timed out"), httpx.ConnectTimeout("connect"),
                                     httpx.ConnectError("refused"), httpx.RemoteProtocolError("dropped")])
def test_timeouts_and_dropped_connections_are_transient(router: respx.Router, make: Callable[..., ZertoClient],
                                                       failure: Exception) -> None:
    router.get("/v1/vpgs").mock(side_effect=failure)
    with pytest.raises(ReplicationTransientError, match="GET /v1/vpgs") as err:
        make().list_groups()
    assert is_transient(err.value)
    assert_no_secret(err.value)


def test_malformed_json_is_permanent_and_names_the_endpoint(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    router.get("/v1/vpgs").mock(return_value=httpx.Response(200, content=b'{"VpgIdentifier": ',
                                                            headers={"content-type": "application/json"}))
    with pytest.raises(ReplicationResponseError) as err:
        make().list_groups()
    assert "GET /v1/vpgs" in str(err.value) and not is_transient(err.value)
    assert_no_secret(err.value)


def test_unexpected_shape_is_a_response_error(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    router.get(f"/v1/vpgs/{VPG}").mock(return_value=httpx.Response(200, json={"Unexpected": True}))
    with pytest.raises(ReplicationResponseError, match=f"/v1/vpgs/{VPG}"):
        make().status(VPG)


def test_400_and_404_are_permanent_with_the_managers_message(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    router.get(f"/v1/vpgs/{VPG}").mock(return_value=httpx.Response(200, json=vpg_json()))
    router.post(f"/v1/vpgs/{VPG}/FailoverTest").mock(
        return_value=httpx.Response(400, json={"Message": "VPG 'acme-gold' already has a failover test running."}))
    with pytest.raises(ReplicationRequestRejected, match="already has a failover test") as err:
        make().start_test(VPG)
    assert not is_transient(err.value)
    router.get("/v1/vpgs").mock(return_value=httpx.Response(200, json=[]))
    with pytest.raises(ReplicationNotFound):
        make().status("no-such-vpg")


# --- statuses ------------------------------------------------------------------------------------------


def test_status_names_come_from_the_zvm_not_from_constants(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    # A ZVM version that numbers HistoryNotMeetingSLA before RpoNotMeetingSLA, and FailingOver as 3.
    other = ["Initializing", "MeetingSLA", "NotMeetingSLA", "FailingOver", "HistoryNotMeetingSLA"]
    router.get("/v1/vpgs/statuses").mock(return_value=httpx.Response(200, json=other))
    router.get(f"/v1/vpgs/{VPG}").mock(return_value=httpx.Response(200, json=vpg_json(status=3, substatus=15)))
    group = make().status(VPG)
    assert (group.status, group.state, group.substatus) == ("FailingOver", GroupState.FAILING_OVER,
                                                             "FailingOverBeforeCommit")
    assert group.awaiting_commit and group.actual_rpo_s == 7


# --- task polling -------------------------------------------------------------------------------------


def test_task_ending_failed_raises_task_failed(router: respx.Router, make: Callable[..., ZertoClient],
                                                fake_time: FakeTime) -> None:
    router.get("/v1/tasks/T-1").mock(side_effect=[httpx.Response(200, json=task_json(1)),
                                                  httpx.Response(200, json=task_json(4, reason="datastore full"))])
    zvm = make()
    with pytest.raises(ReplicationTaskFailed) as err:
        zvm.wait_task("T-1", timeout_s=60)
    assert isinstance(err.value, ReplicationFailoverTestFailed)  # the operation is named by its class
    assert "datastore full" in str(err.value) and err.value.task is not None
    assert not is_transient(err.value)
    assert fake_time.sleeps == [0.5]
    assert_no_secret(err.value, zvm)


def test_deadline_exceeded_is_permanent(router: respx.Router, make: Callable[..., ZertoClient],
                                        fake_time: FakeTime) -> None:
    route = router.get("/v1/tasks/T-1").mock(return_value=httpx.Response(200, json=task_json(1, progress=40)))
    with pytest.raises(ReplicationDeadlineExceeded, match="T-1.*40%") as err:
        make().wait_task("T-1", timeout_s=30)
    assert isinstance(err.value, DeadlineExceeded) and not is_transient(err.value)
    assert fake_time.now == pytest.approx(30, abs=0.1)  # never slept past the deadline
    assert max(fake_time.sleeps) <= 5.0 and fake_time.sleeps[1] > fake_time.sleeps[0]  # backoff, capped
    assert route.call_count == len(fake_time.sleeps)


def test_the_earlier_of_deadline_and_timeout_counts(router: respx.Router, make: Callable[..., ZertoClient],
                                                    fake_time: FakeTime) -> None:
    router.get("/v1/tasks/T-1").mock(return_value=httpx.Response(200, json=task_json(1)))
    with pytest.raises(ReplicationDeadlineExceeded, match="drill of acme"):
        make().wait_task("T-1", timeout_s=600, deadline=Deadline.within(12, label="drill of acme"))
    assert fake_time.now == pytest.approx(12, abs=0.1)
    fake_time.now = 0.0
    with pytest.raises(ReplicationDeadlineExceeded):
        make().wait_task("T-1", timeout_s=5, deadline=Deadline.within(600))
    assert fake_time.now == pytest.approx(5, abs=0.1)


def test_each_poll_timeout_is_capped_by_the_time_left(router: respx.Router, make: Callable[..., ZertoClient],
                                                      fake_time: FakeTime) -> None:
    route = router.get("/v1/tasks/T-1").mock(return_value=httpx.Response(200, json=task_json(1)))
    with pytest.raises(ReplicationDeadlineExceeded):
        make(timeout_s=30.0).wait_task("T-1", deadline=Deadline.within(3))
    timeouts = [c.request.extensions["timeout"]["read"] for c in route.calls]
    assert timeouts[0] <= 3.0 and timeouts == sorted(timeouts, reverse=True) and timeouts[-1] < 3.0


def test_transient_errors_are_retried_only_while_the_deadline_allows(
        router: respx.Router, make: Callable[..., ZertoClient], fake_time: FakeTime) -> None:
    route = router.get("/v1/tasks/T-1").mock(return_value=httpx.Response(503, json={"Message": "busy"}))
    with pytest.raises(ReplicationDeadlineExceeded, match="never answered") as err:
        make().wait_task("T-1", timeout_s=4)
    assert isinstance(err.value.__cause__, ReplicationTransientError) and not is_transient(err.value)
    assert 1 < route.call_count <= 6 and fake_time.now == pytest.approx(4, abs=0.1)


def test_an_expired_deadline_polls_nothing(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    route = router.get("/v1/tasks/T-1").mock(return_value=httpx.Response(200, json=task_json(6)))
    with pytest.raises(ReplicationDeadlineExceeded):
        make().wait_task("T-1", deadline=Deadline.within(-1))
    assert route.call_count == 0


def test_polling_survives_a_transient_blip(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    router.get("/v1/tasks/T-1").mock(side_effect=[httpx.Response(503), httpx.ReadTimeout("slow"),
                                                  httpx.Response(200, json=task_json(6, progress=100))])
    task = make().wait_task("T-1", timeout_s=30)
    assert task.state == 6 and task.group_ids == [VPG]


def test_wait_for_state_deadline(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    router.get(f"/v1/vpgs/{VPG}").mock(return_value=httpx.Response(200, json=vpg_json(status=0, substatus=1)))
    with pytest.raises(ReplicationDeadlineExceeded, match="Initializing/InitialSync") as err:
        make().wait_for_state(VPG, [GroupState.MEETING_SLA], timeout_s=10)
    assert not is_transient(err.value)


# --- protect -------------------------------------------------------------------------------------------


def _settings_doc() -> dict[str, Any]:
    return {"VpgSettingsIdentifier": "S-1", "VpgIdentifier": None,
            "Basic": {"Name": None, "RpoInSeconds": 300, "JournalHistoryInHours": 24, "Priority": "Medium",
                      "ProtectedSiteIdentifier": LOCAL, "RecoverySiteIdentifier": PEER},
            "Journal": {"Limitation": {"HardLimitInMB": 153600}}, "Recovery": {},
            "Networks": {"Failover": {"Hypervisor": {"DefaultNetworkIdentifier": None}},
                         "FailoverTest": {"Hypervisor": {"DefaultNetworkIdentifier": None}}},
            "Vms": []}


def test_protect_creates_vpg_with_resolved_identifiers(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    vpgs = router.get("/v1/vpgs").mock(side_effect=[httpx.Response(200, json=[])])
    router.get(f"/v1/virtualizationsites/{LOCAL}/vms").mock(return_value=httpx.Response(200, json=[
        {"VmIdentifier": f"{LOCAL}.vm-1", "VmName": "acme-app01"},
        {"VmIdentifier": f"{LOCAL}.vm-2", "VmName": "acme-web01"}]))
    router.get(f"/v1/virtualizationsites/{PEER}/networks").mock(return_value=httpx.Response(200, json=[
        {"NetworkIdentifier": f"{PEER}.dvportgroup-9", "VirtualizationNetworkName": "acme-bubble"},
        {"NetworkIdentifier": f"{PEER}.network-7", "VirtualizationNetworkName": "VM Network"}]))
    create = router.post("/v1/vpgSettings").mock(return_value=httpx.Response(200, json="S-1"))
    router.get("/v1/vpgSettings/S-1").mock(return_value=httpx.Response(200, json=_settings_doc()))
    put = router.put("/v1/vpgSettings/S-1").mock(return_value=httpx.Response(200))
    router.post("/v1/vpgSettings/S-1/commit").mock(return_value=httpx.Response(200, json="T-1"))
    router.get("/v1/tasks/T-1").mock(return_value=httpx.Response(200, json=task_json(6, "CreateProtectionGroup")))
    router.get(f"/v1/vpgs/{VPG}").mock(return_value=httpx.Response(200, json=vpg_json(status=0, substatus=1)))
    spec = ProtectionSpec(name="acme-gold", vms=["acme-app01", "acme-web01"], rpo_seconds=60,
                          failover_network="VM Network", test_network="acme-bubble")
    result = make().protect(spec)
    assert result.changed and result.group.id == VPG and result.group.state == GroupState.INITIALIZING
    assert create.calls[0].request.content in (b"{}", b"")
    import json as _json
    doc = _json.loads(put.calls[0].request.content)
    assert doc["Basic"]["Name"] == "acme-gold" and doc["Basic"]["RpoInSeconds"] == 60
    assert [v["VmIdentifier"] for v in doc["Vms"]] == [f"{LOCAL}.vm-1", f"{LOCAL}.vm-2"]
    assert doc["Networks"]["FailoverTest"]["Hypervisor"]["DefaultNetworkIdentifier"] == f"{PEER}.dvportgroup-9"
    assert vpgs.calls[0].request.url.params["name"] == "acme-gold"


def test_protect_twice_changes_nothing(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    router.get("/v1/vpgs").mock(return_value=httpx.Response(200, json=[vpg_json()]))
    router.get("/v1/vms").mock(return_value=httpx.Response(200, json=[
        {"VmIdentifier": f"{LOCAL}.vm-1", "VmName": "acme-app01", "VpgIdentifier": VPG},
        {"VmIdentifier": f"{LOCAL}.vm-2", "VmName": "acme-web01", "VpgIdentifier": VPG}]))
    # The settings are read through an edit session that is discarded again: no commit.
    router.get(url__regex=r"/v1/virtualizationsites/[^/]+/\w+$").mock(return_value=httpx.Response(200, json=[]))
    router.get(f"/v1/virtualizationsites/{LOCAL}/vms").mock(return_value=httpx.Response(200, json=[
        {"VmIdentifier": f"{LOCAL}.vm-1", "VmName": "acme-app01"},
        {"VmIdentifier": f"{LOCAL}.vm-2", "VmName": "acme-web01"}]))
    router.post("/v1/vpgSettings").mock(return_value=httpx.Response(200, json="S-1"))
    existing = _settings_doc()
    existing["VpgIdentifier"] = VPG
    existing["Basic"].update({"Name": "acme-gold", "UseWanCompression": True})
    router.get("/v1/vpgSettings/S-1").mock(return_value=httpx.Response(200, json=existing))
    discard = router.delete("/v1/vpgSettings/S-1").mock(return_value=httpx.Response(200))
    commit = router.post("/v1/vpgSettings/S-1/commit").mock(return_value=httpx.Response(200, json="T-1"))
    spec = ProtectionSpec(name="acme-gold", vms=["acme-app01", "acme-web01"])
    assert make().settings_drift(spec) == []
    result = make().protect(spec)
    assert not result.changed and result.diff == [] and commit.call_count == 0 and discard.call_count >= 1
    plan = make().plan_protect(ProtectionSpec(name="acme-gold", vms=["acme-app01"], rpo_seconds=60))
    assert plan == ["- vm acme-web01", "~ rpo 300 s -> 60 s"]
    drift = make().plan_protect(ProtectionSpec(name="acme-gold", vms=["acme-app01", "acme-web01"],
                                               journal_history_hours=48))
    assert drift == ["~ journal history (h): 24 -> 48"]


def test_protect_discards_the_edit_session_when_commit_is_refused(router: respx.Router,
                                                                   make: Callable[..., ZertoClient]) -> None:
    router.get("/v1/vpgs").mock(return_value=httpx.Response(200, json=[]))
    router.get(f"/v1/virtualizationsites/{LOCAL}/vms").mock(return_value=httpx.Response(200, json=[
        {"VmIdentifier": f"{LOCAL}.vm-1", "VmName": "acme-app01"}]))
    router.post("/v1/vpgSettings").mock(return_value=httpx.Response(200, json="S-1"))
    router.get("/v1/vpgSettings/S-1").mock(return_value=httpx.Response(200, json=_settings_doc()))
    router.put("/v1/vpgSettings/S-1").mock(return_value=httpx.Response(200))
    router.post("/v1/vpgSettings/S-1/commit").mock(
        return_value=httpx.Response(400, json={"Message": "VM acme-app01 is already protected by VPG 'x'."}))
    discard = router.delete("/v1/vpgSettings/S-1").mock(return_value=httpx.Response(200))
    with pytest.raises(ReplicationRequestRejected, match="already protected"):
        make().protect(ProtectionSpec(name="acme-gold", vms=["acme-app01"]))
    assert discard.call_count == 1


def test_protect_unknown_vm_is_not_found(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    router.get("/v1/vpgs").mock(return_value=httpx.Response(200, json=[]))
    router.get(f"/v1/virtualizationsites/{LOCAL}/vms").mock(return_value=httpx.Response(200, json=[]))
    router.post("/v1/vpgSettings").mock(return_value=httpx.Response(200, json="S-1"))
    router.get("/v1/vpgSettings/S-1").mock(return_value=httpx.Response(200, json=_settings_doc()))
    router.delete("/v1/vpgSettings/S-1").mock(return_value=httpx.Response(200))
    with pytest.raises(ReplicationNotFound, match="acme-ghost"):
        make().protect(ProtectionSpec(name="acme-gold", vms=["acme-ghost"]))


# --- actions ----------------------------------------------------------------------------------------------


def test_failover_bodies_and_commit_route_by_state(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    status = router.get(f"/v1/vpgs/{VPG}").mock(return_value=httpx.Response(200, json=vpg_json()))
    fo = router.post(f"/v1/vpgs/{VPG}/Failover").mock(return_value=httpx.Response(200, json="T-9"))
    mv = router.post(f"/v1/vpgs/{VPG}/move").mock(return_value=httpx.Response(200, json="T-10"))
    zvm = make()
    task = zvm.failover(VPG, FailoverOptions(recovery_point="1042", shutdown_source="force", commit="auto_commit",
                                             reverse_protection=True))
    assert task.id == "T-9" and task.group_ids == [VPG]
    import json as _json
    body = _json.loads(fo.calls[0].request.content)
    assert body == {"CommitPolicy": 1, "ShutdownPolicy": 2, "TimeToWaitBeforeShutdownInSec": 0,
                    "IsReverseProtection": True, "CheckpointIdentifier": "1042"}
    zvm.failover(VPG, FailoverOptions(planned=True))
    assert _json.loads(mv.calls[0].request.content)["CommitPolicy"] == 2
    status.mock(return_value=httpx.Response(200, json=vpg_json(status=6, substatus=15)))  # Moving
    mc = router.post(f"/v1/vpgs/{VPG}/moveCommit").mock(return_value=httpx.Response(200, json="T-11"))
    assert zvm.commit(VPG, reverse_protection=True).id == "T-11"
    assert _json.loads(mc.calls[0].request.content)["ReverseProtection"] is True


def test_client_is_a_replication_provider_and_repr_hides_secrets(make: Callable[..., ZertoClient]) -> None:
    zvm = make()
    assert isinstance(zvm, ReplicationProvider)
    assert PASSWORD not in repr(zvm) and USER in repr(zvm)
    assert issubclass(ReplicationDeadlineExceeded, ReplicationError)
    assert issubclass(ReplicationDeadlineExceeded, DeadlineExceeded)
    with pytest.raises(ValueError):
        ZertoClient(BASE, USER, PASSWORD, auth_style="ntlm")


# --- block ----------------------------------------------------------------------------------------------------




def test_block_defaults() -> None:
    creds = ZertoCredentials(url=BASE, username=USER, password=PASSWORD)  # type: ignore[arg-type]
    assert creds.verify_tls is True and creds.auth_style == "session"
    assert PASSWORD not in repr(creds) and PASSWORD not in str(creds.model_dump())
    client = creds.get_client()
    assert isinstance(client, ZertoClient) and isinstance(client, ReplicationProvider)
    assert client.url == BASE and PASSWORD not in repr(client)


# --- tasks: check, then act -----------------------------------------------------------------------------


@pytest.fixture()
def creds(monkeypatch: pytest.MonkeyPatch, make: Callable[..., ZertoClient]) -> ZertoCredentials:
    """A block whose clients talk to the respx router."""
    monkeypatch.setattr(ZertoCredentials, "get_client", lambda self: make())
    return ZertoCredentials(url=BASE, username=USER, password=PASSWORD)  # type: ignore[arg-type]


def test_task_commit_failover_is_idempotent(router: respx.Router, creds: ZertoCredentials) -> None:
    from tasks.replication import commit_failover, rollback_failover

    status = router.get(f"/v1/vpgs/{VPG}").mock(return_value=httpx.Response(200, json=vpg_json(status=5, substatus=15)))
    commit = router.post(f"/v1/vpgs/{VPG}/FailoverCommit").mock(return_value=httpx.Response(200, json="T-5"))
    first = commit_failover.fn(creds, VPG, reverse_protection=True)
    assert first.changed and first.value().task_id == "T-5" and commit.call_count == 1
    # Committed with reverse protection: the VPG now replicates from the other site.
    status.mock(return_value=httpx.Response(200, json=vpg_json(
        status=0, substatus=6, ProtectedSite={"identifier": PEER}, RecoverySite={"identifier": LOCAL})))
    assert not commit_failover.fn(creds, VPG, reverse_protection=True).changed
    assert commit.call_count == 1
    with pytest.raises(ReplicationRequestRejected, match="committed already"):
        rollback_failover.fn(creds, VPG)
    # Never failed over: nothing to commit is an error, nothing to roll back is not.
    status.mock(return_value=httpx.Response(200, json=vpg_json()))
    with pytest.raises(ReplicationRequestRejected, match="no failover awaiting commit"):
        commit_failover.fn(creds, VPG)
    assert not rollback_failover.fn(creds, VPG).changed


def test_task_start_failover_and_test_skip_work_under_way(router: respx.Router, creds: ZertoCredentials) -> None:
    from tasks.replication import start_failover, start_failover_test, stop_failover_test

    router.get(f"/v1/vpgs/{VPG}").mock(return_value=httpx.Response(200, json=vpg_json(status=5, substatus=0)))
    router.get("/v1/tasks").mock(return_value=httpx.Response(200, json=[task_json(1, "FailOver")]))
    fo = router.post(f"/v1/vpgs/{VPG}/Failover").mock(return_value=httpx.Response(200, json="T-7"))
    again = start_failover.fn(creds, VPG)
    assert not again.changed and again.value().task_id == "T-1" and fo.call_count == 0
    assert again.value().task is not None and again.value().task.kind == OperationKind.FAILOVER

    test = {"RunningFailOverTestApi": {"StartTime": "2026-01-01T00:00:00Z"}}
    router.get(f"/v1/vpgs/{VPG}").mock(return_value=httpx.Response(200, json=vpg_json(ActiveProcessesApi=test)))
    router.get("/v1/tasks").mock(return_value=httpx.Response(200, json=[]))
    ft = router.post(f"/v1/vpgs/{VPG}/FailoverTest").mock(return_value=httpx.Response(200, json="T-8"))
    assert not start_failover_test.fn(creds, VPG).changed and ft.call_count == 0
    stop = router.post(f"/v1/vpgs/{VPG}/FailoverTestStop").mock(return_value=httpx.Response(200, json="T-9"))
    stopped = stop_failover_test.fn(creds, VPG, summary="ok")
    assert stopped.changed and stopped.value().task_id == "T-9"
    assert b'"FailoverTestSummary":"ok"' in stop.calls[0].request.content.replace(b" ", b"")


def test_task_tag_checkpoint_and_dry_run(router: respx.Router, creds: ZertoCredentials) -> None:
    from tasks.replication import tag_checkpoint, wait_for_replication_task

    router.get(f"/v1/vpgs/{VPG}").mock(return_value=httpx.Response(200, json=vpg_json()))
    router.get(f"/v1/vpgs/{VPG}/checkpoints").mock(return_value=httpx.Response(200, json=[
        {"CheckpointIdentifier": "41", "TimeStamp": "2026-01-01T00:00:00.000Z", "Tag": None},
        {"CheckpointIdentifier": "42", "TimeStamp": "2026-01-01T00:00:05.000Z", "Tag": "pre-drill"}]))
    tag = router.post(f"/v1/vpgs/{VPG}/Checkpoints").mock(return_value=httpx.Response(200))
    found = tag_checkpoint.fn(creds, VPG, "pre-drill")
    assert not found.changed and found.value().id == "42"
    planned = tag_checkpoint.fn(creds, VPG, "pre-failover", dry_run=True)
    assert planned.changed and planned.diff == ["+ checkpoint pre-failover"] and tag.call_count == 0
    assert wait_for_replication_task.fn(creds, None).detail == {"state": "none"}


def test_running_operation_maps_zerto_task_types(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    router.get(f"/v1/vpgs/{VPG}").mock(return_value=httpx.Response(200, json=vpg_json()))
    router.get("/v1/tasks").mock(return_value=httpx.Response(200, json=[
        task_json(6, "FailOverTest"), task_json(1, "StopFailOverTest"), task_json(1, "MoveCommit")]))
    zvm = make()
    assert zvm.running_operation(VPG, OperationKind.TEST) is None  # completed, not running
    stop = zvm.running_operation(VPG, OperationKind.STOP_TEST)
    assert stop is not None and stop.kind == OperationKind.STOP_TEST and stop.type == "StopFailOverTest"
    assert zvm.running_operation(VPG, OperationKind.COMMIT) is not None
    assert zvm.running_operation(VPG, OperationKind.FAILOVER) is None
    router.get("/v1/vpgs").mock(return_value=httpx.Response(200, json=[]))
    assert zvm.running_operation("no-such-vpg", OperationKind.TEST) is None


def test_group_reports_commit_phase_and_direction_neutrally(router: respx.Router,
                                                            make: Callable[..., ZertoClient]) -> None:
    route = router.get(f"/v1/vpgs/{VPG}").mock(return_value=httpx.Response(200, json=vpg_json(status=5, substatus=15)))
    group = make().status(VPG)
    assert group.awaiting_commit and not group.committing and not group.reversed and not group.failover_committed
    route.mock(return_value=httpx.Response(200, json=vpg_json(status=5, substatus=14)))
    assert make().status(VPG).committing
    route.mock(return_value=httpx.Response(200, json=vpg_json(
        status=0, substatus=6, ProtectedSite={"identifier": PEER}, RecoverySite={"identifier": LOCAL})))
    group = make().status(VPG)
    assert group.reversed and group.failover_committed and not group.awaiting_commit


def test_unprotect_of_a_missing_group_is_none(router: respx.Router, make: Callable[..., ZertoClient]) -> None:
    router.get("/v1/vpgs").mock(return_value=httpx.Response(200, json=[]))
    delete = router.delete(f"/v1/vpgs/{VPG}").mock(return_value=httpx.Response(200, json="T-1"))
    assert make().unprotect("acme-gone") is None and delete.call_count == 0
