"""HTTP face of the simulated ZVM: the Zerto REST API v1 subset, Keycloak's token endpoint,
and the lab's control API under ``/lab`` (faults, session expiry, state, reset).

Like the real ZVM (IIS), routes under ``/v1`` and ``/auth`` match case-insensitively, and
request bodies are read case-insensitively. Every error is ``{"Message": ...}`` with the status
the ZVM uses (400 for rejected input, 401 without a valid session, 404 for unknown objects and
routes, 405 for a method a route does not have, 500 for a failure), never FastAPI's
``{"detail": ...}``; only Keycloak's token endpoint answers in Keycloak's own error shape.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lab.zerto.engine import (
    TASK_STATES,
    VPG_COMMIT_POLICIES,
    VPG_ENTITY_TYPES,
    VPG_PRIORITIES,
    VPG_RETENTION_POLICIES,
    VPG_SHUTDOWN_POLICIES,
    VPG_STATUSES,
    VPG_SUBSTATUSES,
    ApiError,
    Fault,
    ZertoSim,
)
from lab.zerto.vsphere import ITEM_KINDS, VSphereError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

DENIED = "Authorization has been denied for this request."
#: What the ZVM (ASP.NET Web API on IIS) says for an unknown route and for a wrong method.
NO_ROUTE = "No HTTP resource was found that matches the request URI '{uri}'."
NO_METHOD = "The requested resource does not support http method '{method}'."

#: ``/v1/vpgs/<name>`` list-of-values endpoints (they take precedence over ``/v1/vpgs/{vpg_id}``).
VPG_LISTS: dict[str, list[str]] = {
    "statuses": VPG_STATUSES,
    "substatuses": VPG_SUBSTATUSES,
    "priorities": VPG_PRIORITIES,
    "failovercommitpolicies": VPG_COMMIT_POLICIES,
    "failovershutdownpolicies": VPG_SHUTDOWN_POLICIES,
    "retentionpolicies": VPG_RETENTION_POLICIES,
    "entitytypes": VPG_ENTITY_TYPES,
}


def zvm_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answer in the ZVM's shape."""
    return JSONResponse({"Message": message}, status_code=status, headers=headers)


async def json_body(request: Request) -> Any:
    """The request's JSON body, ``None`` when empty; malformed JSON is a 400 like the ZVM's."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "The request body is not valid JSON.") from None


JsonBody = Annotated[Any, Depends(json_body)]


def create_app(sim: ZertoSim) -> Any:
    """The ASGI app: FastAPI routes wrapped by the fault-injecting front door."""
    app = FastAPI(title="Lab ZVM (Zerto REST API v1 subset)", docs_url="/lab/docs", openapi_url="/lab/openapi.json",
                  redoc_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="zvm"'} if exc.status == 401 else None
        return zvm_error(exc.status, exc.message, headers)

    @app.exception_handler(VSphereError)
    async def _vsphere_error(request: Request, exc: VSphereError) -> JSONResponse:
        return zvm_error(500, f"vCenter error: {exc}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = NO_ROUTE.format(uri=str(request.url))
        elif exc.status_code == 405:
            message = NO_METHOD.format(method=request.method)
        else:
            message = str(exc.detail)
        return zvm_error(exc.status_code, message, dict(exc.headers) if exc.headers else None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return zvm_error(400, "The request is invalid.")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        return zvm_error(500, "An error has occurred.")

    def require_auth(request: Request) -> None:
        if not sim.authorized(request.headers.get("x-zerto-session"), request.headers.get("authorization")):
            raise ApiError(401, DENIED)

    # --- authentication ----------------------------------------------------------------

    @app.post("/v1/session/add")
    async def session_add(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("basic "):
            raise ApiError(401, DENIED)
        try:
            user, _, pwd = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(401, DENIED) from None
        await json_body(request)  # {"AuthenticationMethod": 1}; any method is accepted
        token = sim.login_session(user, pwd)
        return Response(status_code=200, headers={"x-zerto-session": token})

    @app.delete("/v1/session")
    def session_delete(request: Request) -> Response:
        sim.logout(request.headers.get("x-zerto-session"))
        return Response(status_code=200)

    @app.post("/auth/realms/zerto/protocol/openid-connect/token")
    async def keycloak_token(request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        try:
            return JSONResponse(sim.login_token(form))
        except ApiError as exc:  # Keycloak's error shape, not the ZVM's
            return JSONResponse({"error": exc.message, "error_description": exc.message}, status_code=exc.status)

    # --- the API proper (session or bearer required) ----------------------------------

    api = APIRouter(dependencies=[Depends(require_auth)])

    @api.get("/v1/localsite")
    def localsite() -> Any:
        return sim.local_site()

    @api.get("/v1/peersites")
    def peersites() -> Any:
        return sim.peer_sites()

    @api.get("/v1/virtualizationsites")
    def sites() -> Any:
        return sim.site_list()

    @api.get("/v1/virtualizationsites/{site_id}")
    def site(site_id: str) -> Any:
        return next(s for s in sim.site_list() if s["SiteIdentifier"] == sim._site(site_id).identifier)

    @api.get("/v1/virtualizationsites/{site_id}/vms")
    def site_vms(site_id: str) -> Any:
        return sim.site_vms(site_id)

    @api.get("/v1/virtualizationsites/{site_id}/{kind}")
    def site_items(site_id: str, kind: str) -> Any:
        if kind not in ITEM_KINDS:
            raise ApiError(404, f"No such resource {kind!r}.")
        return sim.site_items(site_id, kind)

    @api.get("/v1/vpgs")
    def vpgs(request: Request) -> Any:
        q = {k.lower(): v for k, v in request.query_params.items()}
        return sim.list_vpgs(q.get("name") or q.get("vpgname"))

    @api.get("/v1/vpgs/{vpg_id}")
    def vpg(vpg_id: str) -> Any:
        values = VPG_LISTS.get(vpg_id.lower())
        if values is not None:  # a list of values, not a VPG id (route order cannot tell them apart)
            return list(values)
        return sim.get_vpg(vpg_id)

    @api.delete("/v1/vpgs/{vpg_id}")
    def vpg_delete(request: Request, vpg_id: str, body: JsonBody) -> Any:
        return sim.delete_vpg(vpg_id, body, request.url.path)

    @api.get("/v1/vms")
    def protected_vms() -> Any:
        return sim.protected_vms()

    @api.get("/v1/vpgs/{vpg_id}/checkpoints")
    def checkpoints(request: Request, vpg_id: str) -> Any:
        q = {k.lower(): v for k, v in request.query_params.items()}
        return sim.list_checkpoints(vpg_id, q.get("startdate"), q.get("enddate"))

    @api.get("/v1/vpgs/{vpg_id}/checkpoints/stats")
    def checkpoint_stats(vpg_id: str) -> Any:
        return sim.checkpoint_stats(vpg_id)

    @api.post("/v1/vpgs/{vpg_id}/checkpoints")
    def checkpoint_add(vpg_id: str, body: JsonBody) -> Any:
        return sim.tag_checkpoint(vpg_id, body)

    @api.post("/v1/vpgs/{vpg_id}/{action}")
    def vpg_action(request: Request, vpg_id: str, action: str, body: JsonBody) -> Any:
        path = request.url.path
        handlers: dict[str, Callable[[], str]] = {
            "failovertest": lambda: sim.failover_test(vpg_id, body, path),
            "failoverteststop": lambda: sim.failover_test_stop(vpg_id, body, path),
            "failover": lambda: sim.failover(vpg_id, body, path, "failover"),
            "failovercommit": lambda: sim.failover_commit(vpg_id, body, path, "failover"),
            "failoverrollback": lambda: sim.failover_rollback(vpg_id, path, "failover"),
            "move": lambda: sim.failover(vpg_id, body, path, "move"),
            "movecommit": lambda: sim.failover_commit(vpg_id, body, path, "move"),
            "moverollback": lambda: sim.failover_rollback(vpg_id, path, "move"),
            "pause": lambda: sim.pause(vpg_id, path),
            "resume": lambda: sim.resume(vpg_id, path),
        }
        handler = handlers.get(action)
        if handler is None:
            raise ApiError(404, f"No VPG action {action!r}.")
        return JSONResponse(handler())

    @api.get("/v1/vpgsettings")
    def settings_list() -> Any:
        return sim.list_settings()

    @api.post("/v1/vpgsettings")
    def settings_create(body: JsonBody) -> Any:
        return JSONResponse(sim.create_settings(body))

    @api.get("/v1/vpgsettings/{sid}")
    def settings_get(sid: str) -> Any:
        return sim.get_settings(sid)

    @api.put("/v1/vpgsettings/{sid}")
    def settings_put(sid: str, body: JsonBody) -> Response:
        sim.put_settings(sid, body)
        return Response(status_code=200)

    @api.delete("/v1/vpgsettings/{sid}")
    def settings_delete(sid: str) -> Response:
        sim.delete_settings(sid)
        return Response(status_code=200)

    @api.post("/v1/vpgsettings/{sid}/commit")
    def settings_commit(request: Request, sid: str) -> Any:
        return JSONResponse(sim.commit_settings(sid, request.url.path))

    @api.post("/v1/vpgsettings/{sid}/vms")
    def settings_vm_add(sid: str, body: JsonBody) -> Any:
        return JSONResponse(sim.add_settings_vm(sid, body))

    @api.get("/v1/vpgsettings/{sid}/vms/{vm_id}")
    def settings_vm_get(sid: str, vm_id: str) -> Any:
        return sim.get_settings_vm(sid, vm_id)

    @api.put("/v1/vpgsettings/{sid}/vms/{vm_id}")
    def settings_vm_put(sid: str, vm_id: str, body: JsonBody) -> Response:
        sim.put_settings_vm(sid, vm_id, body)
        return Response(status_code=200)

    @api.delete("/v1/vpgsettings/{sid}/vms/{vm_id}")
    def settings_vm_delete(sid: str, vm_id: str) -> Response:
        sim.delete_settings_vm(sid, vm_id)
        return Response(status_code=200)

    @api.get("/v1/vpgsettings/{sid}/vms/{vm_id}/nics")
    def settings_nics(sid: str, vm_id: str) -> Any:
        return sim.get_settings_vm(sid, vm_id, nics=True)

    @api.get("/v1/vpgsettings/{sid}/vms/{vm_id}/nics/{nic_id}")
    def settings_nic_get(sid: str, vm_id: str, nic_id: str) -> Any:
        return sim.get_settings_vm(sid, vm_id, nic=nic_id)

    @api.put("/v1/vpgsettings/{sid}/vms/{vm_id}/nics/{nic_id}")
    def settings_nic_put(sid: str, vm_id: str, nic_id: str, body: JsonBody) -> Response:
        sim.put_settings_vm(sid, vm_id, body, nic=nic_id)
        return Response(status_code=200)

    @api.get("/v1/vpgsettings/{sid}/{section}")
    def settings_section_get(sid: str, section: str) -> Any:
        return sim.get_settings(sid, section)

    @api.put("/v1/vpgsettings/{sid}/{section}")
    def settings_section_put(sid: str, section: str, body: JsonBody) -> Response:
        sim.put_settings(sid, body, section)
        return Response(status_code=200)

    @api.get("/v1/tasks")
    def tasks(request: Request) -> Any:
        q = {k.lower(): v for k, v in request.query_params.items()}
        return sim.list_tasks(q.get("vpgidentifier"))

    @api.get("/v1/tasks/states")
    def task_states() -> Any:
        return [{"State": k, "Name": v} for k, v in TASK_STATES.items()]

    @api.get("/v1/tasks/{task_id}")
    def task(task_id: str) -> Any:
        return sim.get_task(task_id)

    app.include_router(api)

    # --- lab control (loopback only, no auth: it is not part of the imitated product) --

    @app.get("/lab/health")
    def health() -> Any:
        return {"ok": True, "protected_site": sim.local.identifier, "recovery_site": sim.peer.identifier}

    @app.get("/lab/faults")
    def faults_list() -> Any:
        with sim.lock:
            return [f.model_dump() for f in sim.faults]

    @app.post("/lab/faults")
    def faults_add(body: JsonBody) -> Any:
        try:
            fault = Fault.model_validate(body or {})
        except ValueError as exc:
            raise ApiError(400, f"Invalid fault: {exc}") from None
        return sim.add_fault(fault)

    @app.delete("/lab/faults")
    def faults_clear() -> Any:
        sim.clear_faults()
        return []

    @app.post("/lab/expire-sessions")
    def expire_sessions() -> Any:
        return {"expired": sim.expire_sessions()}

    @app.get("/lab/state")
    def lab_state() -> Any:
        return sim.lab_state()

    @app.post("/lab/reset")
    def lab_reset() -> Any:
        return sim.reset()

    @app.post("/lab/vpgs/{vpg_id}/replication")
    def lab_link(vpg_id: str, body: JsonBody) -> Any:
        return sim.set_link(vpg_id, bool((body or {}).get("paused", False)))

    return FrontDoor(app, sim)


class FrontDoor:
    """ASGI wrapper: case-insensitive ZVM routes and the fault modes (503, slow, dropped)."""

    def __init__(self, app: Any, sim: ZertoSim) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.lower().startswith(("/v1/", "/auth/")):
            scope = dict(scope, path=path.lower())
            fault = self.sim.take_fault(path, scope.get("method", "GET"), ("http503", "slow", "drop"))
            if fault is not None:
                if fault.mode == "slow":
                    await asyncio.sleep(fault.delay_s)
                elif fault.mode == "http503":
                    await self._unavailable(send)
                    return
                elif fault.mode == "drop":
                    self._drop(send)
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _unavailable(send: Send) -> None:
        body = json.dumps({"Message": "Service Unavailable (lab fault mode http503)."}).encode()
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1")]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _drop(send: Send) -> None:
        """Reset the TCP connection without answering (uvicorn's ``send`` knows its transport)."""
        cycle = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is None:
            raise ConnectionResetError("lab fault mode drop: connection dropped")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:  # linger 0: close with RST, as a crashed server or a middlebox would
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()
        # Tell uvicorn the peer is gone so it does not try to answer with a 500.
        if cycle is not None and hasattr(cycle, "disconnected"):
            cycle.disconnected = True
