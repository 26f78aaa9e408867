"""The JSON API and the live event stream (Server-Sent Events), described in ``openapi.py``.

Why SSE rather than WebSockets: the stream is one-way (the service tells, clients watch); every
action goes through an ordinary authenticated, CSRF-checked POST that lands in the audit trail.
SSE is plain HTTP, reconnects by itself with Last-Event-ID (the hub replays what was missed) and
passes proxies; the browser's EventSource needs no library.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import procedures
from rig.errors import RigError, UsageError
from rig.service import finished
from rig.service.forms import form_schema
from rig.service.jobs import FormRejected
from rig.service.openapi import openapi
from rig.service.sessions import COOKIE
from rig.service.state import Service
from rig.service.status import station_status

KEEPALIVE_S = 15.0
COALESCE_S = 0.1  # an SSE viewer's batching window: well below the panel's 250 ms latency target


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def session_of(request: Request) -> Any:
    return request.scope["state"]["session"]


def require_runner(request: Request) -> JSONResponse | None:
    account = session_of(request).account
    if not account.may_run:
        return _error(403, f"role {account.role} may not start or control runs (operator or admin may)")
    return None


async def body_of(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = await request.json()
        except ValueError:
            raise UsageError("the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise UsageError("the request body must be a JSON object")
        return data
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def routes(service: Service) -> list[Route]:
    jobs = service.jobs

    async def get_openapi(request: Request) -> Response:
        return JSONResponse(openapi())

    async def get_session(request: Request) -> Response:
        session = session_of(request)
        return JSONResponse({**session.account.public(), "csrf": session.csrf,
                             "auth_required": service.auth_required})

    async def login(request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _error(415, "POST /api/login takes JSON: {\"user\": ..., \"password\": ...}")
        data = await body_of(request)
        user, password = str(data.get("user", "")), str(data.get("password", ""))
        account = await anyio.to_thread.run_sync(service.accounts.authenticate, user, password)
        await anyio.to_thread.run_sync(lambda: service.audit(
            "panel_login", user=user, ok=account is not None, via="api"))
        if account is None:
            return _error(401, "unknown user or wrong password")
        session = service.sessions.create(account)
        response = JSONResponse({**account.public(), "csrf": session.csrf})
        response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict", secure=service.tls)
        return response

    async def logout(request: Request) -> Response:
        service.sessions.drop(request.cookies.get(COOKIE))
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE)
        return response

    async def get_station(request: Request) -> Response:
        return JSONResponse(station_status(service))

    async def list_procedures(request: Request) -> Response:
        found = procedures.discover()
        return JSONResponse({"procedures": [form_schema(p) for p in found.procedures.values()],
                             "broken": found.broken})

    async def get_procedure(request: Request) -> Response:
        try:
            procedure = procedures.load(request.path_params["procedure"])
        except UsageError as exc:
            return _error(404, str(exc))
        return JSONResponse(form_schema(procedure))

    async def list_jobs(request: Request) -> Response:
        return JSONResponse({"jobs": [j.summary() for j in reversed(list(jobs.jobs.values()))]})

    async def get_job(request: Request) -> Response:
        try:
            return JSONResponse(jobs.get(request.path_params["job"]).summary())
        except KeyError:
            return _error(404, f"no job {request.path_params['job']!r}")

    async def submit(request: Request) -> Response:
        refused = require_runner(request)
        if refused:
            return refused
        account = session_of(request).account
        user = account.user
        try:
            data = await body_of(request)
            kind = data.get("kind", "run")
            if kind == "run":
                fields = data.get("fields") or {}
                answers = data.get("answers") or {}
                if not isinstance(fields, dict) or not isinstance(answers, dict):
                    raise UsageError("fields and answers must be objects of NAME: VALUE")
                via = f"{str(data.get('answers_via') or 'API')[:60]} ({user})"
                job = await anyio.to_thread.run_sync(
                    lambda: jobs.submit_run(str(data.get("procedure", "")), fields, user, answers, via,
                                           operator=account.name or user))
            elif kind == "nightly":
                from rig.service.nightly_jobs import submit_nightly

                job = await anyio.to_thread.run_sync(lambda: submit_nightly(
                    service, data.get("suite"), bool(data.get("unsigned", False)), user))
            else:
                raise UsageError(f"kind {kind!r}: allowed \"run\" or \"nightly\"")
        except FormRejected as exc:
            return _error(422, str(exc), fields=exc.check.errors, form=exc.check.form_error)
        except RigError as exc:
            return _error(422, str(exc))
        return JSONResponse(job.summary(), status_code=201)

    async def abort(request: Request) -> Response:
        try:
            job = jobs.abort(request.path_params["job"], session_of(request).account.user)
        except KeyError:
            return _error(404, f"no job {request.path_params['job']!r}")
        except LookupError as exc:
            return _error(409, str(exc))
        return JSONResponse(job.summary(), status_code=202)

    async def answer(request: Request) -> Response:
        refused = require_runner(request)
        if refused:
            return refused
        try:
            data = await body_of(request)
            normalised = jobs.answer(request.path_params["job"], str(data.get("step", "")),
                                     str(data.get("answer", "")), session_of(request).account.user)
        except KeyError:
            return _error(404, f"no job {request.path_params['job']!r}")
        except LookupError as exc:
            return _error(409, str(exc))
        except (ValueError, UsageError) as exc:
            return _error(422, str(exc))
        return JSONResponse({"step": data.get("step"), "answer": normalised})

    async def events(request: Request) -> Response:
        job = request.query_params.get("job") or None
        if job is not None and job not in jobs.jobs:
            return _error(404, f"no job {job!r}")
        try:
            after = int(request.headers.get("last-event-id") or request.query_params.get("after") or 0)
        except ValueError:
            after = 0
        sub, replay = service.hub.subscribe(job, after)
        if job is not None and after == 0 and not replay and jobs.get(job).state in ("finished", "cancelled"):
            # an old job whose stream was let go: say at once that it is done
            replay = [(0, job, json.dumps({"type": "job_done", "summary": jobs.get(job).summary(), "seq": 0,
                                           "job": job}, default=str))]

        async def stream() -> Any:
            last = after
            try:
                yield "retry: 1000\n\n"
                for seq, _job, text in replay:
                    last = seq
                    yield f"id: {seq}\ndata: {text}\n\n"
                while True:
                    try:
                        item = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if item is not None:
                        # let a burst gather: one write per viewer per COALESCE_S instead of one per
                        # event (a virtual-time run publishes thousands a second; the run shares
                        # this process with every viewer's stream)
                        await asyncio.sleep(COALESCE_S)
                    chunks = []
                    while item is not None:
                        seq, _job, text = item
                        if seq > last:
                            last = seq
                            chunks.append(f"id: {seq}\ndata: {text}\n\n")
                        if sub.queue.empty():
                            break
                        item = sub.queue.get_nowait()
                    if chunks:
                        yield "".join(chunks)
                    if item is None:
                        return
            finally:
                service.hub.unsubscribe(sub)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    async def list_runs(request: Request) -> Response:
        runs = await anyio.to_thread.run_sync(finished.list_runs, service.station.runs_dir)
        return JSONResponse({"runs": [r.public() for r in runs]})

    async def get_run(request: Request) -> Response:
        try:
            run_dir = finished.find_run(service.station.runs_dir, request.path_params["run"])
        except KeyError:
            return _error(404, f"no run {request.path_params['run']!r}")
        return JSONResponse(await anyio.to_thread.run_sync(finished.run_detail, run_dir, service.trust))

    async def sign(request: Request) -> Response:
        account = session_of(request).account
        try:
            run_dir = finished.find_run(service.station.runs_dir, request.path_params["run"])
        except KeyError:
            return _error(404, f"no run {request.path_params['run']!r}")
        data = await body_of(request)
        bundle = str(data.get("bundle") or "report")
        role = str(data.get("role", ""))
        key = account.key if service.auth_required else str(data.get("key") or account.key)
        try:
            path = await anyio.to_thread.run_sync(lambda: finished.sign(
                run_dir, bundle, role, key, str(data.pop("passphrase", "")), account.signing_roles,
                service.trust, service.audit_log))
        except PermissionError as exc:
            return _error(403, str(exc))
        except RigError as exc:
            return _error(422, str(exc))
        finally:
            data.clear()
        status = await anyio.to_thread.run_sync(finished.verify_status, path.parent.parent, service.trust)
        return JSONResponse({"signature": path.name, "verify": status}, status_code=201)

    async def verify(request: Request) -> Response:
        try:
            run_dir = finished.find_run(service.station.runs_dir, request.path_params["run"])
        except KeyError:
            return _error(404, f"no run {request.path_params['run']!r}")
        out = [await anyio.to_thread.run_sync(finished.verify_status, b, service.trust)
               for b in finished.bundles(run_dir)]
        return JSONResponse({"run_id": run_dir.name, "bundles": out})

    async def get_trends(request: Request) -> Response:
        data = await anyio.to_thread.run_sync(finished.trends, service.station.runs_dir,
                                              request.query_params.get("procedure"))
        return JSONResponse({"trends": data,
                             "nightly": finished.nightly_summaries(service.station.runs_dir)})

    return [
        Route("/api/openapi.json", get_openapi),
        Route("/api/session", get_session),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/station", get_station),
        Route("/api/procedures", list_procedures),
        Route("/api/procedures/{procedure}", get_procedure),
        Route("/api/jobs", list_jobs),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{job}", get_job),
        Route("/api/jobs/{job}/abort", abort, methods=["POST"]),
        Route("/api/jobs/{job}/answer", answer, methods=["POST"]),
        Route("/api/events", events),
        Route("/api/runs", list_runs),
        Route("/api/runs/{run}", get_run),
        Route("/api/runs/{run}/sign", sign, methods=["POST"]),
        Route("/api/runs/{run}/verify", verify),
        Route("/api/trends", get_trends),
    ]


__all__ = ["routes", "session_of"]
