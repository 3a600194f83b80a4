"""``/docs`` (Swagger UI) and ``/redoc``, with their scripts served from this process, never a CDN.

FastAPI's own pages load unpinned scripts from a CDN; on this origin they would run next to the
web console's session cookie, so a compromised CDN file could act as a signed-in operator.
Here the assets are those vendored by the ``fastapi-offline`` package (Swagger UI 5 and ReDoc
2, MIT, its only dependency FastAPI), mounted under ``/docs/assets``, and each page carries a
Content-Security-Policy that lets scripts come from this origin only (Swagger UI's one inline
start-up script is allowed by its hash). Swagger UI's validator badge, which would send the
document's URL to validator.swagger.io, is off. ``/openapi.json`` is FastAPI's.
"""

import base64
import hashlib
from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"
_STATIC = str(files("fastapi_offline") / "static")

_SWAGGER_START = (
    "SwaggerUIBundle({url: '/openapi.json', dom_id: '#swagger-ui', layout: 'BaseLayout',"
    " deepLinking: true, validatorUrl: null,"
    " presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]});"
)
_SWAGGER_HTML = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>webhooks API - Swagger UI</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
<link rel="icon" href="{ASSETS}/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script>{_SWAGGER_START}</script>
</body>
</html>
"""
_REDOC_HTML = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>webhooks API - ReDoc</title>
<link rel="icon" href="{ASSETS}/favicon.png">
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="{ASSETS}/redoc.standalone.js"></script>
</body>
</html>
"""


def _csp(script_src: str) -> str:
    # Both UIs set inline styles (style-src 'unsafe-inline'); ReDoc searches in a blob: worker.
    return (
        f"default-src 'none'; script-src {script_src}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


_START_HASH = base64.b64encode(hashlib.sha256(_SWAGGER_START.encode()).digest()).decode()
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def mount(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets (the app is made with ``docs_url=None``)."""
    app.mount(ASSETS, StaticFiles(directory=_STATIC), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        csp = _csp(f"'self' 'sha256-{_START_HASH}'")
        return HTMLResponse(_SWAGGER_HTML, headers={**_HEADERS, "Content-Security-Policy": csp})

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return HTMLResponse(_REDOC_HTML, headers={**_HEADERS, "Content-Security-Policy": _csp("'self'")})
