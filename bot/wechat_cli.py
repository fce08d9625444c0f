"""`coursebot wechat menu`: install the Official Account's custom menu from the catalog.

Mount it in `bot/cli.py`:

    from bot.wechat_cli import wechat_app
    app.add_typer(wechat_app, name="wechat")

Menu keys are what the WeChat channel maps back to the core: `cat:<id>:0` (a category page),
`cats` (all categories) and `cmd:<command>` (a command).
"""

from __future__ import annotations

import asyncio
import json

import typer

wechat_app = typer.Typer(help="WeChat Official Account tools.", no_args_is_help=True)

MAX_TOP = 3
MAX_SUB = 5
MAX_NAME_BYTES = 40  # sub-button names: 60 bytes at most; keep them short on phones


def _name(text: str, limit: int = MAX_NAME_BYTES) -> str:
    data = text.encode()
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def build_menu(categories, locale: str = "zh") -> dict:
    """The menu JSON: courses by category, my learning, help."""
    zh = locale == "zh"
    subs = [
        {"type": "click", "name": _name(c.name_zh if zh else c.name_en), "key": f"cat:{c.id}:0"}
        for c, _count in categories[: MAX_SUB - 1]
    ]
    subs.append({"type": "click", "name": "全部分类" if zh else "All", "key": "cats"})
    mine = [
        ("我的课程", "My courses", "cmd:mycourses"),
        ("为我推荐", "For you", "cmd:recommend"),
        ("直播安排", "Sessions", "cmd:sessions"),
        ("评分", "Rate", "cmd:rate"),
    ]
    more = [
        ("帮助", "Help", "cmd:help"),
        ("搜索", "Search", "cmd:search"),
        ("绑定账号", "Link account", "cmd:link"),
        ("语言 Language", "Language", "cmd:language"),
        ("退订公告", "No announcements", "cmd:stop"),
    ]

    def clicks(items):
        return [{"type": "click", "name": a if zh else b, "key": k} for a, b, k in items]

    return {
        "button": [
            {"name": "课程" if zh else "Courses", "sub_button": subs},
            {"name": "我的" if zh else "Mine", "sub_button": clicks(mine)},
            {"name": "更多" if zh else "More", "sub_button": clicks(more)},
        ]
    }


async def install_menu(app, dry_run: bool = False) -> dict:
    """Build the menu from the catalog and create it through the WeChat API."""
    from bot.channels.wechat import WeChatChannel

    async with app.uow() as uow:
        categories = list(await uow.courses.categories())
    menu = build_menu(categories, app.settings.default_locale)
    if dry_run:
        return menu
    channel = app.channels.get("wechat") if "wechat" in app.channels else None
    owned = channel is None
    if owned:
        channel = WeChatChannel(app, refresher=True)
    try:
        await channel.api(lambda client: client.menu.create(menu))
    finally:
        if owned:
            await channel.stop()
    return menu


@wechat_app.command("menu")
def menu_command(
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the menu, do not install it"),
) -> None:
    """Install the custom menu (courses by category, my learning, help) from the catalog."""
    from bot.bootstrap import build_app
    from bot.cli import _settings

    settings = _settings()
    if not (settings.wechat_token and settings.wechat_app_id and settings.wechat_app_secret):
        typer.echo("set WECHAT_TOKEN, WECHAT_APP_ID and WECHAT_APP_SECRET first", err=True)
        raise typer.Exit(code=2)

    async def run() -> dict:
        app = await build_app(settings)
        try:
            return await install_menu(app, dry_run)
        finally:
            await app.close()

    menu = asyncio.run(run())
    typer.echo(json.dumps(menu, ensure_ascii=False, indent=2))
