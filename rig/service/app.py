"""The ASGI application: the gate (rig.service.security) in front of the API, the event stream,
the pages and the vendored static files.

Why Starlette on uvicorn: a small, well-kept ASGI toolkit (routing, requests, streaming responses,
static files) without a framework's worth of magic; uvicorn is its reference server, with TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from rig.service import api, pages
from rig.service.security import Gate
from rig.service.state import Service

STATIC = Path(__file__).parent / "static"


def build_app(service: Service) -> Gate:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.hub.attach(asyncio.get_running_loop())
        yield
        service.hub.close_all()

    app = Starlette(routes=[*api.routes(service), *pages.routes(service),
                            Mount("/static", StaticFiles(directory=STATIC), name="static")],
                    lifespan=lifespan)
    return Gate(app, service)


__all__ = ["build_app"]
