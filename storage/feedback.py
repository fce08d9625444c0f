"""Repositories of ratings, reviews and questions to instructors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update

from storage.models import Course, Learner, Question, Rating
from storage.repos import Repo, insert_ignore


class RatingRepo(Repo):
    """One rating (three parts, weighted score, optional review) per learner and course."""

    async def get(self, learner_id: int, course_id: int) -> Rating | None:
        """The learner's rating of a course, or None."""
        stmt = select(Rating).where(Rating.learner_id == learner_id, Rating.course_id == course_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def upsert(
        self,
        learner_id: int,
        course_id: int,
        parts: tuple[int, int, int],
        score: float,
        when: datetime,
    ) -> bool:
        """Store or change a rating (the review is kept); True when it is a new rating."""
        content, instructor, interaction = parts
        values = dict(content=content, instructor=instructor, interaction=interaction, score=score)
        created = await insert_ignore(
            self.session,
            Rating,
            learner_id=learner_id,
            course_id=course_id,
            created_at=when,
            updated_at=when,
            **values,
        )
        if not created:
            await self.session.execute(
                update(Rating)
                .where(Rating.learner_id == learner_id, Rating.course_id == course_id)
                .values(updated_at=when, **values)
                .execution_options(synchronize_session=False)
            )
        return created

    async def set_review(self, learner_id: int, course_id: int, text: str, when: datetime) -> bool:
        """Attach a review to an existing rating; False when there is no rating."""
        result = await self.session.execute(
            update(Rating)
            .where(Rating.learner_id == learner_id, Rating.course_id == course_id)
            .values(review=text, updated_at=when)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount > 0

    async def summary(self, course_id: int) -> tuple[float | None, int]:
        """Average weighted score and number of ratings of a course."""
        stmt = select(func.avg(Rating.score), func.count()).where(
            Rating.course_id == course_id, Rating.score.is_not(None)
        )
        avg, count = (await self.session.execute(stmt)).one()
        return (float(avg) if avg is not None else None), int(count or 0)

    async def reviews(
        self, course_id: int, offset: int = 0, limit: int = 2
    ) -> tuple[list[tuple[Rating, str]], int]:
        """A page of a course's reviews, newest first, with reviewer names; and the total."""
        where = (Rating.course_id == course_id, Rating.review.is_not(None), Rating.review != "")
        total = await self.session.scalar(select(func.count()).select_from(Rating).where(*where))
        stmt = (
            select(Rating, Learner.display_name)
            .join(Learner, Learner.id == Rating.learner_id)
            .where(*where)
            .order_by(Rating.updated_at.desc(), Rating.id.desc())
            .offset(offset)
            .limit(limit)
        )
        rows = [(row[0], row[1] or "") for row in (await self.session.execute(stmt)).all()]
        return rows, int(total or 0)

    async def review_texts(self, course_ids: Sequence[int]) -> list[str]:
        """Every review text of some courses (for keywords)."""
        if not course_ids:
            return []
        stmt = select(Rating.review).where(
            Rating.course_id.in_(list(course_ids)), Rating.review.is_not(None)
        )
        return [text for text in (await self.session.execute(stmt)).scalars() if text]


class QuestionRepo(Repo):
    """Questions from learners, their answers, and the ones made public as FAQ."""

    async def add(
        self, learner_id: int, course_id: int | None, text: str, status: str, when: datetime
    ) -> Question:
        """Store a question."""
        return await self._insert(
            Question, learner_id=learner_id, course_id=course_id, text=text, status=status,
            created_at=when,
        )

    async def get(self, question_id: int) -> Question | None:
        """A question by id."""
        return await self.session.get(Question, question_id)

    async def count_since(self, learner_id: int, since: datetime) -> int:
        """How many questions a learner asked since a moment (for the rate limit)."""
        stmt = (
            select(func.count())
            .select_from(Question)
            .where(Question.learner_id == learner_id, Question.created_at >= since)
        )
        return int(await self.session.scalar(stmt) or 0)

    async def open_questions(
        self, course_ids: Sequence[int] | None, limit: int = 20
    ) -> list[tuple[Question, str]]:
        """Open questions (of some courses, or all when None), oldest first, with asker names."""
        stmt = (
            select(Question, Learner.display_name)
            .join(Learner, Learner.id == Question.learner_id)
            .where(Question.status == "open")
            .order_by(Question.id)
            .limit(limit)
        )
        if course_ids is not None:
            stmt = stmt.where(Question.course_id.in_(list(course_ids)))
        return [(row[0], row[1] or "") for row in (await self.session.execute(stmt)).all()]

    async def faq(self, course_id: int | None) -> list[Question]:
        """The public answered questions of a course (all courses' when None)."""
        stmt = select(Question).where(Question.is_faq.is_(True), Question.answer.is_not(None))
        if course_id is not None:
            stmt = stmt.where(Question.course_id == course_id)
        return list((await self.session.execute(stmt.order_by(Question.id))).scalars())

    async def courses_taught_by(self, learner_id: int) -> list[Course]:
        """The courses whose instructor is this learner."""
        stmt = select(Course).where(Course.instructor_learner_id == learner_id).order_by(Course.id)
        return list((await self.session.execute(stmt)).scalars())
