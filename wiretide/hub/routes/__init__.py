"""Extra API routes, one module each: a module here defines

    def router(store: HubStore) -> fastapi.APIRouter

whose paths are relative to /api (the hub adds the prefix, the token check and the error
handling). `ROUTES` lists the modules the hub mounts, in order."""

from __future__ import annotations

import importlib

from fastapi import APIRouter

from wiretide.hub.store import HubStore

ROUTES: tuple[str, ...] = ("export", "map", "rules", "coverage", "replay", "span")


def routers(store: HubStore) -> list[APIRouter]:
    return [importlib.import_module(f"{__name__}.{name}").router(store) for name in ROUTES]
