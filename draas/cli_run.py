"""``draas run <flow> --tenant T [--param k=v ...]``: start any product flow from the command line.

Parameters are converted to the types the flow declares (pydantic), so ``--param dry_run=true``
arrives as a bool. A parameter the flow does not take, or a value that does not convert, is a
clear error naming the parameter; nothing runs. The exit status is 0 only when the flow run
ended Completed.
"""

from __future__ import annotations

import getpass
import inspect
import json
from typing import Any, get_type_hints

from pydantic import TypeAdapter, ValidationError


class BadParameter(ValueError):
    """A ``--param`` the flow does not take, or whose value does not fit its type."""


def parse_params(fn: Any, pairs: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` as keyword arguments of ``fn``, each converted to its declared type."""
    signature = inspect.signature(fn)
    hints = get_type_hints(fn)
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise BadParameter(f"--param {pair!r}: expected name=value")
        if key not in signature.parameters:
            raise BadParameter(f"--param {key}: the flow takes no such parameter "
                               f"(it takes: {', '.join(signature.parameters)})")
        annotation = hints.get(key, Any)
        adapter = TypeAdapter(annotation)
        try:
            value = adapter.validate_python(raw) if annotation in (str, str | None) else _coerce(adapter, raw)
        except ValidationError as exc:
            raise BadParameter(f"--param {key}={raw!r}: {exc.errors()[0]['msg']}") from None
        out[key] = value
    return out


def _coerce(adapter: TypeAdapter[Any], raw: str) -> Any:
    try:
        return adapter.validate_json(raw)
    except ValidationError:
        return adapter.validate_python(raw)


def audit_refusal(flow_name: str, tenant: str | None, reason: str) -> None:
    """Audit a command line the flow never saw (unknown flow, bad parameter): refused, nothing ran."""
    from draas.state.store import StateStore

    StateStore().audit(actor=getpass.getuser(), action=flow_name.replace("-", "_"), channel="cli",
                       outcome="refused", tenant_id=tenant, detail={"reason": reason, "flow": flow_name})


def run(flow_name: str, tenant: str | None, pairs: list[str], channel: str = "cli") -> int:
    """Run the flow; return the process exit status (0 only when the run ended Completed)."""
    from flows import TENANTLESS, load_flow

    flow = load_flow(flow_name)
    fn = flow.fn
    params = parse_params(fn, pairs)
    taken = inspect.signature(fn).parameters
    if flow_name not in TENANTLESS:
        if not tenant:
            raise BadParameter(f"{flow_name} needs --tenant")
        params["tenant"] = tenant
    if "requested_by" in taken:
        params.setdefault("requested_by", getpass.getuser())
    if "channel" in taken:
        params.setdefault("channel", channel)
    state = flow(**params, return_state=True)
    print(f"{flow_name}: {state.name}")
    if state.is_completed():
        result = state.result()
        if hasattr(result, "model_dump"):
            print(json.dumps({k: v for k, v in result.model_dump(mode="json").items() if k != "steps"}, indent=2))
        return 0
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - printed for the operator; the run and audit log hold details
        print(f"{type(exc).__name__}: {exc}")
    return 1
