"""The panel's pages: server-rendered HTML (Jinja2) with htmx for forms and one script for the
live run (uPlot charts fed by the event stream).

Why server-rendered: the forms, their inline errors and the finished-run pages are produced by the
same Python that checks them, so the browser needs almost no logic of its own and every page works
on a 1280×800 bench screen or a tablet with the keyboard alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import jinja2
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

import procedures
from rig.errors import RigError, UsageError
from rig.service import finished
from rig.service.api import session_of
from rig.service.forms import FormCheck, form_schema
from rig.service.jobs import FormRejected
from rig.service.sessions import COOKIE
from rig.service.state import Service
from rig.service.status import station_status

TEMPLATES = Path(__file__).parent / "templates"
IMAGES = Path(procedures.__file__).parent / "images"

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                          autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
_env.filters["num"] = lambda v: "" if v is None else f"{v:.5g}" if isinstance(v, float) else str(v)


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    session = request.scope["state"].get("session")
    html = _env.get_template(name).render(
        account=session.account if session else None, csrf=session.csrf if session else "",
        path=request.url.path, **context)
    return HTMLResponse(html, status_code=status)


def _inside(base: Path, relative: str) -> Path | None:
    """A file under ``base`` (no escaping it with .. or links), else None."""
    try:
        target = (base / relative).resolve()
        base = base.resolve()
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target


def routes(service: Service) -> list[Route]:
    jobs = service.jobs
    runs_dir = service.station.runs_dir

    async def home(request: Request) -> Response:
        found = procedures.discover()
        return render(request, "station.html", title="Station", status_info=station_status(service),
                      procedures=[form_schema(p) for p in found.procedures.values()], broken=found.broken,
                      jobs=[j.summary() for j in reversed(list(jobs.jobs.values()))][:20])

    async def login_page(request: Request) -> Response:
        if not service.auth_required:
            return RedirectResponse("/", status_code=303)
        return render(request, "login.html", title="Sign in", error="",
                      next=request.query_params.get("next", "/"))

    async def login_form(request: Request) -> Response:
        form = await request.form()
        user, password = str(form.get("user", "")), str(form.get("password", ""))
        nxt = str(form.get("next", "/"))
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"
        account = await anyio.to_thread.run_sync(service.accounts.authenticate, user, password)
        await anyio.to_thread.run_sync(lambda: service.audit("panel_login", user=user, ok=account is not None,
                                                             via="form"))
        if account is None:
            return render(request, "login.html", status=401, title="Sign in",
                          error="Unknown user or wrong password.", next=nxt)
        session = service.sessions.create(account)
        response = RedirectResponse(nxt, status_code=303)
        response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict", secure=service.tls)
        return response

    async def logout_form(request: Request) -> Response:
        service.sessions.drop(request.cookies.get(COOKIE))
        response = RedirectResponse("/login" if service.auth_required else "/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    async def procedure_page(request: Request) -> Response:
        try:
            procedure = procedures.load(request.path_params["procedure"])
        except UsageError as exc:
            return render(request, "error.html", status=404, title="Not found", message=str(exc))
        return render(request, "procedure.html", title=procedure.id, proc=form_schema(procedure),
                      values={}, check=FormCheck())

    async def start(request: Request) -> Response:
        """htmx: the form again with inline errors, or HX-Redirect to the live run."""
        account = session_of(request).account
        try:
            procedure = procedures.load(request.path_params["procedure"])
        except UsageError as exc:
            return render(request, "error.html", status=404, title="Not found", message=str(exc))
        form = await request.form()
        values = {k: str(v) for k, v in form.items() if k != "csrf"}
        check = FormCheck()
        if not account.may_run:
            check.form_error = f"your role ({account.role}) may not start runs; an operator or admin may"
        else:
            try:
                job = await anyio.to_thread.run_sync(lambda: jobs.submit_run(procedure.id, values, account.user,
                                                                              operator=account.name or account.user))
            except FormRejected as exc:
                check = exc.check
            except RigError as exc:
                check.form_error = str(exc)
            else:
                return Response(status_code=204, headers={"HX-Redirect": f"/jobs/{job.id}"})
        return render(request, "procedure_form.html", proc=form_schema(procedure), values=values, check=check)

    async def job_page(request: Request) -> Response:
        try:
            job = jobs.get(request.path_params["job"])
        except KeyError:
            return render(request, "error.html", status=404, title="Not found",
                          message=f"no job {request.path_params['job']!r}")
        return render(request, "job.html", title=f"{job.label} · live", job=job.summary(),
                      limit_kpa=service.station.safety.max_line_pressure_kpa)

    async def runs_page(request: Request) -> Response:
        runs = await anyio.to_thread.run_sync(finished.list_runs, runs_dir)
        return render(request, "runs.html", title="Runs", runs=[r.public() for r in runs],
                      nightly=finished.nightly_summaries(runs_dir))

    async def run_page(request: Request) -> Response:
        try:
            run_dir = finished.find_run(runs_dir, request.path_params["run"])
        except KeyError:
            return render(request, "error.html", status=404, title="Not found",
                          message=f"no run {request.path_params['run']!r}")
        detail = await anyio.to_thread.run_sync(finished.run_detail, run_dir, service.trust)
        return render(request, "run.html", title=f"run {run_dir.name}", run=detail, sign_result=None,
                      local=not service.auth_required)

    async def sign_form(request: Request) -> Response:
        """htmx: the signature block again, with the outcome of this attempt."""
        account = session_of(request).account
        try:
            run_dir = finished.find_run(runs_dir, request.path_params["run"])
        except KeyError:
            return render(request, "error.html", status=404, title="Not found", message="no such run")
        form = dict((await request.form()).items())
        key = account.key if service.auth_required else str(form.get("key") or account.key)
        try:
            path = await anyio.to_thread.run_sync(lambda: finished.sign(
                run_dir, str(form.get("bundle") or "report"), str(form.get("role", "")), key,
                str(form.pop("passphrase", "")), account.signing_roles, service.trust, service.audit_log))
            result = {"ok": True, "text": f"Signed as {form.get('role')}: {path.name}"}
        except (PermissionError, RigError) as exc:
            result = {"ok": False, "text": str(exc)}
        finally:
            form.clear()
        detail = await anyio.to_thread.run_sync(finished.run_detail, run_dir, service.trust)
        return render(request, "run_bundles.html", run=detail, sign_result=result, local=not service.auth_required)

    async def run_file(request: Request) -> Response:
        try:
            run_dir = finished.find_run(runs_dir, request.path_params["run"])
        except KeyError:
            return Response("not found", status_code=404)
        target = _inside(run_dir, request.path_params["path"])
        if target is None:
            return Response("not found", status_code=404)
        return FileResponse(target)

    async def nightly_file(request: Request) -> Response:
        target = _inside(runs_dir / "nightly", request.path_params["path"])
        return FileResponse(target) if target else Response("not found", status_code=404)

    async def trends_page(request: Request) -> Response:
        procedure = request.query_params.get("procedure") or None
        data = await anyio.to_thread.run_sync(finished.trends, runs_dir, procedure)
        return render(request, "trends.html", title="Trends", trends=data, procedure=procedure or "",
                      procedures=sorted(procedures.discover().procedures),
                      nightly=finished.nightly_summaries(runs_dir))

    async def image(request: Request) -> Response:
        target = _inside(IMAGES, request.path_params["name"])
        return FileResponse(target) if target else Response("not found", status_code=404)

    return [
        Route("/", home),
        Route("/login", login_page),
        Route("/login", login_form, methods=["POST"]),
        Route("/logout", logout_form, methods=["POST"]),
        Route("/procedures/{procedure}", procedure_page),
        Route("/procedures/{procedure}/start", start, methods=["POST"]),
        Route("/jobs/{job}", job_page),
        Route("/runs", runs_page),
        Route("/runs/{run}", run_page),
        Route("/runs/{run}/sign", sign_form, methods=["POST"]),
        Route("/runs/{run}/files/{path:path}", run_file),
        Route("/nightly/{path:path}", nightly_file),
        Route("/trends", trends_page),
        Route("/procedure-images/{name}", image),
    ]


def quoted(text: str) -> str:
    return quote(text, safe="")


__all__ = ["render", "routes"]
