"""The ASGI application: `app.main:app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from app.config import MB, Settings, get_settings
from app.errors import install_error_handlers
from app.routers import account, dashboard, evidence, issues, photos, public
from app.services.storage import Storage


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        Storage(settings.upload_dir).ensure_dirs()
        yield

    app = FastAPI(
        title="Gridproof",
        summary="Street problems reported with photo evidence, rectified, verified, audited.",
        version="1.0.0",
        lifespan=lifespan,
        max_body_size=MB,
        # Generous enough for before- and after-photos; each count is checked with a clear error.
        form_limits={"max_files": 4 * settings.max_photos_per_request, "max_fields": 100},
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(public.router)
    app.include_router(account.router)
    app.include_router(issues.router, max_body_size=settings.max_request_bytes)
    app.include_router(photos.router)
    app.include_router(evidence.router)
    app.include_router(dashboard.router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app


app = create_app()
