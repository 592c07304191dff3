"""The ASGI application: `app.main:app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp
from starlette_compress import CompressMiddleware, add_compress_type

from app.config import MB, Settings, get_settings
from app.errors import BodyLimitAsProblem, install_error_handlers
from app.etags import ConditionalGetMiddleware
from app.gate import AuthenticateFirst
from app.openapi import finish_schema, install_docs
from app.routers import (
    account,
    audit,
    audit_page,
    dashboard,
    dashboard_page,
    evidence,
    exports,
    grid,
    issues,
    media,
    open311,
    pages,
    photos,
    public,
    users,
    webhooks,
)
from app.security_headers import SecurityHeaders
from app.services import checkpoints, objects, sweep
from app.services.decoders import start_decoders, stop_decoders
from app.services.storage import Storage
from app.services.webhook_worker import DeliveryWorker

# Beside the library's text types: our errors and the CSV ledger.
add_compress_type("application/problem+json")
add_compress_type("text/csv")
add_compress_type("text/xml")


class GridproofAPI(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        # The gate answers before the app's body limit (whose 413 would replace a 401 to a
        # large anonymous body) and before everything else (app/gate.py).
        gate = AuthenticateFirst(super().build_middleware_stack(), self.state.settings)
        # Outermost: every answer (the gate's and the body limit's too) gets the headers.
        return SecurityHeaders(BodyLimitAsProblem(gate))

    def openapi(self) -> dict[str, Any]:
        if not self.openapi_schema:
            self.openapi_schema = finish_schema(super().openapi())
        return self.openapi_schema


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        Storage(settings.upload_dir).ensure_dirs()
        await run_in_threadpool(_app.state.store.check)  # a missing bucket stops the start
        stop_sweeping = await run_in_threadpool(sweep.start, settings)
        await run_in_threadpool(start_decoders, settings)
        stop_checkpoints = await run_in_threadpool(checkpoints.start, settings)
        worker = DeliveryWorker(settings) if settings.webhook_worker else None
        if worker:
            worker.start()
        try:
            yield
        finally:
            if worker:
                await run_in_threadpool(worker.stop)
            await run_in_threadpool(stop_checkpoints)
            await run_in_threadpool(stop_sweeping)
            await run_in_threadpool(stop_decoders)

    app = GridproofAPI(
        title="Gridproof",
        summary="Street problems reported with photo evidence, rectified, verified, audited.",
        version="1.0.0",
        lifespan=lifespan,
        max_body_size=MB,
        docs_url=None,  # /docs and /redoc are served with local assets: install_docs
        redoc_url=None,
        # Generous enough for before- and after-photos; each count is checked with a clear error.
        form_limits={"max_files": 4 * settings.max_photos_per_request, "max_fields": 100},
    )
    app.state.settings = settings
    app.state.store = objects.open_store(settings)
    install_error_handlers(app)
    # Inside the gate (GridproofAPI), which looks the token up once before it.
    app.add_middleware(ConditionalGetMiddleware, settings=settings)
    # JSON lists are large and phones are on weak links: answers are compressed with the best
    # coding the client takes (zstd, then brotli, then gzip). A 50-issue page (131 kB) takes
    # 0.09 ms and 14 kB with zstd level 1 against 0.9 ms and 16.6 kB with gzip level 5, which
    # matters to dashboards polling it. Only text types are compressed: photos, zips and XLSX
    # files are compressed already.
    app.add_middleware(CompressMiddleware, minimum_size=1024, zstd_level=1, gzip_level=5)
    app.include_router(public.router)
    app.include_router(account.router)
    app.include_router(grid.router)  # before issues: /issues/nearby is not an issue id
    app.include_router(issues.router, max_body_size=settings.max_request_bytes)
    app.include_router(photos.router)
    app.include_router(evidence.router)
    app.include_router(audit.router)
    app.include_router(dashboard.router)
    app.include_router(exports.router)
    app.include_router(webhooks.router)
    app.include_router(users.router)
    app.include_router(open311.router, max_body_size=settings.max_request_bytes)
    app.include_router(media.router)
    app.include_router(dashboard_page.router)
    app.include_router(audit_page.router)
    app.mount("/audit/assets", pages.PageFiles(directory=audit_page.AUDIT_DIR), name="audit-assets")
    app.mount(
        "/dashboard/assets",
        pages.PageFiles(directory=dashboard_page.DASHBOARD_DIR),
        name="dashboard-assets",
    )
    app.mount("/vendor", pages.PageFiles(directory=pages.VENDOR_DIR), name="vendor")
    install_docs(app)
    app.include_router(pages.router)  # / → /m/, and the service worker
    app.mount("/m", pages.phone_app, name="phone-app")

    return app


app = create_app()
