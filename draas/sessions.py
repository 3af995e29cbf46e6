"""One authenticated session per system per flow run, shared by the run's tasks and threads.

Tasks open their client through :func:`session`::

    with session(credentials) as vc:        # credentials: a block with get_client()
        vc.create_folder("acme")

Inside a flow run whose run context opened a pool (:func:`open_pool`), the first task to ask
for a given endpoint and account logs in; every later task of the run, in any thread, gets the
same client, and the pool logs out once when the run ends. Outside a run (a task's ``.fn()``,
a script) :func:`session` opens a private client and closes it after the block, as before.

The pool is found by the flow run id Prefect reports (``prefect.runtime.flow_run.id``: the
run's id in the flow body and in its tasks, worker threads included, since Prefect copies the
run context into them). A subflow whose run context opened no pool of its own shares the pool
its parent opened (found through a context variable that subflows and task threads inherit).

Clients declare whether they may be shared between threads with a class attribute
``thread_safe``. Those that are not (an SSH session to a device: one command at a time), and
those that do not say, are serialised with a lock held for the whole ``with`` block; such a
client is also dropped from the pool (and closed once unused) when a block that used it
raised, since its one connection may be left half way through a dialogue. Expired sessions are
the clients' business: each one logs in again when the system says the session is gone
(vCenter ``NotAuthenticated``, ZVM 401).

``DRAAS_SHARED_SESSIONS=0`` turns sharing off (one login per task, the behaviour the
benchmark compares against).
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from pydantic import SecretBytes, SecretStr

_log = logging.getLogger(__name__)

#: Per-process key of the identity hash: secrets never appear in a pool key, not even as a
#: plain digest that could be tested against guesses.
_KEY_SALT = secrets.token_bytes(32)


def _identity(block: Any) -> str:
    """A key for the endpoint and account a block describes (secrets hashed, never kept)."""
    values: dict[str, Any] = {}
    for name in sorted(type(block).model_fields):
        value = getattr(block, name, None)
        if isinstance(value, SecretStr | SecretBytes):
            secret = value.get_secret_value()
            raw_secret = secret if isinstance(secret, bytes) else str(secret).encode()
            value = hmac.new(_KEY_SALT, raw_secret, hashlib.sha256).hexdigest()
        values[name] = value
    raw = json.dumps([type(block).__module__, type(block).__qualname__, values], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _is_thread_safe(client: Any) -> bool:
    """Only a client that says so is shared between threads without a lock."""
    return getattr(client, "thread_safe", False) is True


class _Entry:
    """One open client of a pool, with its lock (if it needs one) and how many blocks use it."""

    __slots__ = ("client", "lock", "retired", "users")

    def __init__(self, client: Any, lock: threading.RLock | None) -> None:
        self.client = client
        self.lock = lock
        self.users = 0
        self.retired = False  # out of the pool: closed as soon as nobody uses it


def _quiet_close(client: Any) -> None:
    try:
        client.__exit__(None, None, None)
    except Exception as exc:  # noqa: BLE001 - logging out of a dead session must not fail the run
        _log.debug("closing %s failed: %s", type(client).__name__, type(exc).__name__)


class SessionPool:
    """The open clients of one flow run, keyed by endpoint and account."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._opening: dict[str, threading.Lock] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _use(self, key: str) -> _Entry | None:
        """The open entry of ``key``, counted as in use (the caller holds ``self._lock``)."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.users += 1
        return entry

    def _acquire(self, block: Any) -> _Entry | None:
        """The entry for ``block`` (logged in on first use), counted as in use; None once closed."""
        key = _identity(block)
        with self._lock:
            if self._closed or (entry := self._use(key)) is not None:
                return None if self._closed else entry
            opening = self._opening.setdefault(key, threading.Lock())
        with opening:  # one login per endpoint even when many threads ask at once
            with self._lock:
                if self._closed or (entry := self._use(key)) is not None:
                    return None if self._closed else entry
            client = block.get_client()
            client.__enter__()  # a failed login leaves nothing behind: the next asker tries again
            entry = _Entry(client, None if _is_thread_safe(client) else threading.RLock())
            with self._lock:
                if self._closed:  # the run ended while we logged in: do not leak the session
                    entry.retired = True
                    entry.users = 0
                else:
                    self._entries[key] = entry
                    entry.users = 1
            if entry.retired:
                _quiet_close(client)
                return None
            return entry

    def _release(self, entry: _Entry, *, failed: bool) -> None:
        close = False
        with self._lock:
            entry.users -= 1
            if failed and entry.lock is not None and not entry.retired:
                # One connection, maybe left mid-dialogue: the next task gets a fresh one.
                entry.retired = True
                for key, value in list(self._entries.items()):
                    if value is entry:
                        del self._entries[key]
            close = entry.retired and entry.users == 0
        if close:
            _quiet_close(entry.client)

    def client(self, block: Any) -> tuple[Any, threading.RLock | None]:
        """The run's client for ``block`` (logged in on first use) and its lock, if it needs one.

        Prefer :func:`session`, which also tells the pool when the client is no longer used.

        Raises:
            RuntimeError: the pool is closed.
        """
        entry = self._acquire(block)
        if entry is None:
            raise RuntimeError("the session pool of this run is closed")
        with self._lock:
            entry.users -= 1  # not tracked: the caller holds no lease
        return entry.client, entry.lock

    @contextmanager
    def lease(self, block: Any) -> Iterator[Any | None]:
        """Use the run's client for ``block`` for the duration of the block (None: pool closed)."""
        entry = self._acquire(block)
        if entry is None:
            yield None
            return
        failed = False
        try:
            with entry.lock if entry.lock is not None else nullcontext():
                yield entry.client
        except BaseException:
            failed = True
            raise
        finally:
            self._release(entry, failed=failed)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def close(self) -> None:
        """Log out of every system once (errors while logging out are ignored).

        A client still in use by a late task is closed when that task is done with it.
        """
        with self._lock:
            self._closed = True
            entries, self._entries = list(self._entries.values()), {}
            idle = []
            for entry in entries:
                entry.retired = True
                if entry.users == 0:
                    idle.append(entry)
        for entry in idle:
            _quiet_close(entry.client)


_POOLS: dict[str, SessionPool] = {}
_POOLS_LOCK = threading.Lock()
#: The pool opened last in this context: inherited by subflows and by task threads.
_CONTEXT_POOL: contextvars.ContextVar[SessionPool | None] = contextvars.ContextVar("draas_session_pool",
                                                                                   default=None)


def sharing_enabled() -> bool:
    """False when ``DRAAS_SHARED_SESSIONS`` is 0/false/no: every task logs in for itself."""
    return os.environ.get("DRAAS_SHARED_SESSIONS", "1").strip().lower() not in ("0", "false", "no", "off")


def open_pool(run_id: str) -> SessionPool:
    """Open (or return) the pool of flow run ``run_id``; call it in the run's own context."""
    with _POOLS_LOCK:
        pool = _POOLS.get(run_id)
        if pool is None or pool.closed:
            pool = _POOLS[run_id] = SessionPool()
    _CONTEXT_POOL.set(pool)
    return pool


def close_pool(run_id: str) -> None:
    """Log out of every session of flow run ``run_id`` (no-op when it has no pool)."""
    with _POOLS_LOCK:
        pool = _POOLS.pop(run_id, None)
    if pool is not None:
        pool.close()


def _current_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        run_id = flow_run.id
    except Exception:  # noqa: BLE001 - no Prefect context: no pool
        return None
    return str(run_id) if run_id else None


def current_pool() -> SessionPool | None:
    """The pool of the flow run this code runs in (tasks included), if its run context opened one."""
    if not sharing_enabled():
        return None
    run_id = _current_run_id()
    if run_id is None:
        return None
    with _POOLS_LOCK:
        pool = _POOLS.get(run_id)
    if pool is None:
        pool = _CONTEXT_POOL.get()  # a subflow without a pool of its own: its parent's
    return pool if pool is not None and not pool.closed else None


@contextmanager
def session(block: Any) -> Iterator[Any]:
    """The run's shared client for ``block``, or a private one outside a run (closed afterwards)."""
    pool = current_pool()
    if pool is not None:
        with pool.lease(block) as client:
            if client is not None:
                yield client
                return
    with block.get_client() as client:
        yield client
