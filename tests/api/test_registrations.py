"""Nothing a new entity registers by hand goes unnoticed: every router the API defines is mounted.

(Its table is checked in tests/catalog/test_tables.py: every table definition is in ``TABLES``, so it is
created; every route has a permission in tests/api/test_permissions.py.)
"""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter

import api
from api.main import create_app
from api.permissions import app_endpoints, endpoint_name


def _routers() -> dict[str, APIRouter]:
    """Every ``APIRouter`` a module of the ``api`` package defines, by ``module.attribute``."""
    found: dict[str, APIRouter] = {}
    for info in pkgutil.walk_packages(api.__path__, prefix="api."):
        module = importlib.import_module(info.name)
        for attribute, value in vars(module).items():
            if isinstance(value, APIRouter) and not attribute.startswith("__"):
                found.setdefault(f"{info.name}.{attribute}", value)
    return found


def test_every_router_is_mounted() -> None:
    mounted = set(app_endpoints(create_app()))
    routers = _routers()
    assert "api.routers.registry.router" in routers  # the walk finds the routers
    unmounted = {
        name: missing
        for name, router in sorted(routers.items())
        if (missing := sorted({endpoint_name(r.endpoint) for r in router.routes if hasattr(r, "endpoint")} - mounted))
    }
    assert not unmounted, f"routers defined but not included in api/main.py create_app: {unmounted}"
