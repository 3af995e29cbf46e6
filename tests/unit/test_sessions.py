"""draas.sessions: one client per endpoint and account per flow run, shared by threads (fakes only)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar, Self

import pytest
from pydantic import BaseModel, SecretStr

from draas import sessions
from draas.sessions import SessionPool, close_pool, current_pool, open_pool, session, sharing_enabled

PASSWORD = "pool-s3cret-pw"


class _Client:
    """Counts its logins and logouts; login is slow so that racing threads overlap."""

    created: ClassVar[list[_Client]] = []

    def __init__(self, block: FakeBlock) -> None:
        self.block = block
        self.logins = self.logouts = 0
        self.active = self.most_active = 0
        self._count = threading.Lock()
        _Client.created.append(self)

    def __enter__(self) -> Self:
        time.sleep(0.05)
        self.logins += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.logouts += 1

    def work(self, seconds: float = 0.02) -> None:
        """Record how many threads are inside at once."""
        with self._count:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(seconds)
        with self._count:
            self.active -= 1


class FakeClient(_Client):
    thread_safe: ClassVar[bool] = True


class SerialClient(_Client):
    thread_safe: ClassVar[bool] = False


class UndeclaredClient(_Client):
    """Says nothing about threads: treated as not thread-safe."""


class FakeBlock(BaseModel):
    host: str
    username: str = "svc"
    password: SecretStr = SecretStr(PASSWORD)
    kind: str = "safe"

    def get_client(self) -> Any:
        cls = {"safe": FakeClient, "serial": SerialClient, "undeclared": UndeclaredClient}[self.kind]
        return cls(self)


@pytest.fixture(autouse=True)
def in_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Pretend every thread runs inside flow run ``run-1``; no pool is left behind."""
    _Client.created.clear()
    monkeypatch.delenv("DRAAS_SHARED_SESSIONS", raising=False)
    monkeypatch.setattr(sessions, "_current_run_id", lambda: "run-1")
    yield "run-1"
    close_pool("run-1")


def run_threads(n: int, target: Any) -> list[Any]:
    out: list[Any] = [None] * n
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def one(i: int) -> None:
        try:
            start.wait(timeout=5)
            out[i] = target(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return out


def test_twenty_threads_asking_at_once_log_in_once() -> None:
    open_pool("run-1")
    block = FakeBlock(host="vc1")

    def use(_: int) -> FakeClient:
        with session(block) as client:
            client.work()
            return client

    got = run_threads(20, use)
    assert len(_Client.created) == 1 and _Client.created[0].logins == 1
    assert all(c is got[0] for c in got)
    assert got[0].most_active > 1  # a thread-safe client is used by many threads at once
    assert got[0].logouts == 0  # still open: the run is not over


def test_distinct_endpoints_and_accounts_get_distinct_clients_and_equal_blocks_share() -> None:
    open_pool("run-1")
    blocks = [FakeBlock(host="vc1"), FakeBlock(host="vc2"), FakeBlock(host="vc1", username="other"),
              FakeBlock(host="vc1", password=SecretStr("another-password"))]
    clients = []
    for block in blocks:
        with session(block) as c:
            clients.append(c)
    assert len({id(c) for c in clients}) == 4
    with session(FakeBlock(host="vc1")) as again:  # an equal block (another object): same session
        assert again is clients[0]
    assert len(current_pool() or []) == 4


def test_pool_keys_never_hold_a_secret() -> None:
    import hashlib

    key = sessions._identity(FakeBlock(host="vc1"))
    assert PASSWORD not in key and hashlib.sha256(PASSWORD.encode()).hexdigest() != key
    assert sessions._identity(FakeBlock(host="vc1")) == key


@pytest.mark.parametrize("kind", ["serial", "undeclared"])
def test_clients_not_declared_thread_safe_are_serialised(kind: str) -> None:
    open_pool("run-1")
    block = FakeBlock(host="dev1", kind=kind)

    def use(_: int) -> Any:
        with session(block) as client:
            client.work(0.01)
            return client

    got = run_threads(8, use)
    assert len(_Client.created) == 1 and got[0].logins == 1
    assert got[0].most_active == 1  # one thread at a time


def test_a_serialised_client_whose_block_failed_is_replaced_and_closed() -> None:
    open_pool("run-1")
    block = FakeBlock(host="dev1", kind="serial")
    with pytest.raises(RuntimeError, match="boom"), session(block):
        raise RuntimeError("boom")
    first = _Client.created[0]
    assert first.logouts == 1  # its connection may be mid-dialogue: dropped
    with session(block) as client:
        assert client is not first and client.logins == 1
    close_pool("run-1")
    assert first.logouts == 1 and client.logouts == 1


def test_a_thread_safe_client_survives_a_failed_block() -> None:
    open_pool("run-1")
    block = FakeBlock(host="vc1")
    with pytest.raises(RuntimeError), session(block):
        raise RuntimeError("boom")
    with session(block) as client:
        assert client is _Client.created[0] and client.logouts == 0


def test_close_logs_out_once_and_later_tasks_get_private_clients() -> None:
    open_pool("run-1")
    block = FakeBlock(host="vc1")
    for _ in range(3):
        with session(block):
            pass
    shared = _Client.created[0]
    assert len(_Client.created) == 1 and shared.logouts == 0
    close_pool("run-1")
    close_pool("run-1")  # twice: no-op
    assert shared.logouts == 1
    assert current_pool() is None
    with session(block) as private:
        assert private is not shared
    assert private.logouts == 1 and shared.logouts == 1


def test_close_waits_for_a_client_still_in_use() -> None:
    pool = open_pool("run-1")
    block = FakeBlock(host="vc1")
    with session(block) as client:
        close_pool("run-1")
        assert client.logouts == 0 and pool.closed  # the late task keeps a working client
    assert client.logouts == 1


def test_without_a_pool_each_block_gets_a_private_client_closed_after_use() -> None:
    block = FakeBlock(host="vc1")
    assert current_pool() is None
    with session(block) as a:
        assert a.logins == 1 and a.logouts == 0
    with session(block) as b:
        pass
    assert a is not b and a.logouts == b.logouts == 1


def test_outside_any_flow_run_there_is_no_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    open_pool("run-1")
    monkeypatch.setattr(sessions, "_current_run_id", lambda: None)
    assert current_pool() is None
    with session(FakeBlock(host="vc1")) as client:
        pass
    assert client.logouts == 1


@pytest.mark.parametrize("value", ["0", "false", "no", "OFF"])
def test_draas_shared_sessions_0_turns_sharing_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    open_pool("run-1")
    monkeypatch.setenv("DRAAS_SHARED_SESSIONS", value)
    assert not sharing_enabled() and current_pool() is None
    block = FakeBlock(host="vc1")

    def use(_: int) -> int:
        with session(block) as client:
            client.work()
            return client.logouts

    assert run_threads(4, use) == [0, 0, 0, 0]
    assert len(_Client.created) == 4 and all(c.logins == c.logouts == 1 for c in _Client.created)
    with session(block) as c:
        pass
    assert c.logouts == 1


def test_open_pool_is_idempotent_and_reopens_after_close() -> None:
    first = open_pool("run-1")
    assert open_pool("run-1") is first
    close_pool("run-1")
    second = open_pool("run-1")
    assert second is not first and not second.closed and first.closed


def test_a_failed_login_is_not_kept_and_the_next_task_tries_again() -> None:
    open_pool("run-1")
    attempts: list[int] = []

    class Flaky(FakeBlock):
        def get_client(self) -> Any:
            attempts.append(1)
            if len(attempts) == 1:
                raise ConnectionError("login refused once")
            return FakeClient(self)

    block = Flaky(host="vc1")
    with pytest.raises(ConnectionError), session(block):
        pass
    with session(block) as client:
        assert client.logins == 1
    assert len(attempts) == 2


def test_a_subflow_without_a_pool_shares_its_parents(monkeypatch: pytest.MonkeyPatch) -> None:
    import contextvars

    def parent() -> tuple[SessionPool | None, SessionPool]:
        pool = open_pool("run-1")
        monkeypatch.setattr(sessions, "_current_run_id", lambda: "child-run")
        try:
            return current_pool(), pool
        finally:
            monkeypatch.setattr(sessions, "_current_run_id", lambda: "run-1")

    seen, opened = contextvars.copy_context().run(parent)
    assert seen is opened
    # Another context (an unrelated run in the same process) does not see it.
    monkeypatch.setattr(sessions, "_current_run_id", lambda: "unrelated-run")
    assert current_pool() is None


def test_pool_client_is_the_leased_client() -> None:
    pool = open_pool("run-1")
    block = FakeBlock(host="vc1", kind="serial")
    client, lock = pool.client(block)
    assert lock is not None
    with session(block) as leased:
        assert leased is client
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.client(block)
