"""Swagger UI and ReDoc with their assets served by the API itself, so /docs works offline."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from services.api.errors import not_found

ASSETS_PATH = "/docs/assets"
# fastapi-offline ships the Swagger UI 5 and ReDoc 2 bundles FastAPI's pages expect.
ASSET_DIR = Path(str(resources.files("fastapi_offline").joinpath("static")))
# Only these files are served: the name comes from the URL.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
# The files change only with the package's version.
_CACHE = {"Cache-Control": "public, max-age=86400"}


def install(app: FastAPI) -> None:
    """``/docs`` (Swagger UI), ``/redoc`` and their assets; create the app with
    ``docs_url=None, redoc_url=None`` so that FastAPI's CDN pages are not added too."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        raise ValueError("the docs pages need the OpenAPI document (openapi_url)")

    def asset(request: Request, name: str) -> str:
        # Behind a proxy that strips a prefix, root_path keeps the browser's URLs right.
        return f"{request.scope.get('root_path', '')}{ASSETS_PATH}/{name}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{request.scope.get('root_path', '')}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
            # Bearer tokens are pasted in; there is no OAuth2 flow to come back from.
            oauth2_redirect_url=None,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=f"{request.scope.get('root_path', '')}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, "redoc.standalone.js"),
            redoc_favicon_url=asset(request, "favicon.png"),
            with_google_fonts=False,  # the fonts come from Google's CDN
        )

    @app.get(f"{ASSETS_PATH}/{{name}}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise not_found("Asset")
        return FileResponse(ASSET_DIR / name, media_type=media_type, headers=_CACHE)
