"""Channel adapters; `configured_channels` is the one place that maps settings to channels."""

from __future__ import annotations

from bot.channels.lazy_aiogram import install as _defer_aiogram_types

_defer_aiogram_types()  # before any adapter imports aiogram: its types build on first use


def configured_channels(app) -> list:
    """Every channel the settings enable, not yet started."""
    settings = app.settings
    channels = []
    if settings.telegram_bot_token:
        if settings.telegram_runtime == "ptb":
            from bot.channels.telegram_ptb import PtbChannel as Telegram
        else:
            from bot.channels.telegram_aiogram import AiogramChannel as Telegram
        channels.append(Telegram(app))
    if getattr(settings, "wechat_token", None) and settings.wechat_app_id:
        from bot.channels.wechat import WeChatChannel

        channels.append(WeChatChannel(app))
    return channels
