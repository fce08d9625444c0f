"""The figures of `/stats`: money, buyers, conversion, 复购率, retention, attendance,
satisfaction, questions, recommendations and coupons, over a window and a set of courses.

Definitions (all over the chosen courses; "window" = the last 7/30/90 days or all time):
- revenue: paid payments made in the window, per currency (refunded ones are shown apart);
- buyers: distinct learners with a paid payment in the window;
- conversion: of the learners who opened a course card in the window, the share who also paid
  for one of these courses in the window;
- repurchase rate: of the buyers, the share who paid for two or more distinct courses;
- 30-day retention: of the learners whose first paid purchase (ever, in these courses) falls in
  the window and at least 30 days ago, the share with any interaction 30 days or more after it;
- attendance: per session started in the window, learners who opened its link / enrolled;
- satisfaction: mean weighted score S = Σ wᵢ·Cᵢ and the mean of each criterion over ratings
  given or changed in the window, with the distribution of S rounded to 1..5 stars;
- recommendations: learners × courses opened from a recommendation, and the share of those
  pairs bought afterwards (in the window);
- coupons: uses (paid orders) in the window and the discount they gave.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.parsing import parse_id
from recommender.signals import Signal

PERIODS = {"7d": 7, "30d": 30, "90d": 90, "all": None}
DEFAULT_PERIOD = "30d"
RETENTION_DAYS = 30


@dataclass(frozen=True)
class SessionAttendance:
    """One session's attendance."""

    session_id: int
    course_id: int
    title: str
    starts_at: datetime
    attended: int
    enrolled: int

    @property
    def rate(self) -> float | None:
        """attended / enrolled, None when nobody is enrolled."""
        return self.attended / self.enrolled if self.enrolled else None


@dataclass
class Report:
    """Everything `/stats` shows (plain data; the handler words it, `charts` draws it)."""

    period: str
    since: datetime | None
    until: datetime
    course_ids: list[int] | None
    revenue: dict[str, int] = field(default_factory=dict)
    payments: int = 0
    refunded: dict[str, int] = field(default_factory=dict)
    buyers: int = 0
    viewers: int = 0
    converted: int = 0
    repeat_buyers: int = 0
    cohort: int = 0
    retained: int = 0
    sessions: list[SessionAttendance] = field(default_factory=list)
    ratings: int = 0
    satisfaction: float | None = None
    criteria: tuple[float | None, float | None, float | None] = (None, None, None)
    rating_histogram: dict[int, int] = field(default_factory=dict)
    open_questions: int = 0
    rec_clicks: int = 0
    rec_bought: int = 0
    rec_impressions: int = 0  # (learner, course) pairs suggested in the window
    rec_clicked: int = 0  # of those pairs, the ones opened from a suggestion in the window
    coupon_uses: int = 0
    coupon_discount: dict[str, int] = field(default_factory=dict)
    per_day: dict[date, dict] = field(default_factory=dict)

    @staticmethod
    def share(part: int, whole: int) -> float | None:
        """part / whole, None for an empty whole."""
        return part / whole if whole else None

    @property
    def conversion(self) -> float | None:
        """Card viewers who bought."""
        return self.share(self.converted, self.viewers)

    @property
    def repurchase(self) -> float | None:
        """Buyers of two or more courses."""
        return self.share(self.repeat_buyers, self.buyers)

    @property
    def retention(self) -> float | None:
        """30-day retention of the purchase cohort."""
        return self.share(self.retained, self.cohort)

    @property
    def rec_ctr(self) -> float | None:
        """Click-through: suggested pairs that were opened from the suggestion."""
        return self.share(self.rec_clicked, self.rec_impressions)

    @property
    def rec_conversion(self) -> float | None:
        """Recommendation clicks bought afterwards."""
        return self.share(self.rec_bought, self.rec_clicks)

    @property
    def attendance(self) -> float | None:
        """Attended seats over enrolled seats, across sessions."""
        return self.share(
            sum(s.attended for s in self.sessions), sum(s.enrolled for s in self.sessions)
        )


def parse_args(args: str) -> tuple[int | None, str] | None:
    """`[course_id] [7d|30d|90d|all]` in any order; None when malformed."""
    course_id, period = None, DEFAULT_PERIOD
    for part in args.split():
        part = part.lower().lstrip("#")
        if part in PERIODS:
            period = part
        elif parse_id(part) is not None and course_id is None:
            course_id = parse_id(part)
        else:
            return None
    return course_id, period


def window(period: str, now: datetime) -> datetime | None:
    """The start of a period (None: all time)."""
    days = PERIODS[period]
    return None if days is None else now - timedelta(days=days)


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


async def report(
    uow, course_ids: list[int] | None, period: str, now: datetime, zone: ZoneInfo
) -> Report:
    """Compute every figure for `course_ids` (None: all courses) over `period`."""
    since = window(period, now)
    out = Report(period, since, now, course_ids)
    q = uow.stats

    paid = await q.paid(course_ids, since, now)
    revenue: Counter = Counter()
    bought_courses: dict[int, set[int]] = defaultdict(set)
    bought_at: dict[tuple[int, int], datetime] = {}
    per_day: dict[date, dict] = {}
    for learner, course, currency, amount, at in paid:
        revenue[currency] += amount
        bought_courses[learner].add(course)
        key = (learner, course)
        bought_at[key] = min(at, bought_at.get(key, at))
        day = per_day.setdefault(at.astimezone(zone).date(), {"buyers": set()})
        day[currency] = day.get(currency, 0) + amount
        day["buyers"].add(learner)
    out.revenue, out.payments = dict(revenue), len(paid)
    out.refunded = {c: s for c, _, s in await q.refunded(course_ids, since, now)}
    out.buyers = len(bought_courses)
    out.repeat_buyers = sum(1 for c in bought_courses.values() if len(c) >= 2)
    out.per_day = {
        d: {**{k: v for k, v in row.items() if k != "buyers"}, "buyers": len(row["buyers"])}
        for d, row in sorted(per_day.items())
    }

    viewers = await q.learners_with(Signal.VIEW.value, course_ids, since, now)
    out.viewers, out.converted = len(viewers), len(viewers & set(bought_courses))

    firsts = await q.first_purchases(course_ids)
    horizon = now - timedelta(days=RETENTION_DAYS)
    cohort = {
        learner: at
        for learner, at in firsts.items()
        if at <= horizon and (since is None or at >= since)
    }
    last = await q.last_activity(list(cohort)) if cohort else {}
    out.cohort = len(cohort)
    out.retained = sum(
        1
        for learner, at in cohort.items()
        if learner in last and last[learner] >= at + timedelta(days=RETENTION_DAYS)
    )

    sessions = await q.sessions(course_ids, since, now)
    attended = await q.attended([s.id for s in sessions])
    enrolled = await q.enrolled(sorted({s.course_id for s in sessions})) if sessions else {}
    out.sessions = [
        SessionAttendance(
            s.id,
            s.course_id,
            s.title,
            s.starts_at,
            attended.get(s.id, 0),
            enrolled.get(s.course_id, 0),
        )
        for s in sessions
        if s.status != "cancelled"
    ]

    ratings = await q.ratings(course_ids, since, now)
    out.ratings = len(ratings)
    if ratings:
        out.satisfaction = _mean([r[3] for r in ratings])
        out.criteria = tuple(_mean([r[i] for r in ratings]) for i in range(3))
    out.rating_histogram = {n: 0 for n in range(1, 6)}
    for *_, score in ratings:
        out.rating_histogram[min(5, max(1, int(score + 0.5)))] += 1

    out.open_questions = await q.open_questions(course_ids)

    clicks = await q.first_touches(Signal.REC_CLICK.value, course_ids, since, now)
    out.rec_clicks = len(clicks)
    shown = await q.shown_pairs(course_ids, since, now)
    out.rec_impressions = len(shown)
    out.rec_clicked = len(shown & {(learner, course) for learner, course, _ in clicks})
    out.rec_bought = sum(
        1
        for learner, course, at in clicks
        if (learner, course) in bought_at and bought_at[(learner, course)] >= at
    )

    uses = await q.coupon_uses(course_ids, since, now)
    out.coupon_uses = sum(n for _, n, _ in uses)
    out.coupon_discount = {c: s for c, _, s in uses}
    return out


async def suggestions_shown(uow, learner_id: int, course_ids: list[int], now: datetime) -> int:
    """Record the courses just suggested to a learner (the impressions of click-through)."""
    return await uow.impressions.shown(learner_id, course_ids, now)
