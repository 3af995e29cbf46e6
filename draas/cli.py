"""The `draas` command: lab control, config validation, planning, and the demo."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="DR-as-a-Service orchestrator on Prefect.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
lab_app = typer.Typer(help="The embedded lab: vCenters, Cisco devices, replication manager, DNS, service desk.",
                      no_args_is_help=True)
app.add_typer(lab_app, name="lab")
console = Console()

LabDirOption = typer.Option(None, "--lab-dir", help="Lab directory (default $DRAAS_LAB_DIR or ./.lab).")


@lab_app.command("up")
def lab_up(lab_dir: Path | None = LabDirOption,
           config: Path | None = typer.Option(None, "--config", help="Lab config (default configs/lab.yaml).")) -> None:
    """Start every simulator (or report the running lab) and write the state file."""
    from lab import launcher
    from lab.process import LabStartError

    try:
        state = launcher.up(lab_dir=lab_dir, config_path=config)
    except LabStartError as exc:
        console.print(f"[red]lab up failed:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"lab is up; state file: {Path(state.lab_dir) / 'state.json'}")
    _print_status(lab_dir)


@lab_app.command("down")
def lab_down(lab_dir: Path | None = LabDirOption) -> None:
    """Stop every lab process; leaves no process and no listening port behind."""
    from lab import launcher

    pids = launcher.down(lab_dir=lab_dir)
    console.print(f"lab is down ({len(pids)} process groups stopped)")


@lab_app.command("status")
def lab_status(lab_dir: Path | None = LabDirOption) -> None:
    """Show each lab component, its process and endpoint."""
    try:
        _print_status(lab_dir)
    except FileNotFoundError as exc:
        console.print(str(exc))
        raise typer.Exit(1) from None


def _print_status(lab_dir: Path | None) -> None:
    from lab import launcher

    table = Table("component", "pid", "alive", "endpoint")
    for row in launcher.status(lab_dir=lab_dir):
        table.add_row(row["component"], str(row["pid"]), "yes" if row["alive"] else "NO", row["endpoint"])
    console.print(table)


@app.command("demo")
def demo(lab_dir: Path | None = LabDirOption,
         keep_lab: bool = typer.Option(False, "--keep-lab", help="Leave the lab running afterwards."),
         keep_tenants: bool = typer.Option(False, "--keep-tenants",
                                           help="Do not offboard the tenants at the end (implies a lab to look at)."),
         output_dir: Path = typer.Option(Path("out"), "--output-dir", help="Where DR plans are written.")) -> None:
    """The main job on the embedded lab: start it, onboard and pre-provision the sample tenants, stop it."""
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
         config_dir: Path | None = typer.Option(None, "--config-dir", help="Default: configs/.")) -> None:
    """Print a tenant's recovery waves, journal sizing and achievable RPO."""
    from draas.planning.report import print_plan
    from draas.validation import ConfigInvalid, load_tenant

    try:
        model = load_tenant(tenant, config_dir)
    except ConfigInvalid as exc:
        for problem in exc.problems:
            typer.echo(str(problem))
        raise typer.Exit(1) from None
    print_plan(model, console)


@app.command("sweep")
def sweep(dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; change nothing."),
          older_than: float = typer.Option(30.0, "--older-than", metavar="MINUTES",
                                           help="How long a run may sit in Cancelling before it is swept."),
          config_dir: Path | None = typer.Option(None, "--config-dir", help="Directory with site.yaml.")) -> None:
    """Clean up after crashed flow runs (on the configured Prefect API): remove what they recorded."""
    import getpass

    from flows.sweep import sweep_crashed_runs

    try:
        result = sweep_crashed_runs(older_than_minutes=older_than, requested_by=getpass.getuser(), channel="cli",
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
