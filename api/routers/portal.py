"""The web portal: a static single-page app served at ``/``.

The app lives in ``api/portal/`` (``index.html``, ES modules, CSS) and reads everything through the
public native API, like any other client. Pages are addressed by the URL's fragment, in MLflow's
shape: ``/#/experiments/<id>/runs/<run_id>``, which is what the stock mlflow client prints after a
run ("View run at ..."), opens the run page.

Front-end dependencies (the uPlot charting library) are npm packages installed from
``api/portal/package-lock.json`` by ``make install``; they are served under ``/portal/vendor/``.
Nothing third-party is copied into this repository.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from lakeops.errors import BackendUnavailableError, NotFoundError

router = APIRouter(include_in_schema=False)

PORTAL_DIR = Path(__file__).resolve().parent.parent / "portal"
_MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# The vendored names the pages import, mapped to files of the installed npm packages.
VENDOR_FILES = {
    "uplot.js": "node_modules/uplot/dist/uPlot.esm.js",
    "uplot.css": "node_modules/uplot/dist/uPlot.min.css",
}
# The app's own files change with the code: the browser revalidates them (an ETag round trip).
_NO_CACHE = {"cache-control": "no-cache"}


@router.get("/")
def index() -> Response:
    """The single-page app; its fragment (``#/...``) picks the page."""
    return FileResponse(PORTAL_DIR / "index.html", media_type="text/html", headers=_NO_CACHE)


@router.get("/portal/vendor/{name}")
def vendor_asset(name: str) -> Response:
    """A front-end dependency from ``api/portal/node_modules`` (installed by ``make install``)."""
    relative = VENDOR_FILES.get(name)
    if relative is None:
        raise NotFoundError(f"No portal dependency {name!r}; known: {sorted(VENDOR_FILES)}")
    path = PORTAL_DIR / relative
    if not path.is_file():
        raise BackendUnavailableError(
            f"The portal's front-end dependencies are not installed ({relative} is missing): run `make install`"
        )
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers={"cache-control": "max-age=86400"})


@router.get("/portal/{name:path}")
def portal_asset(name: str) -> Response:
    """One of the app's own files (``app.js``, ``pages/*.js``, ``style.css``)."""
    path = (PORTAL_DIR / name).resolve()
    allowed = (
        path.suffix in _MEDIA_TYPES
        and path.is_relative_to(PORTAL_DIR)
        and "node_modules" not in path.relative_to(PORTAL_DIR).parts
        and path.is_file()
    )
    if not allowed:
        raise NotFoundError(f"No portal file {name!r}")
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_NO_CACHE)
