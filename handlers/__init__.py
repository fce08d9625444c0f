"""What the bot does, one module per feature; `build_router` collects them all."""

from __future__ import annotations

import importlib

from bot.core import Router, merge_routers

FEATURES = [
    "start",
    "catalog",
    "search",
    "purchase",
    "mycourses",
    "language",
    "admin",
]


def build_router() -> Router:
    """One router with the routes of every feature module."""
    from handlers import start

    modules = [importlib.import_module(f"handlers.{name}") for name in FEATURES]
    router = merge_routers(module.router for module in modules)
    start.HELP_ORDER[:] = router.help
    return router
