"""Who may do what (admin, instructor, learner) and the audit log of what they did.

Admins are the ADMINS allow-list; instructors are learners an admin granted the role to, or who
teach a course. Every admin and instructor action is written through `record`, in the same
transaction as the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ADMIN, INSTRUCTOR, LEARNER = "admin", "instructor", "learner"
AUDIT_PAGE = 20


@dataclass(frozen=True)
class Actor:
    """Someone acting in chat: their learner id, `channel:user`, role, and courses taught."""

    learner_id: int
    ref: str
    role: str
    course_ids: tuple[int, ...] = ()

    @property
    def is_admin(self) -> bool:
        """True for an admin."""
        return self.role == ADMIN

    @property
    def is_staff(self) -> bool:
        """True for an admin or an instructor."""
        return self.role in (ADMIN, INSTRUCTOR)

    def may_manage(self, course_id: int | None) -> bool:
        """Admins manage every course; instructors only their own (never site-wide things)."""
        if self.is_admin:
            return True
        return course_id is not None and course_id in self.course_ids

    def scope(self, course_id: int | None = None) -> list[int] | None:
        """The courses this actor's figures cover (None: all); [] when not theirs."""
        if course_id is not None:
            return [course_id] if self.may_manage(course_id) else []
        return None if self.is_admin else list(self.course_ids)


async def actor_of(uow, settings, channel: str, user_ref: str, learner_id: int) -> Actor:
    """The role of the learner behind `channel:user_ref`."""
    ref = f"{channel}:{user_ref}"
    taught = tuple(await uow.roles.course_ids_of(learner_id))
    if settings.is_admin(channel, user_ref):
        return Actor(learner_id, ref, ADMIN, taught)
    if taught or await uow.roles.is_instructor(learner_id):
        return Actor(learner_id, ref, INSTRUCTOR, taught)
    return Actor(learner_id, ref, LEARNER)


async def record(
    uow,
    actor: Actor,
    action: str,
    target: str = "",
    now: datetime | None = None,
    **detail: Any,
) -> None:
    """Write one audit entry for an admin's or instructor's action."""
    await uow.audit.add(
        actor_learner_id=actor.learner_id,
        actor=actor.ref[:80],
        role=actor.role,
        action=action[:32],
        target=str(target)[:64],
        detail={k: v for k, v in detail.items() if v is not None},
        created_at=now or datetime.now(UTC),
    )


async def note(
    uow, actor: Actor | None, action: str, target: object = "", now=None, **detail: Any
) -> None:
    """`record` for a service acting on someone's behalf; nothing when the system acts
    (no actor: scheduler jobs, the CLI, tests of the service alone)."""
    if actor is not None:
        await record(uow, actor, action, str(target), now, **detail)


async def newest(uow, limit: int = AUDIT_PAGE) -> list:
    """The newest audit entries."""
    return await uow.audit.newest(limit)


@dataclass(frozen=True)
class RoleChange:
    """What /instructor add|remove did: `outcome` is done, unknown_user, no_course, not_granted."""

    outcome: str
    learner_id: int | None = None
    name: str = ""
    course_id: int | None = None
    courses_cleared: int = 0


async def add_instructor(
    uow, actor: Actor, channel: str, user_ref: str, course_id: int | None, now: datetime
) -> RoleChange:
    """Grant the instructor role (and, with a course, make them its instructor)."""
    identity = await uow.learners.identity(channel, user_ref) if user_ref else None
    if identity is None:
        return RoleChange("unknown_user")
    course = await uow.courses.get(course_id) if course_id is not None else None
    if course_id is not None and course is None:
        return RoleChange("no_course", identity.learner_id)
    await uow.roles.grant(identity.learner_id, actor.ref, now)
    if course is not None:
        course.instructor_learner_id = identity.learner_id
    await record(
        uow,
        actor,
        "instructor.add",
        f"{channel}:{user_ref}",
        now,
        learner_id=identity.learner_id,
        course_id=course_id,
    )
    name = identity.learner.display_name or f"#{identity.learner_id}"
    return RoleChange("done", identity.learner_id, name, course_id)


async def remove_instructor(
    uow, actor: Actor, channel: str, user_ref: str, course_id: int | None, now: datetime
) -> RoleChange:
    """Take one course from an instructor, or (no course) the role and all their courses."""
    identity = await uow.learners.identity(channel, user_ref) if user_ref else None
    if identity is None:
        return RoleChange("unknown_user")
    learner_id = identity.learner_id
    name = identity.learner.display_name or f"#{learner_id}"
    if course_id is not None:
        course = await uow.courses.get(course_id)
        if course is None or course.instructor_learner_id != learner_id:
            return RoleChange("not_granted", learner_id, name, course_id)
        course.instructor_learner_id = None
        cleared = 1
    else:
        if not await uow.roles.is_instructor(learner_id):
            return RoleChange("not_granted", learner_id, name)
        cleared = await uow.roles.revoke(learner_id)
    await record(
        uow,
        actor,
        "instructor.remove",
        f"{channel}:{user_ref}",
        now,
        learner_id=learner_id,
        course_id=course_id,
        courses_cleared=cleared,
    )
    return RoleChange("done", learner_id, name, course_id, cleared)
