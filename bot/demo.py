"""The demo catalog: real-looking bilingual courses for `coursebot demo` and `seed-demo`."""

from __future__ import annotations

import json
from pathlib import Path

CATALOG = Path(__file__).with_name("demo_catalog.json")


async def seed_demo(uow) -> int:
    """Load the demo catalog unless courses exist; returns the number of courses added."""
    if await uow.courses.all():
        return 0
    data = json.loads(CATALOG.read_text(encoding="utf-8"))
    categories = {}
    for position, cat in enumerate(data["categories"]):
        categories[cat["slug"]] = await uow.courses.add_category(position=position, **cat)
    for course in data["courses"]:
        await uow.courses.add(
            category_id=categories[course["category"]].id,
            title_zh=course["title_zh"],
            title_en=course["title_en"],
            description_zh=course["description_zh"],
            description_en=course["description_en"],
            instructor_name=course["instructor"],
            price_stars=course["stars"],
            price_fen=course["fen"],
        )
    await uow.commit()
    return len(data["courses"])
