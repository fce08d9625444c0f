"""Welcome, help, deep links, and what to do with words that are not commands."""

from __future__ import annotations

from bot.core import Button, Incoming, Reply, Router, esc
from bot.i18n import has_message
from bot.parsing import parse_id
from handlers.catalog import course_card
from services.audit import actor_of

router = Router()

HELP_ORDER: list[tuple[str, bool]] = []
#: Commands open to instructors (and admins) that check the role themselves: /help lists them
#: under "For instructors", never to a plain learner.
STAFF_COMMANDS = frozenset(
    {"answer", "questions", "faq", "stats", "coupon", "export", "addcourse", "editcourse"}
    | {"schedule", "reschedule", "cancelsession", "replay"}
)


def home_buttons(t) -> list[list[Button]]:
    """The main-menu buttons."""
    return [
        [Button(t("start.catalog"), "cats"), Button(t("start.mine"), "mine")],
        [Button(t("start.language"), "langmenu")],
    ]


@router.command("start", "开始", "首页")
async def start(msg: Incoming, uow, learner, t, clock, channels) -> Reply:
    """Welcome the learner, or open the course named by a `course_<id>` deep link."""
    learner.announcements_opt_out = False
    payload = msg.args.strip()
    course_id = parse_id(payload[7:]) if payload.startswith("course_") else None
    if course_id is not None:
        return await course_card(course_id, msg, uow, learner, t, clock, channels)
    name = learner.display_name or ("同学" if t.locale == "zh" else "there")
    return Reply(t("start.welcome", name=esc(name)), home_buttons(t))


@router.command("help", "帮助")
async def help_command(msg: Incoming, uow, learner, t, settings) -> Reply:
    """Describe every command this user may use: instructors' and admins' ones only to them."""
    sections = {"learner": [t("help.learner")], "staff": [t("help.staff")]}
    sections["admin"] = [t("help.admin")]
    for name, admin in HELP_ORDER:
        key = f"cmd.{name}"
        line = f"/{name} — {t(key)}" if has_message(key) else f"/{name}"
        section = "admin" if admin else "staff" if name in STAFF_COMMANDS else "learner"
        sections[section].append(line)
    shown = ["learner"]
    if settings.is_admin(msg.channel, msg.user_ref):
        shown += ["staff", "admin"]
    elif (await actor_of(uow, settings, msg.channel, msg.user_ref, learner.id)).is_staff:
        shown.append("staff")
    return Reply("\n\n".join("\n".join(sections[s]) for s in shown if len(sections[s]) > 1))


@router.on("unknown")
async def unknown(t) -> Reply:
    """A command nobody handles."""
    return Reply(t("error.unknown_command"))
