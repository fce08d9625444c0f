"""Course popularity counted by the database: learners with a positive signal per course.

The same rule as `recommender.signals` applies to one learner and one course (latest rating
first, then a refund, then the strongest implicit signal), written as one aggregate query, so
start-up reads one row per course instead of every interaction.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import bindparam, text

_POSITIVE_PER_COURSE = text(
    """
    SELECT course_id, COUNT(*) AS learners
    FROM (
        SELECT learner_id, course_id,
               MAX(CASE WHEN kind = 'refund' THEN 1 ELSE 0 END) AS refunded,
               MAX(CASE WHEN kind IN :liked THEN 1 ELSE 0 END) AS liked,
               MAX(CASE WHEN newest = 1 THEN stars END) AS stars
        FROM (
            SELECT learner_id, course_id, kind,
                   CASE WHEN kind = 'rating' THEN value END AS stars,
                   ROW_NUMBER() OVER (
                       PARTITION BY learner_id, course_id,
                                    CASE WHEN kind = 'rating' AND value IS NOT NULL
                                         THEN 1 ELSE 0 END
                       ORDER BY created_at DESC, id DESC
                   ) AS newest
            FROM interactions
            WHERE course_id IS NOT NULL
        ) events
        GROUP BY learner_id, course_id
    ) pairs
    WHERE CASE
        WHEN stars IS NOT NULL THEN
            (CASE WHEN stars < 1 THEN 1 WHEN stars > 5 THEN 5 ELSE stars END) >= :min_stars
        WHEN refunded = 1 THEN :refund_counts
        ELSE liked = 1
    END
    GROUP BY course_id
    """
).bindparams(bindparam("liked", expanding=True))


async def positive_learners_per_course(
    session, liked: Collection[str], min_stars: float, refund_counts: bool
) -> dict[int, float]:
    """{course id: learners whose latest rating is ≥ `min_stars` stars, or (unrated) who
    refunded when `refund_counts`, or (unrated, not refunded) did one of the `liked` kinds}."""
    if not liked:
        liked = ["-"]  # an empty IN list is not portable
    rows = await session.execute(
        _POSITIVE_PER_COURSE,
        {"liked": list(liked), "min_stars": min_stars, "refund_counts": refund_counts},
    )
    return {int(course): float(count) for course, count in rows}
