"""The recommender retrains on a schedule and once enough new interactions have arrived."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from bot.bootstrap import build_app
from bot.demo import seed_demo
from scheduler import jobs
from scheduler.service import RETRAIN_NIGHTLY_ID, RETRAIN_THRESHOLD_ID, SchedulerService
from tests.conftest import make_settings

TASTES = ((1, 2, 3), (4, 5, 6), (7, 8, 9))


async def retrain_app(url, clock, tmp_path, **overrides):
    """An app with its own model file and the jobs bound to it."""
    settings = make_settings(
        url, recommender_model_path=str(tmp_path / "model.npz"), **overrides
    )
    app = await build_app(settings, clock=clock)
    async with app.uow() as uow:
        await seed_demo(uow)
    jobs.bind(app)
    return app


async def add_purchases(app, learners: range) -> int:
    """Each learner buys the courses of one taste group; returns interactions added."""
    added = 0
    async with app.uow() as uow:
        for n in learners:
            learner = await uow.learners.resolve("telegram", str(n), f"L{n}", "zh", app.settings)
            for course_id in TASTES[n % len(TASTES)]:
                await uow.interactions.add(learner.id, course_id, "purchase", when=app.clock.now())
                added += 1
        await uow.commit()
    return added


async def test_retrains_only_when_enough_new_interactions_arrived(db_url, clock, tmp_path):
    app = await retrain_app(db_url, clock, tmp_path, recommender_retrain_new_interactions=40)
    recommender = app.deps["recommender"]
    try:
        assert await add_purchases(app, range(1, 11)) == 30
        assert await jobs.retrain_if_due() is None
        assert recommender.model is None

        await add_purchases(app, range(11, 21))
        result = await jobs.retrain_if_due()
        assert result is not None and result["ok"], result
        assert recommender.model is not None and recommender.model.knows(1)
        assert (tmp_path / "model.npz").exists()
        async with app.uow() as uow:
            mark = await uow.kv.get(jobs.RETRAIN_MARK)
            assert mark["interaction_id"] == await uow.interactions.newest_id()

        assert await jobs.retrain_if_due() is None, "nothing new since the last training"
        assert await jobs.retrain_recommender() is None, "the nightly run skips an idle day"
        await add_purchases(app, range(21, 22))
        assert (await jobs.retrain_recommender())["ok"], "the nightly run takes any news"
    finally:
        await app.close()


async def test_failed_retraining_keeps_the_mark_and_the_served_model(sqlite_url, clock, tmp_path):
    app = await retrain_app(sqlite_url, clock, tmp_path, recommender_retrain_new_interactions=1)
    recommender = app.deps["recommender"]
    try:
        await add_purchases(app, range(1, 16))
        assert (await jobs.retrain_if_due())["ok"]
        served = recommender.model
        await add_purchases(app, range(16, 17))
        async with app.uow() as uow:
            mark = await uow.kv.get(jobs.RETRAIN_MARK)
        recommender.train = lambda *a, **k: {"ok": False, "error": "boom"}
        assert (await jobs.retrain_if_due())["ok"] is False
        assert recommender.model is served
        async with app.uow() as uow:
            assert await uow.kv.get(jobs.RETRAIN_MARK) == mark
    finally:
        await app.close()


async def test_scheduler_holds_the_retraining_jobs_and_drops_them_when_off(
    sqlite_url, clock, tmp_path
):
    app = await retrain_app(sqlite_url, clock, tmp_path, recommender_retrain_cron="30 2 * * *")
    service = SchedulerService(app)
    await service.start()
    try:
        nightly = service.scheduler.get_job(RETRAIN_NIGHTLY_ID)
        local = nightly.next_run_time.astimezone(ZoneInfo("Asia/Shanghai"))
        assert (local.hour, local.minute) == (2, 30), "the crontab is read in TIMEZONE"
        assert service.scheduler.get_job(RETRAIN_THRESHOLD_ID) is not None
        await service.sync()
        assert service.scheduler.get_job(RETRAIN_NIGHTLY_ID), "syncing sessions keeps these jobs"
    finally:
        await service.stop()
        await app.close()

    app = await retrain_app(
        sqlite_url,
        clock,
        tmp_path,
        recommender_retrain_cron="",
        recommender_retrain_new_interactions=0,
    )
    service = SchedulerService(app)
    await service.start()
    try:
        assert service.scheduler.get_job(RETRAIN_NIGHTLY_ID) is None
        assert service.scheduler.get_job(RETRAIN_THRESHOLD_ID) is None
    finally:
        await service.stop()
        await app.close()


async def test_the_scheduler_alone_refreshes_the_wechat_token_and_queries_orders(
    sqlite_url, clock, tmp_path
):
    """WeChat upkeep jobs exist only in the scheduler role and only when WeChat is set up."""
    from scheduler.service import WECHAT_TOKEN_ID, WECHATPAY_QUERY_ID

    for configured in (True, False):
        wechat = dict(wechat_token="tok", wechat_app_id="wx123") if configured else {}
        app = await retrain_app(sqlite_url, clock, tmp_path, **wechat)
        service = SchedulerService(app)
        await service.start()
        try:
            for job_id in (WECHAT_TOKEN_ID, WECHATPAY_QUERY_ID):
                assert (service.scheduler.get_job(job_id) is not None) is configured
        finally:
            await service.stop()
            await app.close()
