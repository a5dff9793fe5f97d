"""Swagger UI at ``/docs`` and ReDoc at ``/redoc``, from files in the package (``static/``).

Closed networks reach no CDN, so the pages load only ``/static/...`` of the gateway itself;
static/README.md names the upstream packages, versions and licences.
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse, Response

from zhongshu.node import errors

STATIC_DIR = Path(__file__).parent / "static"

STATIC_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
"""The files served under /static/, with their media types: no other name is looked up."""

TITLE = "Zhongshu gateway"
FAVICON = "/static/favicon-32x32.png"


@functools.cache
def _load(name: str) -> bytes:
    """A static file's bytes, read once (the files ship with the package and do not change)."""
    return (STATIC_DIR / name).read_bytes()


def docs_router(openapi_url: str) -> APIRouter:
    """The routes of the two documentation pages and their assets (not in the OpenAPI document)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{TITLE} - Swagger UI",
            swagger_js_url="/static/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui.css",
            swagger_favicon_url=FAVICON,
        )

    @router.get("/redoc")
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{TITLE} - ReDoc",
            redoc_js_url="/static/redoc.standalone.js",
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        )

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            raise errors.NotFound(f"no static file {name[:80]!r} (there are: {', '.join(STATIC_FILES)})")
        return Response(
            _load(name),
            media_type=media_type,
            headers={"cache-control": "public, max-age=86400"},
        )

    return router
