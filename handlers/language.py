"""Switching the reply language between zh and en."""

from __future__ import annotations

from bot.core import Button, Incoming, Reply, Router
from bot.i18n import LOCALES, translator_for

router = Router()


@router.command("language", "语言", "lang")
async def language(msg: Incoming, learner, t, settings) -> Reply:
    """Offer the languages, or set one given as an argument (`/language en`)."""
    choice = msg.args.strip().lower()
    if choice in LOCALES:
        return _set(choice, learner, settings)
    return Reply(t("language.pick"), [[Button("中文", "lang:zh"), Button("English", "lang:en")]])


@router.button("langmenu")
async def language_menu(msg: Incoming, learner, t, settings) -> Reply:
    """The language picker from the home menu."""
    return await language(msg, learner, t, settings)


@router.button("lang")
async def language_button(msg: Incoming, learner, t, settings) -> Reply:
    """Set the language picked with a button."""
    choice = msg.payload.partition(":")[2]
    if choice not in LOCALES:
        return Reply(t("error.stale_button"))
    return _set(choice, learner, settings)


def _set(locale: str, learner, settings) -> Reply:
    learner.locale = locale
    return Reply(translator_for(locale, settings, learner.timezone)("language.set"))
