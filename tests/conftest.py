"""Session-wide fixtures: one lab and one Prefect harness per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Prefect settings must be in the environment before prefect is imported anywhere.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/<layer>/ get the <layer> marker so `-m unit` etc. select them."""
    for item in items:
        layer = Path(str(item.fspath)).relative_to(PROJECT_ROOT / "tests").parts[0]
        if layer in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture(scope="session")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab")


@pytest.fixture(scope="session")
def lab(lab_dir: Path) -> Iterator[LabState]:  # noqa: F821
    """The whole lab, started once per session; a missing simulator is a setup error.

    The product finds it as it finds any site: through the site profile the lab wrote,
    named by ``$DRAAS_SITE_PROFILE`` (configs/site.yaml says ``connections: profile``).
    ``$DRAAS_LAB_DIR`` is for tests that drive the lab itself.
    """
    from lab import launcher
    from lab.state import SITE_PROFILE_FILE

    state = launcher.up(lab_dir=lab_dir)
    profile = lab_dir / SITE_PROFILE_FILE
    assert profile.is_file(), f"the lab wrote no site profile in {lab_dir}"
    os.environ["DRAAS_LAB_DIR"] = str(lab_dir)
    os.environ["DRAAS_SITE_PROFILE"] = str(profile)
    try:
        yield state
    finally:
        launcher.down(lab_dir)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server per session (it takes ~18 s to start here)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:  # noqa: F821 - tests/postgres.py
    """A real PostgreSQL (Debian packages) for the session; failing to start is an error."""
    from postgres import PostgresServer  # tests/postgres.py; pytest puts tests/ on sys.path

    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()
