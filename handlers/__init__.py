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
    "addcourse",
    "recommend",
    "feedback",
    "questions",
    "live",
    "announce",
    "link",
    "stats",
    "coupons",
    "export",
    "roles",
    "mydata",
]


def build_router() -> Router:
    """One router with the routes of every feature module."""
    from handlers import start

    modules = [importlib.import_module(f"handlers.{name}") for name in FEATURES]
    router = merge_routers(module.router for module in modules)
    for module in modules:  # a module may wrap merged routes (questions: reply-to answers)
        if hasattr(module, "wrap_router"):
            module.wrap_router(router)
    start.HELP_ORDER[:] = router.help
    return router
