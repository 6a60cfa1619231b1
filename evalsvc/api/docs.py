"""`/docs`: Swagger UI from the `swagger-ui-bundle-v2` package, so the page works without internet.

FastAPI's own `/docs` page loads Swagger UI from a CDN and is blank on an air-gapped GPU box; LitServe's
app has it, and `/redoc` (also from a CDN), switched on. Both are replaced by this page, whose
script, stylesheet and icon are files of the installed package served under `ASSETS_PATH`.
`swagger-ui-bundle-v2` is the maintained fork of `swagger-ui-bundle` (same import name): the
original's last release bundles Swagger UI 4, which cannot render the OpenAPI 3.1 that FastAPI writes.
The validator badge is off: it would send the document to validator.swagger.io.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
REPLACED_PATHS = frozenset({DOCS_PATH, "/docs/oauth2-redirect", "/redoc"})
"""FastAPI's documentation routes, which load their assets from CDNs."""


def add_docs_routes(app: FastAPI) -> None:
    app.mount(ASSETS_PATH, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )
