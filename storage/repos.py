"""Repositories: the only place that knows how rows are queried and written."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, cast, delete, func, or_, select, union_all, update
from sqlalchemy import inspect as inspect_mapper
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, make_transient_to_detached, selectinload
from sqlalchemy.orm.util import identity_key

from storage.inline import Statement, connection_of
from storage.models import (
    Category,
    Course,
    Enrolment,
    Identity,
    InboxEntry,
    Interaction,
    KeyValue,
    Learner,
    Order,
    OutboxMessage,
    Payment,
    utcnow,
)


def dialect_module(session: AsyncSession):
    """SQLAlchemy's dialect module of this session (its `insert` has ON CONFLICT)."""
    return postgresql if session.bind.dialect.name == "postgresql" else sqlite


async def insert_ignore(session: AsyncSession, model: type, **values: Any) -> bool:
    """Insert a row unless a unique key already holds it; True when inserted."""
    module = dialect_module(session)
    result = await session.execute(module.insert(model).values(**values).on_conflict_do_nothing())
    return result.rowcount == 1


#: Prebuilt Core `INSERT … ON CONFLICT DO NOTHING` statements by (dialect, table): no ORM flush
#: and no statement building per update.
_IGNORING_INSERTS: dict[tuple[str, Any], Any] = {}


def _ignoring_insert(session: AsyncSession, table):
    """The cached Core insert-or-ignore statement of `table` on this session's dialect."""
    dialect = session.bind.dialect.name
    stmt = _IGNORING_INSERTS.get((dialect, table))
    if stmt is None:
        module = dialect_module(session)
        stmt = _IGNORING_INSERTS[(dialect, table)] = module.insert(table).on_conflict_do_nothing()
    return stmt


#: Prebuilt Core `INSERT … ON CONFLICT (key) DO UPDATE` of the key-value table by dialect.
_KV_UPSERTS: dict[str, Any] = {}


def _kv_upsert(session: AsyncSession):
    """The cached one-statement upsert of a key-value row on this session's dialect."""
    dialect = session.bind.dialect.name
    stmt = _KV_UPSERTS.get(dialect)
    if stmt is None:
        insert = dialect_module(session).insert(KeyValue.__table__)
        stmt = _KV_UPSERTS[dialect] = insert.on_conflict_do_update(
            index_elements=[KeyValue.__table__.c.key],
            set_={"value": insert.excluded.value, "updated_at": insert.excluded.updated_at},
        )
    return stmt


CHUNK = 400


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    """Consecutive slices of at most `size` items (bounded IN lists and multi-row inserts)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def insert_ignore_many(session, model: type, rows: list[dict]) -> int:
    """Insert many rows, skipping those a unique key already holds; returns rows inserted."""
    if not rows:
        return 0
    module = dialect_module(session)
    inserted = 0
    for chunk in chunks(rows, max(1, 3000 // len(rows[0]))):
        result = await session.execute(
            module.insert(model).values(list(chunk)).on_conflict_do_nothing()
        )
        inserted += max(result.rowcount or 0, 0)
    return inserted


#: How stale an identity's last_seen_at may get before a message refreshes it (fewer writes).
SEEN_GRANULARITY = timedelta(seconds=60)


def _locale_from_hint(hint: str | None, default: str) -> str:
    if hint and hint.lower().startswith("zh"):
        return "zh"
    if hint and hint.lower().startswith("en"):
        return "en"
    return default


def _new_learner(display_name: str, locale_hint: str | None, settings) -> Learner:
    """A learner first seen now (not yet added to a session)."""
    learner = Learner(display_name=display_name[:128], locale=None)
    learner.locale = _locale_from_hint(locale_hint, settings.default_locale)
    return learner


class Repo:
    """Base of every repository: holds the unit of work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _insert(self, model: type, **fields: Any):
        """Add a new row and flush it, so its id is known (and unique keys are checked)."""
        row = model(**fields)
        self.session.add(row)
        await self.session.flush()
        return row


#: The identity behind `channel:user_ref` with its learner (built once: read on every update).
_IDENTITY = (
    select(Identity)
    .where(Identity.channel == bindparam("channel"), Identity.user_ref == bindparam("user_ref"))
    .options(joinedload(Identity.learner, innerjoin=True))
)

#: `_IDENTITY` and whether the key-value table holds `<prefix><learner id>`, in one read.
_IDENTITY_KEYED = _IDENTITY.add_columns(
    select(KeyValue.key)
    .where(KeyValue.key == bindparam("prefix", type_=String) + cast(Identity.learner_id, String))
    .exists()
)


_LEARNER_COLUMNS = [(attr.key, attr.columns[0]) for attr in inspect_mapper(Learner).column_attrs]
_LEARNER_KEYS = tuple(key for key, _ in _LEARNER_COLUMNS)
_LEARNER_CLASS = inspect_mapper(Learner).class_manager
_IDENTITIES, _KV = Identity.__table__, KeyValue.__table__
#: `_IDENTITY_KEYED` on SQLite's own connection: the learner's columns, the identity's last
#: sighting, whether `<prefix><learner id>` is a key-value key (`storage.inline`).
_IDENTITY_INLINE = Statement(
    f"""SELECT {", ".join(f"l.{column.name}" for _, column in _LEARNER_COLUMNS)},
    i.last_seen_at, EXISTS (SELECT 1 FROM kv WHERE kv."key" = ? || l.id)
    FROM identities AS i JOIN learners AS l ON l.id = i.learner_id
    WHERE i.channel = ? AND i.user_ref = ?""",
    (_KV.c.key, _IDENTITIES.c.channel, _IDENTITIES.c.user_ref),
    # the EXISTS column comes back as a Boolean column's value does
    (
        *(column for _, column in _LEARNER_COLUMNS),
        _IDENTITIES.c.last_seen_at,
        Learner.__table__.c.announcements_opt_out,
    ),
)
_IDENTITY_INSERT_INLINE = Statement(
    """INSERT INTO identities (learner_id, channel, user_ref, last_seen_at) VALUES (?, ?, ?, ?)
    ON CONFLICT DO NOTHING""",
    (
        _IDENTITIES.c.learner_id,
        _IDENTITIES.c.channel,
        _IDENTITIES.c.user_ref,
        _IDENTITIES.c.last_seen_at,
    ),
)
_SEEN_INLINE = Statement(
    "UPDATE identities SET last_seen_at = ? WHERE channel = ? AND user_ref = ?",
    (_IDENTITIES.c.last_seen_at, _IDENTITIES.c.channel, _IDENTITIES.c.user_ref),
)


class LearnerRepo(Repo):
    """Learners and their per-channel identities."""

    async def resolve(
        self, channel: str, user_ref: str, display_name: str, locale_hint: str | None, settings
    ) -> Learner:
        """The learner behind `channel:user_ref`, created on first contact."""
        learner, _ = await self.resolve_keyed(
            channel, user_ref, display_name, locale_hint, settings, None
        )
        return learner

    async def resolve_keyed(
        self,
        channel: str,
        user_ref: str,
        display_name: str,
        locale_hint: str | None,
        settings,
        key_prefix: str | None,
        touch: bool = True,
    ) -> tuple[Learner, bool]:
        """`resolve`, and whether the key-value row `<key_prefix><learner id>` (a pending step)
        may exist, read with the learner (True when not asked or on first contact).
        `touch=False` only reads: nothing is updated, and an unknown user gets a learner that
        is not stored."""
        keyed = key_prefix is not None
        connection = await connection_of(self.session) if keyed else None
        if connection is not None:
            found = self._resolve_inline(
                connection, channel, user_ref, display_name, key_prefix, touch
            )
            if found is None and touch:
                found = await self._first_contact_inline(
                    connection, channel, user_ref, display_name, locale_hint, settings
                )
            if found is not None:
                return found
        if keyed:
            params = {"channel": channel, "user_ref": user_ref, "prefix": key_prefix}
            row = (await self.session.execute(_IDENTITY_KEYED, params)).first()
            identity, has_key = row if row is not None else (None, True)
        else:
            identity, has_key = await self.identity(channel, user_ref), True
        if not touch:
            if identity is not None:
                return identity.learner, bool(has_key)
            return _new_learner(display_name, locale_hint, settings), False
        learner = await self._refreshed(
            identity, channel, user_ref, display_name, locale_hint, settings
        )
        return learner, bool(has_key)

    def _resolve_inline(
        self, connection, channel, user_ref, display_name, key_prefix, touch
    ) -> tuple[Learner, bool] | None:
        """`resolve_keyed` of a known identity on SQLite's own connection (None: a first
        contact, left to the ORM path). The learner is attached to the session as if loaded,
        so a handler's changes to it are flushed as usual."""
        row = _IDENTITY_INLINE.first(connection, key_prefix, channel, user_ref)
        if row is None:
            return None
        *fields, last_seen, has_key = row
        learner = self.session.identity_map.get(identity_key(Learner, fields[0]))
        if learner is None:
            # as the ORM loads a row: the values set without attribute events (no history)
            learner = _LEARNER_CLASS.new_instance()
            learner.__dict__.update(zip(_LEARNER_KEYS, fields, strict=True))
            make_transient_to_detached(learner)
            self.session.add(learner)
        if touch:
            if display_name and learner.display_name != display_name[:128]:
                learner.display_name = display_name[:128]
            now = utcnow()
            if last_seen is None or now - last_seen > SEEN_GRANULARITY:
                _SEEN_INLINE.run(connection, now, channel, user_ref)
        return learner, bool(has_key)

    async def _first_contact_inline(
        self, connection, channel, user_ref, display_name, locale_hint, settings
    ) -> tuple[Learner, bool] | None:
        """A first contact on SQLite's own connection: the learner flushed by the ORM, its
        identity inserted here (None when a concurrent first contact inserted it first: the
        ORM path sorts that out)."""
        learner = _new_learner(display_name, locale_hint, settings)
        self.session.add(learner)
        await self.session.flush()
        if _IDENTITY_INSERT_INLINE.run(connection, learner.id, channel, user_ref, utcnow()):
            return learner, True
        await self.session.delete(learner)
        return None

    async def _refreshed(
        self, identity, channel, user_ref, display_name, locale_hint, settings
    ) -> Learner:
        """The learner of `identity` (None: create one), its name and last sighting updated."""
        if identity is None:
            learner = _new_learner(display_name, locale_hint, settings)
            self.session.add(learner)
            await self.session.flush()
            await insert_ignore(
                self.session,
                Identity,
                learner_id=learner.id,
                channel=channel,
                user_ref=user_ref,
                last_seen_at=utcnow(),
            )
            identity = await self.identity(channel, user_ref)
            if identity.learner_id != learner.id:  # a concurrent first contact won
                await self.session.delete(learner)
            return identity.learner
        if display_name and identity.learner.display_name != display_name[:128]:
            identity.learner.display_name = display_name[:128]
        now = utcnow()
        if identity.last_seen_at is None or now - identity.last_seen_at > SEEN_GRANULARITY:
            identity.last_seen_at = now  # proactive messages go to the channel used last
        return identity.learner

    async def identity(self, channel: str, user_ref: str) -> Identity | None:
        """One identity with its learner (one joined read), or None."""
        params = {"channel": channel, "user_ref": user_ref}
        return (await self.session.execute(_IDENTITY, params)).scalar_one_or_none()

    async def count(self) -> int:
        """Number of learners."""
        return int(await self.session.scalar(select(func.count()).select_from(Learner)) or 0)

    async def get(self, learner_id: int) -> Learner | None:
        """A learner by id."""
        return await self.session.get(Learner, learner_id)

    async def identities_of(self, learner_id: int) -> Sequence[Identity]:
        """Every channel identity of one learner."""
        stmt = select(Identity).where(Identity.learner_id == learner_id).order_by(Identity.id)
        return (await self.session.execute(stmt)).scalars().all()

    async def mark_unreachable(self, channel: str, user_ref: str, when: datetime) -> None:
        """Flag an identity the platform says we can no longer reach."""
        await self.session.execute(
            update(Identity)
            .where(Identity.channel == channel, Identity.user_ref == user_ref)
            .values(unreachable_at=when)
        )

    async def mark_reachable(self, channel: str, user_ref: str) -> None:
        """Clear the unreachable flag (the user wrote to us again)."""
        await self.session.execute(
            update(Identity)
            .where(
                Identity.channel == channel,
                Identity.user_ref == user_ref,
                Identity.unreachable_at.is_not(None),
            )
            .values(unreachable_at=None)
        )


_CATALOG_VERSION = select(
    select(func.max(Course.updated_at)).scalar_subquery(),
    select(func.max(Course.id)).scalar_subquery(),
    select(func.count()).select_from(Category).scalar_subquery(),
)

_CATALOG_VERSION_INLINE = Statement(
    """SELECT (SELECT max(updated_at) FROM courses), (SELECT max(id) FROM courses),
    (SELECT count(*) FROM categories)""",
    (),
    (Course.__table__.c.updated_at, Course.__table__.c.id, Category.__table__.c.id),
)


class CourseRepo(Repo):
    """The catalog."""

    async def get(self, course_id: int) -> Course | None:
        """A course with its category, or None."""
        stmt = select(Course).where(Course.id == course_id).options(joinedload(Course.category))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def categories(self) -> Sequence[tuple[Category, int]]:
        """Categories with their number of active courses, in display order."""
        counts = (
            select(Course.category_id, func.count().label("n"))
            .where(Course.active.is_(True))
            .group_by(Course.category_id)
            .subquery()
        )
        stmt = (
            select(Category, counts.c.n)
            .join(counts, counts.c.category_id == Category.id)
            .order_by(Category.position, Category.id)
        )
        return [(row[0], row[1]) for row in (await self.session.execute(stmt)).all()]

    async def catalog_version(self) -> tuple:
        """A cheap fingerprint of what the category list shows (index reads only): the newest
        course change, the newest course id, the number of categories."""
        connection = await connection_of(self.session)
        if connection is not None:
            return _CATALOG_VERSION_INLINE.first(connection)
        return tuple((await self.session.execute(_CATALOG_VERSION)).one())

    async def category(self, category_id: int) -> Category | None:
        """A category by id."""
        return await self.session.get(Category, category_id)

    async def category_by_slug(self, slug: str) -> Category | None:
        """A category by slug."""
        stmt = select(Category).where(Category.slug == slug)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def page(self, category_id: int, offset: int, limit: int) -> tuple[list[Course], int]:
        """One page of a category's active courses and the total count."""
        where = (Course.category_id == category_id, Course.active.is_(True))
        total = await self.session.scalar(select(func.count()).select_from(Course).where(*where))
        stmt = select(Course).where(*where).order_by(Course.id).offset(offset).limit(limit)
        return list((await self.session.execute(stmt)).scalars()), int(total or 0)

    async def active(self) -> Sequence[Course]:
        """Every active course with its category."""
        stmt = (
            select(Course)
            .where(Course.active.is_(True))
            .options(selectinload(Course.category))
            .order_by(Course.id)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def all(self) -> Sequence[Course]:
        """Every course, active or not, with its category."""
        stmt = select(Course).options(selectinload(Course.category)).order_by(Course.id)
        return (await self.session.execute(stmt)).scalars().all()

    async def many(self, course_ids: Sequence[int], active_only: bool = True) -> dict[int, Course]:
        """The (active) courses among these ids, with their categories, by id."""
        out: dict[int, Course] = {}
        for chunk in chunks(sorted(set(course_ids))):
            stmt = (
                select(Course)
                .where(Course.id.in_(chunk))
                .options(joinedload(Course.category))  # one statement: a many-to-one join
            )
            if active_only:
                stmt = stmt.where(Course.active.is_(True))
            out.update((c.id, c) for c in (await self.session.execute(stmt)).scalars())
        return out

    async def documents(
        self, after_id: int = 0, limit: int = 2000, ids: Sequence[int] | None = None
    ) -> list[Any]:
        """Searchable columns of courses (Core rows, no ORM objects), by id: a page of every
        course after `after_id`, or the courses `ids`."""
        stmt = (
            select(
                Course.id,
                Course.active,
                Course.updated_at,
                Course.title_zh,
                Course.title_en,
                Course.description_zh,
                Course.description_en,
                Course.instructor_name,
                Category.name_zh.label("category_zh"),
                Category.name_en.label("category_en"),
            )
            .join(Category, Category.id == Course.category_id)
            .where(Course.id > after_id)
            .order_by(Course.id)
            .limit(limit)
        )
        if ids is None:
            return list((await self.session.execute(stmt)).all())
        out: list[Any] = []
        for chunk in chunks(sorted(set(ids))):
            out += (await self.session.execute(stmt.where(Course.id.in_(chunk)))).all()
        return out

    async def changed_since(self, since: datetime) -> list[tuple[int, datetime]]:
        """(id, updated_at) of the courses changed at or after `since` (an index-only read)."""
        stmt = select(Course.id, Course.updated_at).where(Course.updated_at >= since)
        return [tuple(row) for row in (await self.session.execute(stmt)).all()]

    async def category_names(self) -> list[tuple[int, str, str]]:
        """(id, name_zh, name_en) of every category (a handful of rows)."""
        stmt = select(Category.id, Category.name_zh, Category.name_en).order_by(Category.id)
        return [tuple(row) for row in (await self.session.execute(stmt)).all()]

    async def matching(self, words: Sequence[str], limit: int) -> list[Course]:
        """Active courses whose titles or descriptions contain every word (a plain LIKE search
        for while the text index is not built yet)."""
        fields = (Course.title_zh, Course.title_en, Course.description_zh, Course.description_en)
        stmt = select(Course).where(Course.active.is_(True)).options(selectinload(Course.category))
        for word in words:
            stmt = stmt.where(or_(*(f.icontains(word, autoescape=True) for f in fields)))
        stmt = stmt.order_by(Course.id).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def infos(self, course_ids: Sequence[int]) -> list[Any]:
        """What the recommender needs of these courses (Core rows incl. the category slug)."""
        out: list[Any] = []
        for chunk in chunks(sorted(set(course_ids))):
            out += (await self.session.execute(_info_columns().where(Course.id.in_(chunk)))).all()
        return out

    async def newest_in(self, slugs: Sequence[str] | None, limit: int) -> list[Any]:
        """The newest active courses of these categories, or of all (None): recommender rows."""
        stmt = (
            _info_columns()
            .where(Course.active.is_(True))
            .order_by(Course.created_at.desc(), Course.id.desc())
            .limit(limit)
        )
        if slugs is None:
            return list((await self.session.execute(stmt)).all())
        if not slugs:
            return []
        # one indexed, ordered read per category (no sort of a category), in one statement
        parts = [stmt.where(Category.slug == slug).subquery() for slug in list(slugs)[:8]]
        both = union_all(*(select(part) for part in parts)).subquery()
        ordered = select(both).order_by(both.c.created_at.desc(), both.c.id.desc()).limit(limit)
        return list((await self.session.execute(ordered)).all())

    async def add_category(self, **fields: Any) -> Category:
        """Create a category."""
        return await self._insert(Category, **fields)

    async def add(self, **fields: Any) -> Course:
        """Create a course."""
        return await self._insert(Course, **fields)


def _info_columns():
    """The columns the recommender reads of a course (`services.recommendations.course_info`)."""
    return select(
        Course.id,
        Course.active,
        Course.created_at,
        Course.title_zh,
        Course.title_en,
        Course.description_zh,
        Course.description_en,
        Category.slug.label("category"),
        Category.name_zh.label("category_name_zh"),
        Category.name_en.label("category_name_en"),
    ).join(Category, Category.id == Course.category_id)


class OrderRepo(Repo):
    """Orders: one per attempt to buy a course."""

    async def get(self, order_id: int) -> Order | None:
        """An order by id (primary key: the pre-checkout lookup)."""
        return await self.session.get(Order, order_id)

    async def open_for(self, learner_id: int, course_id: int) -> Order | None:
        """The learner's latest unpaid order for a course."""
        stmt = (
            select(Order)
            .where(
                Order.learner_id == learner_id,
                Order.course_id == course_id,
                Order.status == "pending",
            )
            .order_by(Order.id.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def create(self, **fields: Any) -> Order:
        """Create a pending order."""
        return await self._insert(Order, **fields)


class PaymentRepo(Repo):
    """Payments, unique by provider charge id."""

    async def by_charge(self, charge_id: str) -> Payment | None:
        """The payment recorded under a provider charge id."""
        stmt = select(Payment).where(Payment.provider_charge_id == charge_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get(self, payment_id: int) -> Payment | None:
        """A payment by id."""
        return await self.session.get(Payment, payment_id)

    async def add(self, **fields: Any) -> Payment:
        """Record a payment (flush raises IntegrityError on a duplicate charge id)."""
        return await self._insert(Payment, **fields)

    async def totals(self) -> Sequence[tuple[str, str, int, int]]:
        """(status, currency, count, sum) over all payments."""
        stmt = select(
            Payment.status, Payment.currency, func.count(), func.sum(Payment.amount)
        ).group_by(Payment.status, Payment.currency)
        return [tuple(row) for row in (await self.session.execute(stmt)).all()]


class EnrolmentRepo(Repo):
    """Who owns which course."""

    async def owns(self, learner_id: int, course_id: int) -> bool:
        """True when the learner is enrolled in the course."""
        stmt = select(Enrolment.id).where(
            Enrolment.learner_id == learner_id, Enrolment.course_id == course_id
        )
        return (await self.session.execute(stmt)).first() is not None

    async def add(self, learner_id: int, course_id: int, payment_id: int | None) -> bool:
        """Enrol a learner; False when they already were."""
        return await insert_ignore(
            self.session,
            Enrolment,
            learner_id=learner_id,
            course_id=course_id,
            payment_id=payment_id,
            created_at=utcnow(),
        )

    async def revoke(self, learner_id: int, course_id: int) -> bool:
        """Remove an enrolment; True when one was removed."""
        result = await self.session.execute(
            delete(Enrolment).where(
                Enrolment.learner_id == learner_id, Enrolment.course_id == course_id
            )
        )
        return result.rowcount > 0

    async def courses_of(self, learner_id: int) -> Sequence[Course]:
        """The courses a learner owns, newest enrolment first."""
        stmt = (
            select(Course)
            .join(Enrolment, Enrolment.course_id == Course.id)
            .where(Enrolment.learner_id == learner_id)
            .options(joinedload(Course.category))
            .order_by(Enrolment.id.desc())
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def course_ids_of(self, learner_id: int) -> set[int]:
        """Ids of the courses a learner owns."""
        stmt = select(Enrolment.course_id).where(Enrolment.learner_id == learner_id)
        return set((await self.session.execute(stmt)).scalars())

    async def learners_of(self, course_id: int) -> list[int]:
        """Ids of the learners enrolled in a course."""
        stmt = select(Enrolment.learner_id).where(Enrolment.course_id == course_id)
        return list((await self.session.execute(stmt)).scalars())

    async def count(self, course_id: int | None = None) -> int:
        """Number of enrolments, overall or in one course."""
        stmt = select(func.count()).select_from(Enrolment)
        if course_id is not None:
            stmt = stmt.where(Enrolment.course_id == course_id)
        return int(await self.session.scalar(stmt) or 0)


#: A plain Core insert of one key-value row (the replies of an update: a new key).
_KV_INSERT = KeyValue.__table__.insert()
_INBOX = InboxEntry.__table__
_RECORD_INLINE = Statement(
    "INSERT INTO inbox (update_key, received_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
    (_INBOX.c.update_key, _INBOX.c.received_at),
)
_KV_INSERT_INLINE = Statement(
    'INSERT INTO kv ("key", value, updated_at) VALUES (?, ?, ?)',
    (_KV.c.key, _KV.c.value, _KV.c.updated_at),
)
_KV_DELETE_INLINE = Statement('DELETE FROM kv WHERE "key" = ?', (_KV.c.key,))
_KV_COLUMNS = ("key", "value", "updated_at")


def _kv_params(rows: list[tuple]) -> list[dict]:
    """(key, value, updated_at) rows as the ORM's parameters (where SQLite's inline statements
    take the tuples)."""
    return [dict(zip(_KV_COLUMNS, row, strict=True)) for row in rows]


_KV_INSERT_IGNORE_INLINE = Statement(
    'INSERT INTO kv ("key", value, updated_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    (_KV.c.key, _KV.c.value, _KV.c.updated_at),
)


class InboxRepo(Repo):
    """Update keys already handled, and the replies of an update not yet sent.

    The replies of an update are written in the same transaction as its inbox row, one
    key-value row each (`replies:<update_key>#<position>`), and each row is deleted once its
    reply was sent (one statement), so they live only between commit and send. A redelivered
    update finds there what a crash left unsent.
    """

    @staticmethod
    def _replies_key(update_key: str) -> str:
        # One row for all replies: how earlier versions kept them (still read and settled).
        return f"replies:{update_key}"[:160]

    @staticmethod
    def _reply_key(update_key: str, position: int) -> str:
        return f"replies:{update_key}"[:150] + f"#{position:04d}"

    async def record(self, update_key: str) -> bool:
        """Remember an update; False when it was seen before (a redelivery)."""
        connection = await connection_of(self.session)
        if connection is not None:
            return _RECORD_INLINE.run(connection, update_key, utcnow()) == 1
        stmt = _ignoring_insert(self.session, InboxEntry.__table__)
        result = await self.session.execute(
            stmt, {"update_key": update_key, "received_at": utcnow()}
        )
        return result.rowcount == 1

    @staticmethod
    def _queue_key(prefix: str, number: int) -> str:
        return f"{prefix}{number:015d}"  # zero-padded: the keys sort in update order

    async def queue_updates(self, prefix: str, updates: list[tuple[int, dict]]) -> None:
        """Keep raw updates fetched ahead of handling (`prefix` names the channel), so they can
        be confirmed to the platform at once and handled in order, after a crash too."""
        if not updates:
            return
        now = utcnow()
        rows = [(self._queue_key(prefix, n), raw, now) for n, raw in updates]
        connection = await connection_of(self.session)
        if connection is not None:
            _KV_INSERT_IGNORE_INLINE.run_many(connection, rows)
            return
        await insert_ignore_many(self.session, KeyValue, _kv_params(rows))

    async def queued_updates(self, prefix: str) -> list[tuple[int, dict]]:
        """The raw updates kept by `queue_updates` and not yet handled, in order."""
        rows = await self.session.execute(
            select(KeyValue.key, KeyValue.value)
            .where(KeyValue.key.startswith(prefix, autoescape=True))
            .order_by(KeyValue.key)
        )
        return [(int(key[len(prefix) :]), value) for key, value in rows.all()]

    async def unqueue_updates(self, prefix: str, numbers: list[int]) -> None:
        """Forget handled queued updates."""
        keys = [self._queue_key(prefix, n) for n in numbers]
        connection = await connection_of(self.session)
        if connection is not None:
            _KV_DELETE_INLINE.run_many(connection, [(key,) for key in keys])
            return
        for chunk in chunks(keys):
            await self.session.execute(delete(KeyValue).where(KeyValue.key.in_(chunk)))

    async def keep_replies(self, update_key: str, replies: list[dict]) -> None:
        """Store the replies (`{"channel", "user_ref", "body"}`) of an update until sent."""
        if not replies:
            return
        now = utcnow()
        rows = [(self._reply_key(update_key, n), reply, now) for n, reply in enumerate(replies)]
        connection = await connection_of(self.session)
        if connection is not None:
            _KV_INSERT_INLINE.run_many(connection, rows)
        else:
            await self.session.execute(_KV_INSERT, _kv_params(rows))

    async def unsent_replies(self, update_key: str) -> list[tuple[int, dict]]:
        """(position, reply) of the replies of an update not yet sent, in order."""
        prefix = self._reply_key(update_key, 0)[:-4]
        rows = await self.session.execute(
            select(KeyValue.key, KeyValue.value)
            .where(KeyValue.key.startswith(prefix, autoescape=True))
            .order_by(KeyValue.key)
        )
        unsent = [(int(key[len(prefix) :]), value) for key, value in rows.all()]
        legacy = await self.session.get(KeyValue, self._replies_key(update_key))
        if legacy is not None:
            done = set(legacy.value.get("done", []))
            unsent += [(n, r) for n, r in enumerate(legacy.value["replies"]) if n not in done]
        return unsent

    async def reply_done(self, update_key: str, position: int) -> None:
        """Tick off one reply (sent, refused for good, or handed to the outbox)."""
        key = self._reply_key(update_key, position)
        connection = await connection_of(self.session)
        if connection is not None:
            deleted = _KV_DELETE_INLINE.run(connection, key)
        else:
            deleted = (await self.session.execute(_KV.delete().where(_KV.c.key == key))).rowcount
        if deleted == 0:
            await self._legacy_reply_done(update_key, position)

    async def _legacy_reply_done(self, update_key: str, position: int) -> None:
        key = self._replies_key(update_key)
        table = KeyValue.__table__
        value = await self.session.scalar(
            select(table.c.value).where(table.c.key == key).with_for_update()
        )
        if value is None:
            return
        done = sorted(set(value.get("done", [])) | {position})
        if len(done) >= len(value["replies"]):
            await self.session.execute(table.delete().where(table.c.key == key))
        else:
            await self.session.execute(
                table.update()
                .where(table.c.key == key)
                .values(value={**value, "done": done}, updated_at=utcnow())
            )


class OutboxRepo(Repo):
    """Proactive messages waiting for the sender."""

    async def add_many(self, rows: list[dict]) -> int:
        """Write outbox rows (only `services.outbox.enqueue` calls this); duplicate dedupe
        keys are skipped. Returns the rows inserted."""
        return await insert_ignore_many(self.session, OutboxMessage, rows)


class InteractionRepo(Repo):
    """Signals for the recommender."""

    async def add(
        self,
        learner_id: int,
        course_id: int | None,
        kind: str,
        value: float | None = None,
        when: datetime | None = None,
    ) -> None:
        """Record one interaction."""
        self.session.add(
            Interaction(
                learner_id=learner_id,
                course_id=course_id,
                kind=kind,
                value=value,
                created_at=when or utcnow(),
            )
        )

    async def all(self) -> Sequence[Interaction]:
        """Every interaction, oldest first (bulk read for training)."""
        stmt = select(Interaction).order_by(Interaction.id)
        return (await self.session.execute(stmt)).scalars().all()

    async def newest_id(self) -> int:
        """The id of the newest interaction, 0 when there is none."""
        return int(await self.session.scalar(select(func.max(Interaction.id))) or 0)

    async def count_after(self, interaction_id: int) -> int:
        """How many interactions are newer than `interaction_id`."""
        stmt = select(func.count()).where(Interaction.id > interaction_id)
        return int(await self.session.scalar(stmt) or 0)

    async def of_learner(self, learner_id: int) -> Sequence[Interaction]:
        """One learner's interactions, oldest first."""
        stmt = (
            select(Interaction)
            .where(Interaction.learner_id == learner_id)
            .order_by(Interaction.id)
        )
        return (await self.session.execute(stmt)).scalars().all()


class KeyValueRepo(Repo):
    """Small shared state such as a learner's pending conversation step."""

    async def get(self, key: str) -> dict | None:
        """The value under `key`, or None."""
        row = await self.session.get(KeyValue, key)
        return row.value if row else None

    async def put(self, key: str, value: dict) -> None:
        """Store `value` under `key` (one upsert, no ORM object)."""
        await self.session.execute(
            _kv_upsert(self.session), {"key": key, "value": value, "updated_at": utcnow()}
        )
        loaded = self.session.identity_map.get(identity_key(KeyValue, key))
        if loaded is not None:  # a row read earlier in this unit of work: read it again
            self.session.expire(loaded)

    async def pop(self, key: str) -> dict | None:
        """Remove and return the value under `key` (one `DELETE … RETURNING`)."""
        stmt = delete(KeyValue).where(KeyValue.key == key).returning(KeyValue.value)
        return (await self.session.execute(stmt)).scalar_one_or_none()
