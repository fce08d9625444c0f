"""The channel-neutral core: what comes in, what goes out, and dispatch between them."""

from __future__ import annotations

import asyncio
import base64
import functools
import html
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from sqlalchemy.exc import IntegrityError

from bot.group_commit import GroupCommit
from bot.parsing import check_numbers, safe_payment_facts

log = logging.getLogger(__name__)

Kind = Literal["command", "button", "text", "pre_checkout", "payment"]
MAX_PAYLOAD_BYTES = 64


def esc(value: object) -> str:
    """Escape user-supplied text for insertion into an HTML-formatted reply."""
    return html.escape(str(value), quote=False)


@dataclass(frozen=True)
class Button:
    """An inline button; `payload` is short (`buy:42`) and always re-checked."""

    label: str
    payload: str

    def __post_init__(self) -> None:
        if len(self.payload.encode()) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"button payload over {MAX_PAYLOAD_BYTES} bytes: {self.payload!r}")


@dataclass(frozen=True)
class Invoice:
    """A request for payment of one order."""

    title: str
    description: str
    payload: str
    currency: str
    amount: int
    label: str


@dataclass(frozen=True)
class Document:
    """A file sent as a document (CSV export, `/mydata` JSON): its name and bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class Recipient:
    """Where a reply goes when it is not the sender of the message."""

    channel: str
    user_ref: str


@dataclass
class Reply:
    """One message to render: HTML-subset text, button rows, optional image, document or
    invoice."""

    text: str = ""
    buttons: list[list[Button]] = field(default_factory=list)
    image: bytes | None = None
    invoice: Invoice | None = None
    to: Recipient | None = None
    document: Document | None = None
    #: Set by the sender on an announcement when TELEGRAM_PAID_BROADCAST is on: Telegram's
    #: allow_paid_broadcast (never stored: the row's broadcast decides).
    paid_broadcast: bool = field(default=False, compare=False, repr=False)
    #: Set by a durable dispatch: `<update_key>#<n>`, the stored reply the adapter ticks off
    #: once sent (`bot.core.settle_reply`).
    outbox_key: str | None = field(default=None, compare=False, repr=False)


def reply_to_body(reply: Reply) -> dict:
    """A reply as JSON-able data for the outbox: text, buttons, image, document, invoice."""
    body: dict = {"text": reply.text}
    if reply.buttons:
        body["buttons"] = [
            [{"label": b.label, "payload": b.payload} for b in row] for row in reply.buttons
        ]
    if reply.image is not None:
        body["image"] = base64.b64encode(reply.image).decode("ascii")
    if reply.document is not None:
        body["document"] = {
            "filename": reply.document.filename,
            "data": base64.b64encode(reply.document.data).decode("ascii"),
        }
    if reply.invoice is not None:
        body["invoice"] = asdict(reply.invoice)
    return body


def reply_from_body(body: dict) -> Reply:
    """The reply stored in an outbox row."""
    rows = [[Button(b["label"], b["payload"]) for b in row] for row in body.get("buttons", [])]
    image = base64.b64decode(body["image"]) if body.get("image") else None
    invoice = Invoice(**body["invoice"]) if body.get("invoice") else None
    stored = body.get("document")
    document = Document(stored["filename"], base64.b64decode(stored["data"])) if stored else None
    return Reply(body.get("text", ""), rows, image=image, invoice=invoice, document=document)


@dataclass(frozen=True)
class PreCheckoutAnswer:
    """The answer to a pre-checkout query."""

    ok: bool
    error: str = ""


@dataclass(frozen=True)
class PaymentInfo:
    """Payment facts of a pre-checkout query or a successful payment."""

    currency: str
    amount: int
    invoice_payload: str
    charge_id: str = ""
    provider: str = ""
    query_id: str = ""


@dataclass(frozen=True)
class Incoming:
    """One update from any channel, in channel-neutral form."""

    channel: str
    user_ref: str
    update_key: str
    kind: Kind
    command: str = ""
    args: str = ""
    payload: str = ""
    text: str = ""
    locale: str | None = None
    display_name: str = ""
    payment: PaymentInfo | None = None
    reply_to: str | None = None
    reply_to_text: str | None = None
    #: A picture the user sent (its largest size), with `text` as its caption.
    image: bytes | None = None


Output = Reply | PreCheckoutAnswer


class ChannelError(Exception):
    """A send that failed for a reason the sender should retry later."""


class Unreachable(ChannelError):
    """The user blocked the bot or left: stop sending to them."""


class RateLimited(ChannelError):
    """The platform asked us to wait `retry_after` seconds."""

    def __init__(self, retry_after: float, message: str = "rate limited") -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RejectedMessage(ChannelError):
    """The platform refused this message (bad request): retrying will not help."""


class Unauthorized(ChannelError):
    """The platform refused our credentials (401): nothing will be delivered until fixed."""


class Channel(Protocol):
    """What every channel adapter offers the core and the sender."""

    name: str

    async def send(self, user_ref: str, reply: Reply) -> None:
        """Deliver one reply to one user; raise a ChannelError subclass on failure."""

    async def refund(self, user_ref: str, charge_id: str) -> None:
        """Give a payment back; raise ChannelError on failure."""


class Channels:
    """The configured channels by name."""

    def __init__(self, channels: Iterable[Channel] = ()) -> None:
        self._by_name: dict[str, Channel] = {c.name: c for c in channels}

    def add(self, channel: Channel) -> None:
        """Register a channel (replacing one of the same name)."""
        self._by_name[channel.name] = channel

    def get(self, name: str) -> Channel:
        """The channel called `name`; KeyError when not configured."""
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        """Names of all configured channels."""
        return list(self._by_name)

    async def refund(self, channel: str, user_ref: str, charge_id: str) -> None:
        """Refund a payment through the channel that took it."""
        await self.get(channel).refund(user_ref, charge_id)


class Clock(Protocol):
    """Where handlers and jobs read the time; tests inject a fixed one."""

    def now(self) -> datetime:
        """The current time, UTC-aware."""


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """The current time, UTC-aware."""
        return datetime.now(UTC)


Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    """A handler and whether only admins may reach it."""

    handler: Handler
    admin: bool = False


class Router:
    """The routes of one feature module: commands, button prefixes, update kinds."""

    def __init__(self) -> None:
        self.commands: dict[str, Route] = {}
        self.buttons: dict[str, Route] = {}
        self.kinds: dict[str, Route] = {}
        self.steps: dict[str, Route] = {}
        self.help: list[tuple[str, bool]] = []
        #: Every command word (aliases such as `评分` included) → the command's name (`rate`).
        self.names: dict[str, str] = {}

    def command(
        self, name: str, *aliases: str, admin: bool = False
    ) -> Callable[[Handler], Handler]:
        """Route `/name` (and plain-word aliases such as `课程`) to the handler."""

        def register(handler: Handler) -> Handler:
            for word in (name, *aliases):
                self.commands[word.lower()] = Route(handler, admin)
                self.names[word.lower()] = name
            self.help.append((name, admin))
            return handler

        return register

    def button(self, prefix: str, admin: bool = False) -> Callable[[Handler], Handler]:
        """Route button payloads `prefix:…` to the handler."""

        def register(handler: Handler) -> Handler:
            self.buttons[prefix] = Route(handler, admin)
            return handler

        return register

    def step(self, name: str) -> Callable[[Handler], Handler]:
        """Route the learner's next plain text to the handler while step `name` is pending."""

        def register(handler: Handler) -> Handler:
            self.steps[name] = Route(handler)
            return handler

        return register

    def on(self, kind: Kind | Literal["unknown"]) -> Callable[[Handler], Handler]:
        """Route a kind of update (`text`, `pre_checkout`, `payment`) to the handler."""

        def register(handler: Handler) -> Handler:
            self.kinds[kind] = Route(handler)
            return handler

        return register


def merge_routers(routers: Iterable[Router]) -> Router:
    """One router holding every route; a name routed twice is a programming error."""
    merged = Router()
    for router in routers:
        for table in ("commands", "buttons", "kinds", "steps"):
            target, source = getattr(merged, table), getattr(router, table)
            clash = set(target) & set(source)
            if clash:
                raise ValueError(f"{table} routed twice: {sorted(clash)}")
            target.update(source)
        merged.help.extend(router.help)
        merged.names.update(router.names)
    return merged


def step_key(learner_id: int) -> str:
    """The key-value key holding a learner's pending conversation step."""
    return f"step:{learner_id}"


async def expect_text(uow, learner_id: int, step: str, **data: Any) -> None:
    """Route this learner's next plain text to the handler registered for `step`."""
    await uow.kv.put(step_key(learner_id), {"step": step, **data})


def _as_outputs(result: Any) -> list[Output]:
    if result is None:
        return []
    if isinstance(result, Reply | PreCheckoutAnswer):
        return [result]
    return list(result)


@functools.lru_cache(maxsize=1024)
def parameter_names(handler: Handler) -> tuple[str, ...]:
    """The names of a handler's parameters (read once per handler: `inspect` is slow)."""
    return tuple(inspect.signature(handler).parameters)


async def call_with_deps(handler: Handler, deps: dict[str, Any]) -> Any:
    """Call `handler`, passing each dependency it names as a parameter (hooks too)."""
    params = parameter_names(handler)
    missing = [name for name in params if name not in deps]
    if missing:
        raise TypeError(f"{handler.__qualname__} asks for unknown dependencies {missing}")
    return await handler(**{name: deps[name] for name in params})


#: What the dispatcher gives every handler besides the process-wide dependencies.
PER_MESSAGE = ("msg", "uow", "learner", "t", "step", "deps")


class DependencyError(TypeError):
    """A handler names a dependency nobody provides (a programming error found at start-up)."""


def check_dependencies(router: Router, available: Iterable[str]) -> None:
    """Fail now, not when a user first reaches it, if a handler asks for an unknown name."""
    known = set(available) | set(PER_MESSAGE)
    problems = []
    for table in ("commands", "buttons", "kinds", "steps"):
        for key, route in getattr(router, table).items():
            unknown = sorted(set(parameter_names(route.handler)) - known)
            if unknown:
                problems.append(f"{route.handler.__qualname__} ({table[:-1]} {key!r}): {unknown}")
    if problems:
        raise DependencyError(
            "handlers ask for unknown dependencies — "
            + "; ".join(sorted(set(problems)))
            + f". Known: {', '.join(sorted(known))}"
        )


class Dispatcher:
    """Dedupe by update key, resolve the learner, run one handler in one unit of work."""

    def __init__(
        self,
        router: Router,
        uow_factory: Callable[[], Any],
        deps: dict[str, Any],
        group_commit: bool = False,
    ):
        check_dependencies(router, deps)
        self.router = router
        self.uow_factory = uow_factory
        self.deps = deps
        self.settings = deps["settings"]
        #: On SQLite (one writer at a time), durable learner updates dispatched at the same time
        #: and the settles of replies sent at the same time share a transaction
        #: (`bot.group_commit`).
        self.writes: GroupCommit | None = None
        if group_commit:
            self.writes = GroupCommit(self._run_group, self._run_write)

    def as_command(self, msg: Incoming) -> Incoming:
        """Plain text starting with a command word (`课程`, `search python`) becomes a command."""
        if msg.kind != "text" or not msg.text.strip():
            return msg
        word, _, rest = msg.text.strip().partition(" ")
        if word.lower() not in self.router.commands:
            return msg
        return replace(msg, kind="command", command=word.lower(), args=rest.strip())

    async def route_for(
        self, msg: Incoming, uow, learner, step_pending: bool = True
    ) -> tuple[Incoming, Route | None, dict]:
        """The update as routed (alias words made commands), its route (or None), step data.

        Any update but a payment or pre-checkout clears the learner's pending step. Plain text
        goes to that step even when it starts with a command word (`推荐…`, `help …`); only a
        real `/command` (an update of kind "command") leaves the step for the command.
        `step_pending=False` (none was stored, read with the learner) skips the look.
        """
        step = (
            await uow.kv.pop(step_key(learner.id))
            if step_pending and msg.kind not in ("payment", "pre_checkout")
            else None
        )
        if msg.kind == "text" and step and step.get("step") in self.router.steps:
            return msg, self.router.steps[step["step"]], step
        msg = self.as_command(msg)
        if msg.kind == "command":
            return msg, self.router.commands.get(msg.command.lower()), {}
        if msg.kind == "button":
            return msg, self.router.buttons.get(msg.payload.split(":", 1)[0]), {}
        return msg, self.router.kinds.get(msg.kind), {}

    async def dispatch(self, msg: Incoming, durable: bool = False) -> list[Output]:
        """Handle one update exactly once; returns what to send back to the sender.

        `durable=True` (adapters that settle replies, see `settle_reply`): the replies are
        stored in the same transaction as the update's inbox row (`InboxRepo.keep_replies`)
        and ticked off one by one after each send; a redelivered update returns the replies of
        its first run not yet ticked off, never one that was. A crash between commit and send
        thus loses nothing (the platform redelivers: updates are confirmed only after their
        replies went out, or kept in the durable update queue). The one window left is a crash
        between a send and its tick: Telegram's sendMessage is not idempotent, so that reply
        may come twice. On SQLite a durable learner update may share its transaction with
        others dispatched at the same time (`self.writes`); it is committed all the same
        before this returns.
        """
        if durable and self.writes is not None and self._groupable(msg):
            return await self.writes.submit(msg)
        return await self._dispatch_alone(msg, durable)

    def _groupable(self, msg: Incoming) -> bool:
        """A learner's command, button or text: a payment (whose handler may refund) and an
        admin's update (some call the platform before they write) run alone, so a group
        that fails and runs again never repeats a platform call."""
        return msg.kind in ("command", "button", "text") and not self.settings.is_admin(
            msg.channel, msg.user_ref
        )

    async def _dispatch_alone(self, msg: Incoming, durable: bool) -> list[Output]:
        for attempt in (1, 2):
            try:
                return await self._run_once(msg, durable)
            except IntegrityError:
                # A concurrent writer won a unique race (same payment, same learner); the
                # second run sees its row and answers from it.
                if attempt == 2:
                    raise
                log.info("retrying %s after a unique conflict", msg.update_key)
        return []

    async def _run_once(self, msg: Incoming, durable: bool = False) -> list[Output]:
        async with self.uow_factory() as uow:
            # A pre-checkout query only reads (it is answered again if it comes again), so it
            # never waits for a writer: its deadline is seconds.
            if msg.kind == "pre_checkout":
                await uow.read_only()
            outputs = await self._run_in(uow, msg, durable)
            await uow.commit()
            return outputs

    async def _run_group(self, items: Sequence[Incoming | Settlement]) -> list:
        """Durable updates and settles one after another in one transaction, as each would run
        alone; any handler's failure raises (rolling all of them back) for them to run alone."""
        now = self._now()
        async with self.uow_factory() as uow:
            results: list = []
            for item in items:
                if isinstance(item, Settlement):
                    results.append(await _settle_in(uow, item, now))
                    continue
                results.append(await self._run_in(uow, item, True, alone=False))
                # SQLite runs on this thread: let a pre-checkout answer (read-only, its
                # deadline is seconds) and the sends in between, not after the whole group
                await asyncio.sleep(0)
            await uow.commit()
            return results

    async def _run_write(self, item: Incoming | Settlement):
        """One item of a failed group, alone."""
        if isinstance(item, Settlement):
            return await self._settle_one(item)
        return await self._dispatch_alone(item, durable=True)

    async def _run_in(self, uow, msg: Incoming, durable: bool, alone: bool = True):
        """One update inside `uow`: recorded in the inbox (a redelivery answers from it), then
        handled; the caller commits."""
        if msg.kind != "pre_checkout" and not await uow.inbox.record(msg.update_key):
            if not durable:
                log.info("dropped redelivered update %s", msg.update_key)
                return []
            unsent = await self._unsent_replies(uow, msg)
            log.info("redelivered update %s: %s reply(ies) to resend", msg.update_key, len(unsent))
            return unsent
        outputs = await self._handle(msg, uow, alone)
        if durable:
            outputs = await self._store_replies(uow, msg, outputs)
        return outputs

    async def _store_replies(self, uow, msg: Incoming, outputs: list[Output]) -> list[Output]:
        stored: list[Output] = []
        kept: list[dict] = []
        for output in outputs:
            if not isinstance(output, Reply):
                stored.append(output)
                continue
            target = output.to or Recipient(msg.channel, msg.user_ref)
            stored.append(replace(output, outbox_key=f"{msg.update_key}#{len(kept)}"))
            kept.append(
                {
                    "channel": target.channel,
                    "user_ref": target.user_ref,
                    "body": reply_to_body(output),
                }
            )
        await uow.inbox.keep_replies(msg.update_key, kept)
        return stored

    async def _unsent_replies(self, uow, msg: Incoming) -> list[Output]:
        out: list[Output] = []
        for n, row in await uow.inbox.unsent_replies(msg.update_key):
            reply = reply_from_body(row["body"])
            to = Recipient(row["channel"], row["user_ref"])
            out.append(replace(reply, to=to, outbox_key=f"{msg.update_key}#{n}"))
        return out

    def _now(self) -> datetime:
        clock = self.deps.get("clock")
        return clock.now() if clock is not None else datetime.now(UTC)

    async def _handle(self, msg: Incoming, uow, alone: bool = True) -> list[Output]:
        from bot.i18n import translator_for

        if msg.payment is not None:
            amount, payload = safe_payment_facts(msg.payment.amount, msg.payment.invoice_payload)
            if (amount, payload) != (msg.payment.amount, msg.payment.invoice_payload):
                log.warning("payment facts of %s made storable", msg.update_key)
                msg = replace(
                    msg, payment=replace(msg.payment, amount=amount, invoice_payload=payload)
                )

        learner, step_pending = await uow.learners.resolve_keyed(
            msg.channel,
            msg.user_ref,
            msg.display_name,
            msg.locale,
            self.settings,
            step_key(""),
            touch=msg.kind != "pre_checkout",
        )
        t = translator_for(
            learner.locale or self.settings.default_locale, self.settings, learner.timezone
        )
        msg, route, step = await self.route_for(msg, uow, learner, step_pending)
        if route is None:
            route = self.router.kinds.get("unknown")
        if route is None:
            return []
        if route.admin and not self.settings.is_admin(msg.channel, msg.user_ref):
            log.warning("refused admin route to %s:%s", msg.channel, msg.user_ref)
            return [Reply(t("admin.refused"))]
        command = self.router.names.get(msg.command.lower(), msg.command)
        refusal = check_numbers(msg.kind, command, msg.args, msg.payload)
        if refusal is not None and not step:
            log.info("refused %s %r: not a number we accept", msg.kind, msg.command or "button")
            try:
                return [Reply(t(refusal, zone=self.settings.timezone))]
            except (KeyError, IndexError):  # a usage line that needs more than the zone
                return [Reply(t("error.generic"))]
        deps = {**self.deps, "msg": msg, "uow": uow, "learner": learner, "t": t, "step": step}
        deps["deps"] = deps  # for wrappers that call another handler (questions, coupons)
        try:
            outputs = _as_outputs(await call_with_deps(route.handler, deps))
        except IntegrityError:
            raise
        except Exception:
            if not alone:  # the group is rolled back; alone, this update gets its apology
                raise
            log.exception("handler %s failed on %s", route.handler.__qualname__, msg.kind)
            await uow.rollback()
            # The rollback dropped the inbox row too: record it again, with the apology.
            if msg.kind != "pre_checkout":
                await uow.inbox.record(msg.update_key)
            return self._failure(msg, t)
        return outputs

    async def aclose(self) -> None:
        """Let the group at hand commit (before the engine is closed)."""
        if self.writes is not None:
            await self.writes.aclose()

    async def _settle_one(self, settlement: Settlement) -> None:
        async with self.uow_factory() as uow:
            await _settle_in(uow, settlement, self._now())
            await uow.commit()

    @staticmethod
    def _failure(msg: Incoming, t: Callable[..., str]) -> list[Output]:
        if msg.kind == "pre_checkout":
            return [PreCheckoutAnswer(False, t("error.generic"))]
        return [Reply(t("error.generic"))]


@dataclass(frozen=True)
class Settlement:
    """How the send of one durable reply ended (see `settle_reply`)."""

    reply: Reply
    status: str
    retry_after: float | None = None
    recipient: Recipient | None = None


async def settle_reply(
    app,
    reply: Reply,
    status: str,
    error: str | None = None,
    retry_after: float | None = None,
    recipient: Recipient | None = None,
) -> None:
    """After a send of a durable reply: tick it off (status 'sent', 'failed', 'unreachable'),
    or with 'pending' hand it to the outbox sender (due after `retry_after`), in one
    transaction, so it is neither lost nor sent twice. On SQLite the settles of replies sent
    at the same time share one transaction, with the updates dispatched then
    (`Dispatcher.writes`)."""
    if reply.outbox_key is None:
        return
    settlement = Settlement(reply, status, retry_after, recipient)
    group = app.dispatcher.writes
    if group is not None:
        await group.submit(settlement)
    else:
        await app.dispatcher._settle_one(settlement)


async def _settle_in(uow, settlement: Settlement, now: datetime) -> None:
    from datetime import timedelta

    from services.outbox import Outgoing, enqueue

    reply, recipient = settlement.reply, settlement.recipient
    update_key, _, position = reply.outbox_key.rpartition("#")
    if settlement.status == "pending" and recipient is not None:
        message = Outgoing(
            recipient.channel,
            recipient.user_ref,
            replace(reply, to=None, outbox_key=None),
            "reply",
            dedupe_key=f"reply:{reply.outbox_key}"[:160],
            not_before=now + timedelta(seconds=settlement.retry_after or 0),
        )
        await enqueue(uow, message, now)
    await uow.inbox.reply_done(update_key, int(position))


def numbered_text(reply: Reply, strip: Callable[[str], str]) -> tuple[str, list[Button]]:
    """Render a reply for channels without buttons: text plus numbered options."""
    options = [button for row in reply.buttons for button in row]
    lines = [strip(reply.text)] if reply.text else []
    lines += [f"{n}. {strip(button.label)}" for n, button in enumerate(options, start=1)]
    return "\n".join(lines), options
