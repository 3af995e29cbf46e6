"""Network device tasks: push, remove and read Cisco config blocks.

Every task reads the device before it writes and sends only the difference, so a second
run changes nothing. Config comes either as text/lines or as a jinja2 template under
``configs/templates/devices`` plus its variables (rendered with ``StrictUndefined``).
Caching is off: a cached "changed" result must never stand in for a fresh read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.cisco import CiscoDeviceCredentials
from draas.clients.cisco_config import mask_secrets, render_template
from draas.models.results import StepResult
from draas.sessions import session
from tasks.common import RETRY_POLICY
from tasks.common import task_logger as _log

#: Where device templates live (``template=`` names a file here).
DEVICE_TEMPLATES = Path(__file__).resolve().parent.parent / "configs" / "templates" / "devices"




def render_device_config(template: str, variables: Mapping[str, Any], templates_dir: str | Path | None = None) -> str:
    """Render a device template; undefined variables raise ``CiscoTemplateError``."""
    return render_template(template, variables, templates_dir or DEVICE_TEMPLATES)


def _config_text(config: str | Sequence[str] | None, template: str | None,
                 variables: Mapping[str, Any] | None, templates_dir: str | Path | None) -> str:
    if (config is None) == (template is None):
        raise ValueError("give exactly one of config= or template=")
    if template is not None:
        return render_device_config(template, variables or {}, templates_dir)
    return config if isinstance(config, str) else "\n".join(config or [])


def _target(credentials: CiscoDeviceCredentials, context: str | None) -> str:
    name = credentials.device_name or f"{credentials.host}:{credentials.port}"
    return f"{name}/{context}" if context else name


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def push_device_config(credentials: CiscoDeviceCredentials, config: str | Sequence[str] | None = None,
                       template: str | None = None, variables: Mapping[str, Any] | None = None,
                       context: str | None = None, dry_run: bool = False, save: bool = True,
                       templates_dir: str | None = None) -> StepResult:
    """Make the device (or ASA ``context``) hold every line of the config; push only what is missing.

    Raises:
        CiscoConfigPushFailed: a line was rejected; what was pushed has been reverted.
        CiscoTemplateError: the template does not render with ``variables``.
    """
    text = _config_text(config, template, variables, templates_dir)
    result: StepResult[None] = StepResult(step="push_device_config", target=_target(credentials, context), dry_run=dry_run)
    with session(credentials) as client:
        change = client.apply(text, context=context, dry_run=dry_run, save=save)
    _log().info("%s %s: %s", "would push to" if dry_run else "pushed to", result.target,
                f"{len(change.commands)} line(s)" if change.changed else "already up to date")
    return result.done(changed=change.changed, diff=change.diff,
                       detail={**change.model_dump(mode="json"), "template": template})


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def remove_device_config(credentials: CiscoDeviceCredentials, config: str | Sequence[str] | None = None,
                         template: str | None = None, variables: Mapping[str, Any] | None = None,
                         context: str | None = None, dry_run: bool = False, save: bool = True,
                         templates_dir: str | None = None) -> StepResult:
    """Remove the config's lines from the device; blocks the config owns entirely go as a whole.

    Raises:
        CiscoConfigPushFailed: a ``no`` line was rejected; removed lines have been restored.
    """
    text = _config_text(config, template, variables, templates_dir)
    result: StepResult[None] = StepResult(step="remove_device_config", target=_target(credentials, context), dry_run=dry_run)
    with session(credentials) as client:
        change = client.remove(text, context=context, dry_run=dry_run, save=save)
    _log().info("%s %s: %s", "would remove from" if dry_run else "removed from", result.target,
                f"{len(change.commands)} line(s)" if change.changed else "nothing to remove")
    return result.done(changed=change.changed, diff=change.diff,
                       detail={**change.model_dump(mode="json"), "template": template})


@task(**RETRY_POLICY, cache_policy=NO_CACHE)
def read_device_config(credentials: CiscoDeviceCredentials, context: str | None = None,
                       section: str | None = None) -> StepResult:
    """Read the running config (optionally the top-level blocks whose line contains ``section``).

    The config lines are in ``detail["lines"]`` with secret values masked.
    """
    result: StepResult[None] = StepResult(step="read_device_config", target=_target(credentials, context))
    with session(credentials) as client:
        tree = client.running_tree(context)
    if section:
        tree.children = [top for top in tree.children if section in top.text]
    lines = [mask_secrets(line) for line in tree.lines()]
    return result.done(changed=False, detail={"lines": lines, "line_count": len(lines),
                                              "context": context, "section": section})
