"""What the recommender reads from storage: the catalog as CourseInfo, interactions in bulk."""

from __future__ import annotations

from recommender.entities import CourseInfo
from recommender.signals import Interaction


def course_info(course) -> CourseInfo:
    """A stored course as the recommender sees it."""
    return CourseInfo(
        id=course.id,
        category=course.category.slug,
        category_name_zh=course.category.name_zh,
        category_name_en=course.category.name_en,
        title_zh=course.title_zh,
        title_en=course.title_en,
        description_zh=course.description_zh,
        description_en=course.description_en,
        active=course.active,
        created_at=course.created_at,
    )


def info_from_row(row) -> CourseInfo:
    """A course row of `CourseRepo.infos` / `newest_in` as the recommender sees it."""
    return CourseInfo(
        id=row.id,
        category=row.category,
        category_name_zh=row.category_name_zh,
        category_name_en=row.category_name_en,
        title_zh=row.title_zh,
        title_en=row.title_en,
        description_zh=row.description_zh,
        description_en=row.description_en,
        active=row.active,
        created_at=row.created_at,
    )


def interaction(row) -> Interaction:
    """A stored interaction as the recommender sees it."""
    return Interaction(row.learner_id, row.course_id, row.kind, row.value, row.created_at)


async def training_data(uow) -> tuple[list[Interaction], list[CourseInfo]]:
    """Every interaction with a course, and the whole catalog, read in bulk."""
    rows = await uow.interactions.all()
    catalog = [course_info(c) for c in await uow.courses.all()]
    return [interaction(r) for r in rows if r.course_id is not None], catalog
