"""Scheduled jobs: importable module-level coroutines that take ids only.

APScheduler stores `scheduler.jobs:<name>` and the ids; the running process binds its app here
with `bind(app)` before the scheduler starts.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from services.announcements import start_broadcast
from services.live import send_due_notices

log = logging.getLogger(__name__)

#: The kv key holding the newest interaction id the served model was trained on.
RETRAIN_MARK = "recommender.trained"

#: How early a job may run before its notices' due time and still send them (clock skew).
EARLY = timedelta(seconds=2)

_BOUND: dict[str, object] = {}


def bind(app) -> None:
    """Make `app` the one the jobs of this process run against."""
    _BOUND["app"] = app
    _BOUND["retrain_lock"] = asyncio.Lock()


def current_app():
    """The app bound by `bind`; RuntimeError when none is."""
    app = _BOUND.get("app")
    if app is None:
        raise RuntimeError("no app bound: call scheduler.jobs.bind(app) first")
    return app


def _wake_sender(app) -> None:
    sender = getattr(app, "sender", None)
    if sender is not None:
        sender.wake()


def grace(settings) -> timedelta:
    """How late a job may run and still send (misfire grace)."""
    return timedelta(seconds=settings.scheduler_misfire_grace_seconds)


async def session_notice(session_id: int, kind: str) -> int:
    """Send one kind of notice of one session to its learners; a second run sends nothing.

    `services.live.send_due_notices` claims the notices atomically and writes the outbox rows
    in this job's transaction; notices more than the misfire grace late are marked missed.
    """
    app = current_app()
    settings, now = app.settings, app.clock.now()
    async with app.uow() as uow:
        run = await send_due_notices(
            uow, settings, now, session_id, kind, early=EARLY, grace=grace(settings)
        )
        await uow.commit()
    if not run.skipped:
        log.info(
            "notice %s of session %s: %s claimed, %s queued",
            kind, session_id, run.claimed, run.queued,
        )
    if run.queued:
        _wake_sender(app)
    return run.queued


async def scheduled_broadcast(broadcast_id: int) -> bool:
    """Fan out a scheduled announcement (once, however often this runs)."""
    app = current_app()
    async with app.uow() as uow:
        started = await start_broadcast(uow, broadcast_id, app.settings, app.clock.now())
        await uow.commit()
    if started:
        log.info("announcement #%s fanned out", broadcast_id)
        _wake_sender(app)
    return started


async def mark_missed() -> int:
    """Mark notices more than the misfire grace late as missed."""
    app = current_app()
    async with app.uow() as uow:
        missed = await uow.reminders.mark_missed(app.clock.now() - grace(app.settings))
        await uow.commit()
    if missed:
        log.warning("%s reminders were more than the grace time late: marked missed", missed)
    return missed


async def retrain_recommender() -> dict | None:
    """Retrain the recommender when anything new arrived since the last training (nightly)."""
    return await _retrain(current_app(), min_new=1)


async def retrain_if_due() -> dict | None:
    """Retrain once RECOMMENDER_RETRAIN_NEW_INTERACTIONS new interactions have arrived."""
    app = current_app()
    return await _retrain(app, min_new=max(1, app.settings.recommender_retrain_new_interactions))


async def _retrain(app, min_new: int) -> dict | None:
    """Train in a worker thread on every interaction; None when not due or no recommender."""
    from services.recommendations import training_data

    recommender = app.deps.get("recommender")
    if recommender is None:
        return None
    async with _BOUND["retrain_lock"]:
        async with app.uow() as uow:
            mark = await uow.kv.get(RETRAIN_MARK) or {}
            fresh = await uow.interactions.count_after(mark.get("interaction_id", 0))
            if fresh < min_new:
                return None
            newest = await uow.interactions.newest_id()
            interactions, catalog = await training_data(uow)
        result = await asyncio.to_thread(recommender.train, interactions, catalog)
        if not result["ok"]:
            log.warning("scheduled retraining failed (%s); serving the previous model", result)
            return result
        async with app.uow() as uow:
            trained_at = app.clock.now().isoformat()
            await uow.kv.put(RETRAIN_MARK, {"interaction_id": newest, "at": trained_at})
            await uow.commit()
    log.info("recommender retrained on %s new interactions: %s", fresh, result)
    return result
