"""Fixtures shared by the end-to-end modules: a scratch state store per module, the ZVM's own REST API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


@pytest.fixture(scope="module")
def flows_env(lab, prefect_harness, request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh state store (and a directory for outputs) for one module's flow runs."""
    root = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    mp = pytest.MonkeyPatch()
    mp.setenv("DRAAS_DATABASE_URL", f"sqlite:///{root / 'state.db'}")
    try:
        yield root
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def zvm(lab) -> Iterator[httpx.Client]:
    """A client of the replication manager's REST API with its own session (the test's eyes, not the product's)."""
    rep = lab.replication
    assert rep is not None
    client = httpx.Client(base_url=rep.url, timeout=30)
    login = client.post("/v1/session/add", auth=(rep.username, rep.password), json={"AuthenticationMethod": 1})
    login.raise_for_status()
    client.headers["x-zerto-session"] = login.headers["x-zerto-session"]
    try:
        yield client
    finally:
        client.delete("/v1/session")
        client.close()
