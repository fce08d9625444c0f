"""A handler that names a dependency nobody provides fails when the router is built."""

from __future__ import annotations

import pytest

from bot.core import DependencyError, Dispatcher, Router
from tests.conftest import make_settings


def test_an_unknown_dependency_fails_at_start_up_with_a_clear_message(sqlite_url):
    router = Router()

    @router.command("oops")
    async def oops(msg, uow, recommendr):  # misspelt on purpose
        return None

    with pytest.raises(DependencyError) as failure:
        Dispatcher(router, lambda: None, {"settings": make_settings(sqlite_url)})
    assert "oops" in str(failure.value)
    assert "recommendr" in str(failure.value)
    assert "command 'oops'" in str(failure.value)


def test_known_dependencies_pass(sqlite_url):
    router = Router()

    @router.button("fine")
    async def fine(msg, uow, learner, t, step, settings):
        return None

    Dispatcher(router, lambda: None, {"settings": make_settings(sqlite_url)})


async def test_the_real_router_is_checked_when_the_app_is_built(app):
    assert app.dispatcher.router.commands, "the app's router has the feature routes"
