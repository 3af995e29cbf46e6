"""Sample tenants and the tier catalog: they validate, match the lab, and cover every rule."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from draas.models.packages import ServicePackage
from draas.models.tenant import (
    CommandCheck,
    HeartbeatCheck,
    HttpCheck,
    TcpCheck,
    TenantConfig,
)
from draas.models.types import format_duration, parse_duration
from draas.planning.waves import recovery_plan
from draas.validation import (
    Problem,
    load_catalog,
    load_tenant,
    load_tenants,
    parse_tenant_file,
    validate_paths,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
LAB = yaml.safe_load((CONFIGS / "lab.yaml").read_text())


@pytest.fixture(scope="module")
def tenants() -> dict[str, TenantConfig]:
    return {t.id: t for t in load_tenants(CONFIGS)}


def test_the_shipped_configs_validate_without_problems() -> None:
    assert validate_paths([CONFIGS]) == []


def test_one_sample_per_tier_gold_silver_bronze(tenants: dict[str, TenantConfig]) -> None:
    assert {t.id: t.network.tier for t in tenants.values()} == {
        "acme": "gold",
        "globex": "silver",
        "initech": "bronze",
    }


@pytest.mark.parametrize("tenant_id", ["acme", "globex", "initech"])
def test_protected_machines_match_the_lab_inventory(
    tenants: dict[str, TenantConfig], tenant_id: str
) -> None:
    lab_vms = LAB["vcenter"]["sites"]["protected"]["vms"][tenant_id]
    tenant = tenants[tenant_id]
    assert [m.name for m in tenant.machines] == [vm["name"] for vm in lab_vms]
    for machine, vm in zip(tenant.machines, lab_vms, strict=True):
        assert machine.os_family.value == vm["guest"], machine.name
        assert str(machine.nics[0].ip) == vm["ip"], machine.name
        assert machine.kind == "vm"


def test_dns_zones_match_the_lab(tenants: dict[str, TenantConfig]) -> None:
    zones = sorted(z for t in tenants.values() for z in t.dns_zones)
    assert zones == sorted(LAB["dns"]["zones"])
    for t in tenants.values():
        assert t.dns_zones == [f"{t.id}.example.com"]


def test_gold_sample_has_dmz_domain_controller_and_three_tier_app(
    tenants: dict[str, TenantConfig],
) -> None:
    acme = tenants["acme"]
    assert acme.network.zones == ["dmz"]
    assert [v.role for v in acme.network.vlans] == ["web", "app", "db", "dmz"]
    assert [v.role for v in acme.network.vrfs] == ["customer", "pvt", "dmz"]
    dcs = [m.name for m in acme.machines if m.is_domain_controller]
    assert dcs == ["acme-dc01"]
    plan = recovery_plan(acme)
    assert [w.machines for w in plan.waves] == [
        ["acme-dc01"],
        ["acme-sql01"],
        ["acme-app01"],
        ["acme-web01", "acme-web02"],
    ]


def test_samples_exercise_every_rule_happy_path(tenants: dict[str, TenantConfig]) -> None:
    """Each feature a rule checks appears, valid, in at least one sample."""
    ts = list(tenants.values())
    machines = [m for t in ts for m in t.machines]
    nics = [n for m in machines for n in m.nics]
    groups = [g for t in ts for g in t.protection_groups]
    checks = [c for m in machines for c in m.checks]
    assert {g.package for g in groups} >= {
        ServicePackage.VMR_CDP,
        ServicePackage.VMR_SNAP,
        ServicePackage.SVR,
    }
    assert any(g.retention.sparse for g in groups)  # sparse tiers
    assert any(g.retention.policy == "time_and_space" for g in groups)  # space-based
    assert any(b.type.value == "user_defined" for g in groups for b in g.bookmarks)
    assert {n.mapping for n in nics} == {"same_ip", "re_ip"}
    assert any(n.re_ip_rule for n in nics) and any(n.recovery_ip for n in nics)
    assert {type(c) for c in checks} == {HeartbeatCheck, TcpCheck, HttpCheck, CommandCheck}
    assert any(m.depends_on for m in machines)
    assert any(m.is_domain_controller for m in machines)
    assert any(d.excluded for m in machines for d in m.disks)
    assert all(t.dr_components.master_targets and t.dr_components.process_servers for t in ts)
    assert {mt.os_family.value for t in ts for mt in t.dr_components.master_targets} == {
        "windows",
        "linux",
    }
    assert any(t.network.load_balancer_vips for t in ts)
    assert any(t.network.firewall_paths for t in ts)
    assert all(len(t.drills.dates) >= 2 for t in ts)


def test_tier_catalog_matches_table_2_1_and_the_draas_modifications() -> None:
    catalog = load_catalog(CONFIGS)
    table = {name: (t.table_2_1.vlans, len(t.vlan_roles)) for name, t in catalog.tiers.items()}
    assert table == {"gold": (3, 3), "silver": (3, 3), "bronze": (1, 1), "copper": (1, 1)}
    gold, silver, bronze, copper = (
        catalog.tiers[n] for n in ("gold", "silver", "bronze", "copper")
    )
    # Gold: 3 VLANs + optional DMZ (4 VLANs, 3 VRFs), tenant FW, LB, IPsec-only perimeter ACL.
    assert gold.expected_vlan_roles({"dmz"}) == ["web", "app", "db", "dmz"]
    assert gold.expected_vrf_roles({"dmz"}) == ["customer", "pvt", "dmz"]
    assert gold.expected_firewall_contexts({"dmz"}) == ["perimeter", "dmz", "vpn"]
    assert gold.load_balancer and gold.draas.perimeter_acl_ipsec_only
    assert silver.load_balancer and silver.expected_firewall_contexts() == ["vpn"]
    # Bronze: 1 VLAN + the DRaaS VLAN for the DR control servers (VPN context inside).
    assert bronze.expected_vlan_roles() == ["server", "dr_control"]
    assert bronze.draas.vpn_inside_vlan_role == "dr_control"
    assert not bronze.load_balancer
    assert copper.shared_perimeter_firewall and not copper.draas_validated
    assert all(t.draas.vpn_context for t in catalog.tiers.values())
    assert catalog.placement.vpn_context == "vpn-firewall"


def test_a_tier_contradicting_table_2_1_is_reported(tmp_path: Path) -> None:
    data = yaml.safe_load((CONFIGS / "tiers.yaml").read_text())
    data["tiers"]["silver"]["vlan_roles"] = ["web", "app"]
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(data))
    problems = validate_paths([tmp_path / "tiers.yaml"])
    assert [(p.field_path, p.reason) for p in problems] == [
        ("tiers.silver", "vlan_roles has 2 VLANs but Table 2-1 says 3")
    ]


def test_load_tenant_by_id_and_its_derived_names(tenants: dict[str, TenantConfig]) -> None:
    acme = load_tenant("acme", CONFIGS)
    assert acme == tenants["acme"]
    assert acme.folder == "acme" and acme.context_name("vpn") == "acme-vpn"
    web = acme.vlan("acme-web")
    assert web.recovery_port_group == "acme-web" and web.drill_port_group == "acme-web-bubble"
    assert [str(a) for a in web.hsrp_addresses] == ["10.10.3.2", "10.10.3.3"]
    globex = tenants["globex"]
    assert [str(globex.recovery_ip(m.nics[0])) for m in globex.machines] == [
        "10.120.1.10",
        "10.120.2.25",
        "10.120.3.30",
    ]
    starts = acme.drill_starts()
    assert starts[0].isoformat() == "2026-12-08T10:00:00+00:00"  # London is on UTC in December
    assert tenants["globex"].drill_starts()[1].isoformat() == "2027-07-13T09:30:00-04:00"


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("30s", 30),
        ("15m", 900),
        ("4h", 14400),
        ("3d", 259200),
        ("4w", 2419200),
        (90, 90),
        ("1.5h", 5400),
    ],
)
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_duration_formatting() -> None:
    assert [
        format_duration(timedelta(seconds=s)) for s in (30, 900, 5400, 86400, 2419200, 36 * 3600)
    ] == ["30s", "15m", "90m", "1d", "4w", "36h"]


# --- pydantic errors become one line per problem with the input's field path ----------------------


def _write(tmp_path: Path, data: dict, name: str = "acme.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def acme_data() -> dict:
    return yaml.safe_load((CONFIGS / "tenants" / "acme.yaml").read_text())


def _problems(path: Path) -> list[tuple[str, str]]:
    tenant, problems = parse_tenant_file(path)
    assert tenant is None or problems
    return [(p.field_path, p.reason) for p in problems]


def test_unknown_field_names_its_path(tmp_path: Path, acme_data: dict) -> None:
    acme_data["network"]["vlans"][0]["colour"] = "blue"
    assert _problems(_write(tmp_path, acme_data)) == [
        ("network.vlans[0].colour", "unknown field (check the spelling; see docs/configuration.md)")
    ]


def test_check_union_error_path_has_no_tag(tmp_path: Path, acme_data: dict) -> None:
    acme_data["machines"][0]["checks"][1]["port"] = 70000
    assert _problems(_write(tmp_path, acme_data)) == [
        ("machines[0].checks[1].port", "Input should be less than or equal to 65535")
    ]


def test_bandwidth_is_at_most_100_mbps(tmp_path: Path, acme_data: dict) -> None:
    acme_data["protected_site"]["bandwidth_mbps"] = 150
    assert _problems(_write(tmp_path, acme_data)) == [
        ("protected_site.bandwidth_mbps", "Input should be less than or equal to 100")
    ]


def test_at_most_100_public_ips(tmp_path: Path, acme_data: dict) -> None:
    acme_data["network"]["public_ips"] += [
        {
            "address": f"198.51.{100 + i // 250}.{i % 250 + 1}",
            "purpose": "nat",
            "target": "acme-web01",
        }
        for i in range(99)
    ]
    assert _problems(_write(tmp_path, acme_data)) == [
        ("network.public_ips", "List should have at most 100 items after validation, not 101")
    ]


def test_missing_field_and_bad_duration(tmp_path: Path, acme_data: dict) -> None:
    del acme_data["protection_groups"][0]["sla"]["rto"]
    acme_data["protection_groups"][1]["retention"]["window"] = "three days"
    assert sorted(_problems(_write(tmp_path, acme_data))) == [
        ("protection_groups[0].sla.rto", "required field is missing"),
        (
            "protection_groups[1].retention.window",
            "'three days' is not a duration such as 30s, 15m, 4h, 3d or 4w",
        ),
    ]


def test_unquoted_clock_time_is_explained(tmp_path: Path) -> None:
    text = (CONFIGS / "tenants" / "acme.yaml").read_text().replace('end: "18:00"', "end: 18:00")
    path = tmp_path / "acme.yaml"
    path.write_text(text)
    assert _problems(path) == [
        (
            "business_hours.end",
            "write times in quotes, e.g. '18:00' (unquoted, YAML reads 18:00 as a number)",
        )
    ]


def test_bad_timezone_and_email(tmp_path: Path, acme_data: dict) -> None:
    acme_data["timezone"] = "Mars/Olympus"
    acme_data["authorised_persons"][1]["email"] = "bob-at-acme"
    assert sorted(_problems(_write(tmp_path, acme_data))) == [
        ("authorised_persons[1].email", "'bob-at-acme' is not an e-mail address"),
        ("timezone", "'Mars/Olympus' is not an IANA time zone (e.g. Europe/London)"),
    ]


def test_yaml_syntax_error_and_duplicate_keys_are_problems_not_tracebacks(tmp_path: Path) -> None:
    bad = tmp_path / "acme.yaml"
    bad.write_text("id: acme\nnetwork: [unclosed\n")
    (problem,) = validate_paths([bad])
    assert problem.field_path == "<root>" and problem.reason.startswith(
        "invalid YAML: line 3, column 1"
    )
    bad.write_text("id: acme\nid: other\n")
    (problem,) = validate_paths([bad])
    assert problem.reason == "invalid YAML: line 2, column 1: duplicate key 'id' (first on line 1)"
    bad.write_text("- just\n- a list\n")
    assert validate_paths([bad]) == [
        Problem(str(bad), "<root>", "expected a mapping of fields at the top level")
    ]


def test_file_name_must_match_tenant_id(tmp_path: Path, acme_data: dict) -> None:
    path = _write(tmp_path, acme_data, name="acme-corp.yaml")
    assert _problems(path) == [("id", "'acme' must match the file name 'acme-corp.yaml'")]


def _field_names(model: type, seen: set[type] | None = None) -> set[str]:
    """Every field name of ``model`` and of the models nested in it."""
    import typing

    from pydantic import BaseModel

    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    names = set()
    for name, field in model.model_fields.items():
        names.add(name)
        stack = [field.annotation]
        while stack:
            tp = stack.pop()
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                names |= _field_names(tp, seen)
            stack.extend(typing.get_args(tp))
    return names


def test_docs_cover_every_tenant_field() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(n for n in _field_names(TenantConfig) if f"{n}:" not in doc)
    assert missing == []
