"""The /stats chart reaches an admin through the real aiogram channel as a photo."""

from __future__ import annotations

from tests.conftest import ADMIN_TG
from tests.handlers.test_analytics import check_png
from tests.services.test_stats import build_dataset


async def test_the_stats_chart_is_a_photo_on_telegram(telegram_app, tg, clock):
    await build_dataset(telegram_app, clock.now())
    admin = tg.user(ADMIN_TG, language_code="en")
    await admin.send("/stats 90d")
    text = await tg.wait_for_message(
        admin.id, lambda m: "Figures" in (m.get("text") or ""), timeout=20
    )
    assert "Repurchase rate: 50.0% (2/4)" in text["text"]
    photo = await tg.wait_for_message(admin.id, lambda m: "photo" in m, timeout=20)
    assert "Revenue, buyers" in photo["caption"]
    sent = tg.files[photo["photo"][0]["file_id"]]
    assert photo["photo"][0]["width"] >= 800
    check_png(sent.data)
