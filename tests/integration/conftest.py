"""Fixtures shared by the integration tests of the ledger's handlers."""

from __future__ import annotations

from pathlib import Path

import pytest

from draas.site import Site
from draas.state.store import StateStore


@pytest.fixture()
def site(lab) -> Site:
    """The recovery site as the product finds it: through the session lab's site profile."""
    return Site.for_config_dir(None)


@pytest.fixture()
def store(tmp_path: Path) -> StateStore:
    """A scratch state store (SQLite) for one test (modules that need another define their own)."""
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")
