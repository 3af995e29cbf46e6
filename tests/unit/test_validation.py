"""Every validation rule: a broken copy of the sample configs gives the exact field path.

Each case copies configs/ (tier catalog + the three sample tenants) into a temporary
directory, breaks one thing, runs ``draas validate`` and checks the complete output, the
exit code, and that the state store was not touched.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from draas.cli import app
from draas.state import StateStore
from draas.validation import ConfigInvalid, load_tenant, validate_paths

ROOT = Path(__file__).resolve().parents[2]
A, G, INI = "configs/tenants/acme.yaml", "configs/tenants/globex.yaml", "configs/tenants/initech.yaml"

Mutation = Callable[[dict[str, Any]], None]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of configs/ (tiers + tenants) as the working directory, so paths print as configs/..."""
    (tmp_path / "configs" / "tenants").mkdir(parents=True)
    shutil.copy(ROOT / "configs" / "tiers.yaml", tmp_path / "configs" / "tiers.yaml")
    for f in (ROOT / "configs" / "tenants").glob("*.yaml"):
        shutil.copy(f, tmp_path / "configs" / "tenants" / f.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def store(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StateStore]:
    """A state store with one row in it, where a careless validator would write."""
    url = f"sqlite:///{workdir / 'state.db'}"
    monkeypatch.setenv("DRAAS_DATABASE_URL", url)
    st = StateStore(url)
    st.audit(actor="setup", action="seed", channel="cli", outcome="ok")
    yield st
    st.dispose()


def mutate(path: str, change: Mutation) -> None:
    data = yaml.safe_load(Path(path).read_text())
    change(data)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))


def run_validate(*args: str) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(app, ["validate", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout.splitlines(), result.output


def assert_untouched(store: StateStore, workdir: Path, before: dict[str, int]) -> None:
    assert store.counts() == before
    assert not (workdir / ".draas").exists()  # nothing created at the default location either


# --- mutations ------------------------------------------------------------------------------------


def _set(*path: Any, value: Any) -> Mutation:
    def change(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _rename_initech_vrf(data: dict[str, Any]) -> None:
    data["network"]["vrfs"][0]["name"] = "acme-pvt"
    for vlan in data["network"]["vlans"]:
        vlan["vrf"] = "acme-pvt"


def _initech_control_vlan_into_acme_dmz_range(data: dict[str, Any]) -> None:
    vlan = data["network"]["vlans"][1]
    vlan["subnet"], vlan["gateway"] = "10.10.4.0/24", "10.10.4.1"
    data["dr_components"]["master_targets"][0]["ip"] = "10.10.4.10"


def _extra_bronze_vlan(data: dict[str, Any]) -> None:
    data["network"]["vlans"].append(
        {
            "id": 1033,
            "name": "initech-extra",
            "role": "server",
            "vrf": "initech",
            "subnet": "10.30.2.0/24",
            "gateway": "10.30.2.1",
        }
    )


def _disks(count: int, excluded: int = 0) -> Mutation:
    def change(data: dict[str, Any]) -> None:
        disks = data["machines"][1]["disks"]
        disks += [
            {"name": f"d{i}", "size_gb": 10, "excluded": i < excluded}
            for i in range(count - len(disks))
        ]

    return change


def _heavy_app(data: dict[str, Any]) -> None:
    data["protected_site"]["bandwidth_mbps"] = 100
    data["machines"][1]["change_rate_gb_per_day"] = 1001


def _pmr(window: str, jobs: int | None = None) -> Mutation:
    def change(data: dict[str, Any]) -> None:
        data["machines"][0]["kind"] = "physical"
        group = data["protection_groups"][0]
        group.update(
            {
                "package": "PMR",
                "replication_interval": "4h",
                "sla": {"rpo": "5h", "rto": "8h"},
                "retention": {"window": window},
            }
        )
        if jobs is not None:
            group["concurrent_jobs"] = jobs

    return change


def _drop_second_drill(data: dict[str, Any]) -> None:
    del data["drills"]["dates"][1]


def _static_ip_clash(data: dict[str, Any]) -> None:
    nic = data["machines"][1]["nics"][0]
    nic["vlan"], nic["recovery_ip"] = "globex-db", "10.120.1.10"


def _both_ways(data: dict[str, Any]) -> None:
    data["machines"][0]["nics"][0]["recovery_ip"] = "10.120.1.11"


def _drop_customer_rd(data: dict[str, Any]) -> None:
    del data["network"]["vrfs"][0]["rd"]


# (case id, file to break, mutation, exact expected output lines)
CASES: list[tuple[str, str, Mutation, list[str]]] = [
    # the container must render from what validates
    (
        "transit-vlan-collides-with-another-tenants-vlan",
        INI,
        _set("network", "vlans", 1, "id", value=3011),
        [
            f"{INI}: network.vlans[1].id: VLAN id 3011 is already used by tenant acme "
            f"({A}: network.vlans[0].id) as the container's transit link for VLAN 1011"
        ],
    ),
    (
        "customer-vrf-without-rd",
        INI,
        _drop_customer_rd,
        [f"{INI}: network: tenant initech: VRF initech needs an rd on the PE router"],
    ),
    # cross-tenant
    (
        "vlan-id-used-twice",
        G,
        _set("network", "vlans", 0, "id", value=1011),
        [
            f"{G}: network.vlans[0].id: VLAN id 1011 is already used by tenant acme ({A}: network.vlans[0].id)"
        ],
    ),
    (
        "vrf-name-used-twice",
        INI,
        _rename_initech_vrf,
        [
            f"{INI}: network.vrfs[0].name: VRF name acme-pvt is already used by tenant acme ({A}: network.vrfs[1].name)"
        ],
    ),
    (
        "subnet-overlap",
        INI,
        _initech_control_vlan_into_acme_dmz_range,
        [
            (
                f"{INI}: network.vlans[1].subnet: subnet 10.10.4.0/24 overlaps 10.10.4.0/24, which is already used by "
                f"tenant acme ({A}: network.vlans[3].subnet)"
            )
        ],
    ),
    (
        "public-ip-used-twice",
        G,
        _set("network", "public_ips", 1, "address", value="198.51.100.11"),
        [
            (
                f"{G}: network.public_ips[1].address: public IP 198.51.100.11 is already used by tenant acme "
                f"({A}: network.public_ips[1].address)"
            )
        ],
    ),
    # dependencies and references
    (
        "dependency-cycle",
        A,
        _set("machines", 0, "depends_on", value=["acme-web01"]),
        [
            (
                f"{A}: machines[0].depends_on: dependency cycle acme-dc01 -> acme-web01 -> acme-app01 -> "
                "acme-sql01 -> acme-dc01"
            )
        ],
    ),
    (
        "unknown-dependency",
        A,
        _set("machines", 4, "depends_on", value=["acme-app99"]),
        [f"{A}: machines[4].depends_on[0]: unknown machine 'acme-app99'"],
    ),
    (
        "unknown-vlan-reference",
        A,
        _set("machines", 0, "nics", 0, "vlan", value="acme-nope"),
        [f"{A}: machines[0].nics[0].vlan: unknown VLAN 'acme-nope'"],
    ),
    (
        "unknown-master-target",
        A,
        _set("protection_groups", 1, "master_target", value="acme-mt-x"),
        [f"{A}: protection_groups[1].master_target: unknown master target 'acme-mt-x'"],
    ),
    # tier
    (
        "vlan-count-matches-tier",
        INI,
        _extra_bronze_vlan,
        [f"{INI}: network.vlans: tier bronze has 2 VLANs (server, dr_control), found 3"],
    ),
    (
        "dmz-zone-needs-its-vlan",
        A,
        _set("network", "zones", value=[]),
        [
            f"{A}: network.vlans: tier gold has 3 VLANs (web, app, db), found 4",
            f"{A}: network.vrfs: tier gold has 2 VRFs (customer, pvt), found 3 (customer, pvt, dmz)",
        ],
    ),
    (
        "no-load-balancer-on-bronze",
        INI,
        _set(
            "network",
            "load_balancer_vips",
            value=[
                {
                    "name": "x",
                    "address": "10.30.1.100",
                    "vlan": "initech-server",
                    "port": 80,
                    "members": ["initech-app01"],
                    "member_port": 80,
                }
            ],
        ),
        [f"{INI}: network.load_balancer_vips: tier bronze has no load balancer"],
    ),
    # DR components
    (
        "master-target-os-family",
        INI,
        _set("dr_components", "master_targets", 0, "os_family", value="linux"),
        [
            (
                f"{INI}: protection_groups[1].machines[0]: initech-app01 is windows but master target initech-mt-win01 "
                "is linux (the master target must be of the same OS family)"
            )
        ],
    ),
    (
        "at-most-40-disks-per-master-target",
        INI,
        _disks(41),
        [
            (
                f"{INI}: dr_components.master_targets[0]: 41 protected disks on initech-mt-win01; at most 40 per "
                "master target (add another master target)"
            )
        ],
    ),
    (
        "at-most-1tb-per-day-per-process-server",
        INI,
        _heavy_app,
        [
            (
                f"{INI}: dr_components.process_servers[0]: 1001 GB/day of changes through initech-ps01; at most "
                "1 TB/day (1000 GB) per process server (add another)"
            )
        ],
    ),
    # RPO
    (
        "rpo-below-cdp-floor",
        A,
        _set("protection_groups", 0, "sla", "rpo", value="5s"),
        [
            (
                f"{A}: protection_groups[0].sla.rpo: 5s is not achievable by VMR-CDP (interval 5s, link 10% busy): "
                "best is 6s"
            )
        ],
    ),
    (
        "rpo-faster-than-snapshots",
        G,
        _set("protection_groups", 1, "sla", "rpo", value="4h"),
        [
            (
                f"{G}: protection_groups[1].sla.rpo: 4h is not achievable by VMR-SNAP (interval 4h, link 14% busy): "
                "best is 4h32m54s"
            )
        ],
    ),
    (
        "rpo-link-saturated",
        INI,
        _set("protected_site", "bandwidth_mbps", value=2),
        [
            (
                f"{INI}: protection_groups[0].sla.rpo: 2h is not achievable: 3.2 Mbps of peak changes exceed the "
                "site's 2 Mbps, replication would fall behind"
            ),
            (
                f"{INI}: protection_groups[1].sla.rpo: 5m is not achievable: 3.2 Mbps of peak changes exceed the "
                "site's 2 Mbps, replication would fall behind"
            ),
        ],
    ),
    # retention fits the package
    (
        "svr-keeps-three-days",
        INI,
        _set("protection_groups", 0, "retention", "window", value="2d"),
        [f"{INI}: protection_groups[0].retention.window: SVR keeps at least 3d (asked 2d)"],
    ),
    (
        "cdp-keeps-at-most-four-weeks",
        A,
        _set("protection_groups", 1, "retention", "window", value="5w"),
        [f"{A}: protection_groups[1].retention.window: VMR-CDP keeps at most 4w (asked 5w)"],
    ),
    (
        "pmr-at-most-five-points",
        INI,
        _pmr("1d"),
        [
            f"{INI}: protection_groups[0].retention.window: PMR keeps at most 5 recovery points (1d every 4h is 6)"
        ],
    ),
    (
        "pmr-at-most-ten-jobs",
        INI,
        _pmr("20h", jobs=11),
        [f"{INI}: protection_groups[0].concurrent_jobs: PMR runs at most 10 jobs concurrently"],
    ),
    (
        "sparse-needs-a-journal",
        G,
        _set("protection_groups", 1, "retention", "sparse", value=[{"until": "7d", "keep": "all"}]),
        [
            f"{G}: protection_groups[1].retention.sparse: sparse retention needs a journal; VMR-SNAP has none"
        ],
    ),
    (
        "sparse-last-tier-ends-at-window",
        A,
        _set("protection_groups", 0, "retention", "window", value="3w"),
        [
            (
                f"{A}: protection_groups[0].retention.sparse[2].until: the last tier must end at the retention "
                "window (3w)"
            )
        ],
    ),
    (
        "sparse-bookmark-type-must-be-scheduled",
        A,
        _set("protection_groups", 0, "bookmarks", value=[{"type": "file_system", "every": "15m"}]),
        [
            (
                f"{A}: protection_groups[0].retention.sparse[2].bookmark_types[0]: no application bookmark is "
                "scheduled in bookmarks"
            )
        ],
    ),
    # drills
    (
        "drills-five-months-apart",
        A,
        _set("drills", "dates", 1, value="2027-04-06T10:00"),
        [
            (
                f"{A}: drills.dates[1]: only 119 days after the previous drill; drills are at least 5 months apart "
                "(ideally six)"
            )
        ],
    ),
    (
        "two-drills-per-12-months",
        A,
        _drop_second_drill,
        [
            (
                f"{A}: drills.dates: 1 drill(s) between 2026-11-02 and 2027-11-01; at least 2 in every 12 months "
                "from service_start"
            )
        ],
    ),
    (
        "drill-inside-business-hours",
        A,
        _set("drills", "dates", 2, value="2027-12-07T17:00"),
        [
            (
                f"{A}: drills.dates[2]: Tue 2027-12-07 17:00 + 4h is outside business hours "
                "(mon,tue,wed,thu,fri 08:00-18:00 Europe/London)"
            )
        ],
    ),
    (
        "drill-not-on-weekend",
        G,
        _set("drills", "dates", 1, value="2027-07-10T09:30"),
        [
            (
                f"{G}: drills.dates[1]: Sat 2027-07-10 09:30 + 4h is outside business hours "
                "(mon,tue,wed,thu,fri 08:30-17:30 America/New_York)"
            )
        ],
    ),
    (
        "first-drill-during-transition",
        A,
        _set("drills", "transition_end", value="2026-11-30"),
        [
            f"{A}: drills.dates[0]: the first drill happens during transition (2026-11-02 to 2026-11-30)"
        ],
    ),
    # recovery addresses
    (
        "recovery-ip-inside-subnet",
        G,
        _set("machines", 1, "nics", 0, "recovery_ip", value="10.120.3.25"),
        [
            (
                f"{G}: machines[1].nics[0].recovery_ip: recovery address 10.120.3.25 is not inside 10.120.2.0/24 "
                "of VLAN globex-app"
            )
        ],
    ),
    (
        "same-ip-needs-l2-extension-subnet",
        A,
        _set("machines", 3, "nics", 0, "vlan", value="acme-app"),
        [
            (
                f"{A}: machines[3].nics[0].ip: L2 extension keeps the production address, so recovery address "
                "10.10.3.40 is not inside 10.10.2.0/24 of VLAN acme-app"
            )
        ],
    ),
    (
        "recovery-ip-unique",
        G,
        _static_ip_clash,
        [
            (
                f"{G}: machines[1].nics[0].recovery_ip: recovery address 10.120.1.10 is already used at "
                "machines[0].nics[0].re_ip_rule"
            )
        ],
    ),
    (
        "re-ip-one-way-only",
        G,
        _both_ways,
        [f"{G}: machines[0].nics[0].mapping: re_ip needs exactly one of recovery_ip or re_ip_rule"],
    ),
    (
        "master-target-ip-inside-its-vlan",
        A,
        _set("dr_components", "master_targets", 1, "ip", value="10.10.3.251"),
        [
            f"{A}: dr_components.master_targets[1].ip: 10.10.3.251 is not inside 10.10.2.0/24 of VLAN acme-app"
        ],
    ),
    # pydantic errors take the same form
    (
        "pydantic-error-one-line",
        G,
        _set("protected_site", "bandwidth_mbps", value=101),
        [f"{G}: protected_site.bandwidth_mbps: Input should be less than or equal to 100"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rule(case: tuple[str, str, Mutation, list[str]], workdir: Path, store: StateStore) -> None:
    _, file, change, expected = case
    before = store.counts()
    mutate(file, change)
    code, lines, output = run_validate("configs")
    assert code == 1
    assert lines == expected
    assert "Traceback" not in output
    assert_untouched(store, workdir, before)


def test_samples_are_valid_and_nothing_is_written(workdir: Path, store: StateStore) -> None:
    before = store.counts()
    code, lines, _ = run_validate()  # default: configs/ of the project
    assert (code, lines) == (0, ["configuration is valid"])
    code, lines, _ = run_validate("configs")  # the copy in the working directory
    assert (code, lines) == (0, ["configuration is valid"])
    assert_untouched(store, workdir, before)


def test_pmr_happy_path(workdir: Path) -> None:
    mutate(INI, _pmr("20h", jobs=10))
    assert validate_paths(["configs"]) == []


def test_excluded_disks_do_not_count_against_the_master_target(workdir: Path) -> None:
    mutate(INI, _disks(42, excluded=2))
    assert validate_paths(["configs"]) == []


def test_naming_one_file_reports_overlaps_with_its_siblings_on_that_file(workdir: Path) -> None:
    mutate(G, _set("network", "vlans", 0, "id", value=1011))
    assert [str(p) for p in validate_paths([A])] == [
        f"{A}: network.vlans[0].id: VLAN id 1011 is also used by tenant globex ({G}: network.vlans[0].id)"
    ]
    assert [str(p) for p in validate_paths(["configs/tenants/initech.yaml"])] == []


def test_load_tenant_refuses_an_invalid_tenant_with_all_its_problems(workdir: Path) -> None:
    mutate(A, _set("machines", 4, "depends_on", value=["acme-app99"]))
    with pytest.raises(ConfigInvalid) as info:
        load_tenant("acme", workdir / "configs")
    assert [p.field_path for p in info.value.problems] == ["machines[4].depends_on[0]"]
    assert load_tenant("globex", workdir / "configs").id == "globex"


def test_garbage_and_missing_files_never_give_a_traceback(workdir: Path, store: StateStore) -> None:
    before = store.counts()
    Path("configs/tenants/broken.yaml").write_bytes(b"\x00\xff\xfe binary")
    code, lines, output = run_validate("configs", "nowhere.yaml")
    assert code == 1 and "Traceback" not in output
    assert (
        lines[0]
        == "configs/tenants/broken.yaml: <root>: not UTF-8 text (invalid start byte at byte 1)"
    )
    assert lines[1] == "nowhere.yaml: <root>: no such file or directory"
    assert_untouched(store, workdir, before)


def test_every_problem_is_one_line(workdir: Path) -> None:
    mutate(A, _set("network", "vlans", 0, "name", value="acme web\nwith newline"))
    code, lines, _ = run_validate("configs")
    assert code == 1
    assert all(line.startswith("configs/") for line in lines)
