"""The `draas` command: lab control, config validation, planning, and the demo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(help="DR-as-a-Service orchestrator on Prefect.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
lab_app = typer.Typer(help="The embedded lab: vCenters, Cisco devices, replication manager, DNS, service desk.",
                      no_args_is_help=True)
app.add_typer(lab_app, name="lab")
console = Console()


@app.callback()
def _use_running_stack() -> None:
    """Point Prefect at the running stack's API (`draas stack up`) when PREFECT_API_URL is unset.

    Only when `draas` runs as a program and before Prefect is imported (its settings are read
    then): an in-process call, as by tests, never has its environment changed.
    """
    import os

    as_program = Path(sys.argv[0]).name in ("draas", "cli.py")
    if not as_program or "PREFECT_API_URL" in os.environ or "prefect" in sys.modules:
        return
    from deployments.stack import running_api_url

    url = running_api_url()
    if url:
        os.environ["PREFECT_API_URL"] = url


LabDirOption = typer.Option(None, "--lab-dir", help="Lab directory (default $DRAAS_LAB_DIR or ./.lab).")


def run_lab(command: str, lab_dir: Path | None = None, *extra: str, quiet: bool = False) -> int:
    """Run ``python -m lab <command>``: the one seam between the product and the lab.

    The product never imports the lab: it starts and stops it as a separate program and
    finds its systems through the site profile the lab writes (``<lab dir>/site-profile.yaml``),
    as it would any site's. The lab's output goes to the terminal (with ``quiet``, only when
    it fails). Returns the lab's exit status.
    """
    argv = [sys.executable, "-m", "lab", command, *extra]
    if lab_dir is not None:
        argv += ["--lab-dir", str(lab_dir)]
    if not quiet:
        return subprocess.run(argv, check=False).returncode
    done = subprocess.run(argv, check=False, capture_output=True, text=True)
    if done.returncode:
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
    return done.returncode


@lab_app.command("up")
def lab_up(lab_dir: Path | None = LabDirOption,
           config: Path | None = typer.Option(None, "--config", help="Lab config (default configs/lab.yaml).")) -> None:
    """Start every simulator (or report the running lab) and write its site profile."""
    code = run_lab("up", lab_dir, *(["--config", str(config)] if config else []))
    if code:
        raise typer.Exit(code)


@lab_app.command("down")
def lab_down(lab_dir: Path | None = LabDirOption) -> None:
    """Stop every lab process; leaves no process and no listening port behind."""
    code = run_lab("down", lab_dir)
    if code:
        raise typer.Exit(code)


@lab_app.command("status")
def lab_status(lab_dir: Path | None = LabDirOption) -> None:
    """Show each lab component, its process and endpoint."""
    code = run_lab("status", lab_dir)
    if code:
        raise typer.Exit(code)


@app.command("demo")
def demo(lab_dir: Path | None = LabDirOption,
         keep_lab: bool = typer.Option(False, "--keep-lab", help="Leave the lab running afterwards."),
         keep_tenants: bool = typer.Option(False, "--keep-tenants",
                                           help="Do not offboard the tenants at the end (implies a lab to look at)."),
         output_dir: Path = typer.Option(Path("out"), "--output-dir", help="Where DR plans and reports are written.")) -> None:
    """The main job on the embedded lab: each sample tenant's life (onboard, pre-provision, protect, a drill
    through its deployment, the Gold tenant's failover through the gateway and failback, offboard)."""
    from draas import demo as demo_mod

    raise typer.Exit(demo_mod.run(lab_dir=lab_dir, keep_lab=keep_lab or keep_tenants, console=Console(width=140),
                                  output_dir=output_dir, offboard=not keep_tenants))


# --- configuration commands (validate, plan) ---


@app.command("validate")
def validate(paths: list[Path] | None = typer.Argument(
        None, help="Tenant files or config directories (default: configs/).")) -> None:
    """Validate tenant configs and the tier catalog: one line per problem, exit 1 if any."""
    from draas.validation import validate_paths

    problems = validate_paths(paths or None)
    for problem in problems:
        typer.echo(str(problem))
    if problems:
        typer.echo(f"{len(problems)} problem(s) found", err=True)
        raise typer.Exit(1)
    typer.echo("configuration is valid")


@app.command("plan")
def plan(tenant: str = typer.Option(..., "--tenant", "-t", help="Tenant id (configs/tenants/<id>.yaml)."),
         config_dir: Path | None = typer.Option(None, "--config-dir", help="Default: configs/."),
         checkpoints: bool = typer.Option(True, "--checkpoints/--no-checkpoints",
                                          help="Also show which of the replication manager's checkpoints each "
                                               "group's retention policy keeps.")) -> None:
    """Print a tenant's recovery waves, journal sizing and achievable RPO (and the retained recovery points)."""
    from draas.planning.report import print_plan
    from draas.validation import ConfigInvalid, load_tenant

    try:
        model = load_tenant(tenant, config_dir)
    except ConfigInvalid as exc:
        for problem in exc.problems:
            typer.echo(str(problem))
        raise typer.Exit(1) from None
    print_plan(model, console)
    if checkpoints:
        _print_retained_points(model, config_dir)


def _print_retained_points(tenant: Any, config_dir: Path | None) -> None:
    """Per protection group, the manager's checkpoints and which the retention policy keeps."""
    from datetime import UTC, datetime

    from draas.clients.replication import ReplicationError
    from draas.planning.report import retention_table
    from draas.site import Site, SiteConfigError

    try:
        block = Site.for_config_dir(config_dir).replication_block()
        with block.get_client() as provider:
            for group in tenant.protection_groups:
                if provider.find_group(group.name) is None:
                    console.print(f"{group.name}: not protected yet (no recovery points)")
                    continue
                points = provider.recovery_points(group.name)
                console.print(retention_table(tenant, group.name, points, datetime.now(UTC)))
    except (ReplicationError, SiteConfigError, OSError) as exc:
        console.print(f"recovery points: the replication manager could not be read ({exc})")


@app.command("readiness")
def readiness(tenant: str = typer.Option(..., "--tenant", "-t", help="Tenant id (configs/tenants/<id>.yaml)."),
              config_dir: Path | None = typer.Option(None, "--config-dir", help="Default: configs/."),
              as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Run check-readiness (on the configured Prefect API) and print its findings.

    Exit 0 when the tenant is ready, 1 when a finding blocks, 2 on bad input (unknown tenant,
    invalid config).
    """
    import getpass

    from draas.protection import ProtectionCapacityExceeded
    from draas.readiness import render_text
    from draas.validation import ConfigInvalid
    from flows.readiness import check_readiness

    try:
        report = check_readiness(tenant, requested_by=getpass.getuser(), channel="cli",
                                 config_dir=str(config_dir) if config_dir else None)
    except (ConfigInvalid, ProtectionCapacityExceeded) as exc:
        problems = [str(p) for p in getattr(exc, "problems", [])] or [str(exc)]
        for problem in problems:
            typer.echo(f"draas readiness: {problem}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # noqa: BLE001 - the flow run and the audit log hold the details
        console.print(f"[red]readiness check failed:[/red] {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None
    typer.echo(report.model_dump_json(indent=2, exclude={"inventory", "new_changes"}) if as_json
               else render_text(report))
    raise typer.Exit(0 if report.ready else 1)


@app.command("deploy")
def deploy_cmd(work_pool: str = typer.Option("draas", "--work-pool", help="Process work pool to deploy to."),
               config_dir: Path | None = typer.Option(None, "--config-dir", help="Default: configs/."),
               dry_run: bool = typer.Option(False, "--dry-run", help="List what would change; change nothing."),
               prefect_yaml: Path | None = typer.Option(None, "--prefect-yaml",
                                                        help="Also write an equivalent prefect.yaml here.")) -> None:
    """Create or update the per-tenant deployments (<flow>/<tenant>) of every flow on the Prefect server."""
    from deployments.deploy import deploy, plan_deployments, write_prefect_yaml
    from draas.validation import ConfigInvalid, load_tenants
    from flows import FLOWS, TENANTLESS

    try:
        tenants = load_tenants(config_dir)
    except ConfigInvalid as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(2) from None
    specs = plan_deployments(tenants, FLOWS, TENANTLESS)
    changes = deploy(specs, work_pool, dry_run=dry_run)
    for verb in ("create", "update", "delete"):
        for name in changes[verb]:
            typer.echo(f"{'would ' if dry_run else ''}{verb} {name}")
    if prefect_yaml is not None:
        typer.echo(f"wrote {write_prefect_yaml(specs, work_pool, prefect_yaml)}")


@app.command("schedule")
def schedule_cmd(tenant: str = typer.Option(..., "--tenant", "-t", help="Tenant id."),
                 config_dir: Path | None = typer.Option(None, "--config-dir", help="Default: configs/.")) -> None:
    """Print the tenant's next two drills (local time and UTC) and where each date comes from."""
    from deployments.schedules import next_drills
    from draas.validation import ConfigInvalid, load_tenant

    try:
        config = load_tenant(tenant, config_dir)
    except ConfigInvalid as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(2) from None
    for slot in next_drills(config):
        typer.echo(f"{slot.local:%Y-%m-%d %H:%M %Z} ({slot.utc:%Y-%m-%d %H:%M} UTC)  drill/{tenant}  [{slot.source}]")


gateway_app = typer.Typer(help="The service-desk webhook gateway (signed requests -> flow runs).")
app.add_typer(gateway_app, name="gateway")


@gateway_app.callback(invoke_without_command=True)
def gateway_serve(ctx: typer.Context,
                  host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
                  port: int = typer.Option(8788, "--port", help="Port to listen on."),
                  ssl_certfile: Path | None = typer.Option(None, "--ssl-certfile", help="TLS certificate (PEM)."),
                  ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="TLS private key (PEM)."),
                  ui_url: str | None = typer.Option(None, "--ui-url",
                                                    help="Prefect UI base URL: accepted runs answer with their link.")
                  ) -> None:
    """Serve the gateway (plain HTTP on loopback unless a certificate is given; see docs/service-desk.md)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from deployments.gateway import build_app

    uvicorn.run(build_app(ui_url=ui_url), host=host, port=port,
                ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None)


@gateway_app.command("key")
def gateway_key(tenant: str = typer.Option(..., "--tenant", "-t", help="Tenant id."),
                rotate: bool = typer.Option(False, "--rotate", help="Make a new key; the old one stays valid 24 h.")) -> None:
    """Print the tenant's signing key (created when absent), or rotate it."""
    from deployments.gateway import KeyStore

    keys = KeyStore()
    typer.echo((keys.rotate(tenant) if rotate else keys.ensure(tenant)).current)


stack_app = typer.Typer(help="The product on this machine: Prefect server and UI, workers, gateway, lab "
                                 "(docs/stack.md).", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
StackDirOption = typer.Option(None, "--stack-dir", help="Stack directory (default $DRAAS_STACK_DIR or .draas/stack).")


@stack_app.command("up")
def stack_up(stack_dir: Path | None = StackDirOption,
             port: str = typer.Option("4200", "--port", help="Prefect server (API and UI) port; 0 or auto: any free."),
             gateway_port: str = typer.Option("8788", "--gateway-port", help="Gateway port; 0 or auto: a free one."),
             workers: int = typer.Option(1, "--workers", help="Process workers on the work pool."),
             work_pool: str = typer.Option("draas", "--work-pool", help="Process work pool the workers poll."),
             database_url: str | None = typer.Option(None, "--database-url", envvar="DRAAS_STACK_DATABASE_URL",
                                                     show_envvar=True,
                                                     help="Prefect's database: postgresql://USER:PASSWORD@HOST/DB "
                                                          "(default: SQLite in the stack directory)."),
             lab: bool | None = typer.Option(None, "--lab/--no-lab",
                                             help="Start the lab (default: unless $DRAAS_SITE_PROFILE is set or "
                                                  "site.yaml names real systems)."),
             timeout: float = typer.Option(90.0, "--timeout", help="Seconds each component may take to answer.")
             ) -> None:
    """Start the stack (or report the running one); a failed start stops what it started and exits 1."""
    from deployments import stack
    from draas.site import SiteConfigError

    try:
        opts = stack.StackOptions(stack_dir=stack_dir, port=stack.parse_port(port, "--port"),
                                  gateway_port=stack.parse_port(gateway_port, "--gateway-port"), workers=workers,
                                  work_pool=work_pool, database_url=database_url, lab=lab, timeout=timeout)
        state, already = stack.up(opts, echo=typer.echo)
    except (stack.StackError, SiteConfigError) as exc:
        typer.echo(f"draas stack up: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"stack is {'already ' if already else ''}up (stack dir: {stack.resolve_dir(stack_dir)})")
    typer.echo(f"  Prefect UI   {state.prefect_ui_url}\n  Prefect API  {state.prefect_api_url}\n"
               f"  gateway      {state.gateway_url}\n  work pool    {state.work_pool} ({state.workers} worker(s))\n"
               f"  site         {stack.SITE_MODES[state.lab.mode]}"
               + (f" ({state.lab.site_profile})" if state.lab.site_profile else ""))


@stack_app.command("down")
def stack_down(stack_dir: Path | None = StackDirOption) -> None:
    """Stop what `draas stack up` started; exit 1 if a process or port of the stack is left."""
    from deployments import stack

    try:
        stopped = stack.down(stack_dir, echo=typer.echo)
    except stack.StackError as exc:
        typer.echo(f"draas stack down: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("stack is down" if stopped else "stack is not up (nothing to stop)")


@stack_app.command("status")
def stack_status(stack_dir: Path | None = StackDirOption,
                 as_json: bool = typer.Option(False, "--json", help="Print endpoints and components as JSON.")) -> None:
    """Show each component and the endpoints; exit 0 only when every component is up."""
    import json

    from deployments import stack

    try:
        report = stack.status(stack_dir)
    except stack.StackError as exc:
        typer.echo(f"draas stack status: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(f"stack is {report['state']} ({report['stack_dir']})")
        for name, comp in report["components"].items():
            where = comp.get("url") or comp.get("site_profile") or comp.get("work_pool") or ""
            typer.echo(f"  {name:<15} {comp['state']:<12} {where}")
        if report["prefect_ui_url"]:
            typer.echo(f"  Prefect UI {report['prefect_ui_url']}  API {report['prefect_api_url']}  "
                       f"gateway {report['gateway_url']}")
    raise typer.Exit(0 if report["state"] == "up" else 1)


@stack_app.command("env")
def stack_env(stack_dir: Path | None = StackDirOption) -> None:
    """Print shell lines pointing Prefect at the stack: eval "$(draas stack env)"."""
    from deployments import stack

    try:
        typer.echo("\n".join(stack.env_lines(stack_dir)))
    except stack.StackError as exc:
        typer.echo(f"draas stack env: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("sweep")
def sweep(dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; change nothing."),
          older_than: float = typer.Option(30.0, "--older-than", metavar="MINUTES",
                                           help="How long a run may sit in Cancelling before it is swept."),
          config_dir: Path | None = typer.Option(None, "--config-dir", help="Directory with site.yaml.")) -> None:
    """Apply crashed runs' crash policy (on the configured Prefect API): undo runs' objects go, hold runs' stay."""
    import getpass

    from flows.sweep import sweep_orphans

    try:
        result = sweep_orphans(older_than_minutes=older_than, requested_by=getpass.getuser(), channel="cli",
                                    config_dir=str(config_dir) if config_dir else None, dry_run=dry_run)
    except Exception as exc:  # noqa: BLE001 - the flow run and the audit log hold the details
        console.print(f"[red]sweep failed:[/red] {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None
    # Plain lines, not a table: run ids must stay whole for copying and grepping.
    verb = "would sweep" if dry_run else "swept"
    for run in result.swept:
        typer.echo(f"{verb} {run.run_id} ({run.flow}, tenant {run.tenant or '-'}): {run.reason}")
        for obj in run.objects:
            typer.echo(f"    {'would remove' if dry_run else 'removed'} {obj}")
    for verdict in result.left_alone:
        typer.echo(f"left alone {verdict.run_id} ({verdict.flow}, tenant {verdict.tenant or '-'}): {verdict.reason}")
    typer.echo(f"{verb} {len(result.swept)} run(s), left {len(result.left_alone)} alone")


@app.command("run", context_settings={"help_option_names": ["-h", "--help"]})
def run(flow_name: str = typer.Argument(..., metavar="FLOW", help="Flow name, e.g. preprovision-container."),
        tenant: str | None = typer.Option(None, "--tenant", "-t", help="Tenant id."),
        param: list[str] | None = typer.Option(None, "--param", "-p", metavar="NAME=VALUE",
                                               help="A flow parameter (repeatable), converted to its type.")) -> None:
    """Run a product flow (on the configured Prefect API); exit 0 only when the run ended Completed."""
    from draas import cli_run

    try:
        code = cli_run.run(flow_name, tenant, param or [])
    except (cli_run.BadParameter, KeyError) as exc:
        reason = str(exc.args[0] if exc.args else exc)
        cli_run.audit_refusal(flow_name, tenant, reason)
        typer.echo(f"draas run: {reason}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command("report")
def report(tenant: str = typer.Option(..., "--tenant", "-t", help="Tenant id."),
           run_id: str | None = typer.Option(None, "--run", help="Run id (or its first characters) to print."),
           fmt: str = typer.Option("md", "--format", help="Format to print with --run: md, json or html."),
           output_dir: Path = typer.Option(Path("out"), "--output-dir",
                                           help="Where drills wrote their report files.")) -> None:
    """List the tenant's DR Test Reports (time, run, verdict, files), or print one with --run."""
    from draas.reports.drill_model import DrillReportData
    from draas.reports.drill_report import REPORT_KIND, render_html, render_markdown
    from draas.state.store import StateStore

    if fmt not in ("md", "json", "html"):
        typer.echo(f"draas report: --format must be md, json or html, not {fmt!r}", err=True)
        raise typer.Exit(2)
    store = StateStore()
    try:
        records = [r for r in store.reports(tenant, kind=REPORT_KIND) if r.format == "json" and r.run_id]
    finally:
        store.dispose()
    # The JSON record is the report's data: the other formats are rendered from it.
    reports = []
    for record in records:
        try:
            reports.append((DrillReportData.model_validate_json(record.content), record))
        except ValueError as exc:
            typer.echo(f"draas report: stored report {record.id} (run {record.run_id}) is not a DR test report: "
                       f"{str(exc).splitlines()[0]}", err=True)
    reports.sort(key=lambda pair: (pair[0].started, pair[0].run_id))
    if run_id is None:
        if not reports:
            typer.echo(f"no DR test report for tenant {tenant}")
            return
        for data, _ in reports:
            files = sorted((output_dir / tenant / "reports").glob(f"drill-*-{data.run_id[:8]}.*"))
            typer.echo(f"{data.started:%Y-%m-%d %H:%M:%S}Z  {data.run_id}  {data.verdict}")
            for path in files:
                typer.echo(f"    {path}")
        return
    matches = [pair for pair in reports if pair[0].run_id.startswith(run_id)]
    if not matches:
        typer.echo(f"no DR test report for tenant {tenant} and run {run_id}")
        raise typer.Exit(1)
    data, record = matches[-1]
    text = {"md": render_markdown, "html": render_html}[fmt](data) if fmt != "json" else record.content
    typer.echo(text, nl=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
