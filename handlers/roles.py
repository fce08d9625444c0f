"""Roles: `/instructor add|remove <channel:user> [course_id]` and the `/audit` log (admins)."""

from __future__ import annotations

from bot.core import Incoming, Reply, Router, esc
from bot.parsing import parse_id, parse_limit
from services import audit as service

router = Router()
#: Until handlers/questions.py drops its `/instructor <course_id> <channel:user>`, this module
#: answers /instructor (the old `<course_id> <channel:user>` order is understood too).
COMMAND, ALIASES = "instructor", ("讲师",)
AUDIT_TEXT_CHARS = 60


def _target(text: str) -> tuple[str, str]:
    channel, _, user_ref = text.strip().partition(":")
    return channel.strip(), user_ref.strip()


def _course(text: str) -> int | None | bool:
    if not text.strip():
        return None
    course_id = parse_id(text)
    return course_id if course_id is not None else False


@router.command(COMMAND, *ALIASES, admin=True)
async def instructor(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """Add or remove an instructor (optionally of one course)."""
    parts = msg.args.split()
    if len(parts) == 2 and parse_id(parts[0]) is not None:  # the old form: <course_id> <who>
        parts = ["add", parts[1], parts[0]]
    if len(parts) not in (2, 3) or parts[0].lower() not in ("add", "remove", "添加", "移除"):
        return Reply(t("instructor.roles_usage"))
    verb = "add" if parts[0].lower() in ("add", "添加") else "remove"
    channel, user_ref = _target(parts[1])
    course_id = _course(parts[2]) if len(parts) == 3 else None
    if not user_ref or course_id is False:
        return Reply(t("instructor.roles_usage"))
    actor = await service.actor_of(uow, settings, msg.channel, msg.user_ref, learner.id)
    change = service.add_instructor if verb == "add" else service.remove_instructor
    done = await change(uow, actor, channel, user_ref, course_id, clock.now())
    if done.outcome == "unknown_user":
        return Reply(t("instructor.unknown_user", who=esc(parts[1])))
    if done.outcome == "no_course":
        return Reply(t("kpi.no_course", id=course_id))
    if done.outcome == "not_granted":
        return Reply(t("instructor.not_granted", name=esc(done.name)))
    if verb == "add":
        key = "instructor.added_course" if course_id else "instructor.added"
        return Reply(t(key, name=esc(done.name), id=course_id))
    return Reply(
        t.plural(
            "instructor.removed",
            done.courses_cleared,
            name=esc(done.name),
            count=done.courses_cleared,
        )
    )


@router.command("audit", "审计", admin=True)
async def audit_log(msg: Incoming, uow, t) -> Reply:
    """`/audit [n]`: the newest admin and instructor actions (default 20, at most 100)."""
    arg = msg.args.strip()
    limit = parse_limit(arg, 1, 100) if arg else service.AUDIT_PAGE
    if limit is None:
        return Reply(t("audit.usage"))
    entries = await service.newest(uow, limit)
    if not entries:
        return Reply(t("audit.empty"))
    lines = [t("audit.head", count=len(entries))]
    for e in entries:
        detail = ", ".join(f"{k}={v}" for k, v in sorted(e.detail.items()))[:AUDIT_TEXT_CHARS]
        lines.append(
            t(
                "audit.line",
                id=e.id,
                time=t.when(e.created_at),
                actor=esc(e.actor),
                role=e.role,
                action=esc(e.action),
                target=esc(e.target),
                detail=esc(detail),
            )
        )
    return Reply("\n".join(lines))
