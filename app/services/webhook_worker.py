"""The delivery worker: sends the outbox's webhook deliveries after their change commits.

One thread per server process polls for due deliveries (and is woken by every commit that
enqueued some); a pool of sender threads posts them, at most one at a time per subscription,
each with its own timeout and a total deadline (deadline_http.py: a receiver trickling its
answer is cut off), so a slow endpoint delays neither the API nor other subscribers.
A delivery is leased before it is sent, so two processes never send it at once; a process
killed mid-send leaves a lease that expires, and the delivery is sent again (receivers dedupe
by the payload's `id`). Failures are retried with exponential backoff for
`webhook_retry_hours`, then marked failed; every attempt is recorded on the delivery.
"""

import json
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import event as sa_event
from sqlalchemy import or_, update
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from app.config import Settings
from app.db import get_engine, get_read_engine
from app.errors import AppError, logger
from app.models.base import utcnow
from app.models.webhook import DeliveryStatus, WebhookDelivery, WebhookSubscription
from app.services import deadline_http, webhooks

_WORKERS: "weakref.WeakSet[DeliveryWorker]" = weakref.WeakSet()


@sa_event.listens_for(OrmSession, "after_commit")
def _wake_on_commit(session: OrmSession) -> None:
    """A commit that enqueued deliveries wakes the workers: they send at once, not at the poll."""
    if session.info.pop(webhooks.ENQUEUED, False):
        for worker in list(_WORKERS):
            worker.wake()


@sa_event.listens_for(OrmSession, "after_rollback")
def _forget_on_rollback(session: OrmSession) -> None:
    session.info.pop(webhooks.ENQUEUED, None)


class DeliveryWorker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._busy: set[int] = set()  # subscriptions with a delivery being sent
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(settings.webhook_senders, thread_name_prefix="webhook")
        self._thread = threading.Thread(target=self._run, name="webhook-worker", daemon=True)
        self._next_scan = 0.0

    def start(self) -> None:
        _WORKERS.add(self)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)
        _WORKERS.discard(self)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception("webhook worker: tick failed")
            self._wake.wait(self.settings.webhook_poll_seconds)
            self._wake.clear()

    def tick(self) -> None:
        """Enqueue newly overdue issues (now and then), then hand due deliveries to senders."""
        url = self.settings.database_url
        if time.monotonic() >= self._next_scan:
            self._next_scan = time.monotonic() + self.settings.webhook_overdue_scan_seconds
            with Session(get_engine(url), expire_on_commit=False) as session:
                webhooks.enqueue_overdue(session)
        with self._lock:
            busy = set(self._busy)
        for delivery_id, subscription_id in claim_due(self.settings, busy):
            with self._lock:
                self._busy.add(subscription_id)
            self._pool.submit(self._send, delivery_id, subscription_id)

    def _send(self, delivery_id: int, subscription_id: int) -> None:
        try:
            send_one(self.settings, delivery_id)
        except Exception:
            logger.exception("webhook delivery %d failed unexpectedly", delivery_id)
        finally:
            with self._lock:
                self._busy.discard(subscription_id)
            self._wake.set()


def claim_due(settings: Settings, busy: set[int], limit: int = 200) -> list[tuple[int, int]]:
    """Lease the oldest due delivery of each subscription not being sent to; (id, sub) pairs."""
    now = utcnow()
    due = (
        select(WebhookDelivery.id, WebhookDelivery.subscription_id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            col(WebhookDelivery.next_attempt_at) <= now,
            or_(col(WebhookDelivery.lease_until).is_(None), col(WebhookDelivery.lease_until) < now),
        )
        .order_by(col(WebhookDelivery.id))
        .limit(limit)
    )
    with Session(get_read_engine(settings.database_url)) as reader:
        rows = reader.exec(due).all()
    firsts: dict[int, int] = {}
    for delivery_id, subscription_id in rows:
        if subscription_id not in busy and subscription_id not in firsts:
            firsts[subscription_id] = delivery_id or 0
    if not firsts:
        return []
    lease = now + timedelta(seconds=settings.webhook_deadline_seconds + 60)
    claimed = []
    with Session(get_engine(settings.database_url)) as session:
        for subscription_id, delivery_id in firsts.items():
            result = session.execute(
                update(WebhookDelivery)
                .where(
                    col(WebhookDelivery.id) == delivery_id,
                    col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                    or_(
                        col(WebhookDelivery.lease_until).is_(None),
                        col(WebhookDelivery.lease_until) < now,
                    ),
                )
                .values(lease_until=lease)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append((delivery_id, subscription_id))
        session.commit()
    return claimed


def send_one(settings: Settings, delivery_id: int) -> None:
    """POST one leased delivery and record the attempt (no database connection held while
    waiting for the receiver)."""
    with Session(get_read_engine(settings.database_url)) as reader:
        delivery = reader.get(WebhookDelivery, delivery_id)
        subscription = (
            reader.get(WebhookSubscription, delivery.subscription_id) if delivery else None
        )
        if delivery is None or subscription is None:
            return
        url, secret, payload, event = (
            subscription.url,
            subscription.secret,
            delivery.payload,
            delivery.event,
        )
    status_code, error = post(settings, url, secret, event, payload)
    record_attempt(settings, delivery_id, status_code, error)


def post(
    settings: Settings, url: str, secret: str, event: str, payload: dict[str, Any]
) -> tuple[int | None, str | None]:
    """(status code, error): error None only for a 2xx answer."""
    try:
        webhooks.check_url(url, settings)  # again: a name may resolve elsewhere by now
    except AppError as exc:
        return None, exc.detail
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Gridproof-Webhooks/1",
        "Gridproof-Event": event,
        "Gridproof-Delivery": str(payload.get("id", "")),
        webhooks.SIGNATURE_HEADER: webhooks.sign(secret, int(time.time()), body),
    }
    try:
        response = deadline_http.post(
            url,
            body,
            headers,
            timeout=settings.webhook_timeout_seconds,
            deadline=settings.webhook_deadline_seconds,
        )
    except (httpx.HTTPError, deadline_http.DeadlineExceeded) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"


def backoff(settings: Settings, attempts: int) -> timedelta:
    """Wait after the n-th failed attempt: base × 2^(n-1), at most webhook_retry_max_seconds."""
    seconds = settings.webhook_retry_base_seconds * 2 ** min(attempts - 1, 30)
    return timedelta(seconds=min(seconds, settings.webhook_retry_max_seconds))


def record_attempt(
    settings: Settings, delivery_id: int, status_code: int | None, error: str | None
) -> None:
    now = utcnow()
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return
        delivery.attempts += 1
        delivery.last_status_code = status_code
        delivery.last_error = error
        delivery.lease_until = None
        if error is None:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = now
        else:
            retry_at = now + backoff(settings, delivery.attempts)
            give_up_at = delivery.created_at + timedelta(hours=settings.webhook_retry_hours)
            if retry_at > give_up_at:
                delivery.status = DeliveryStatus.FAILED
            else:
                delivery.next_attempt_at = retry_at
            logger.warning(
                "webhook delivery %d attempt %d: %s", delivery_id, delivery.attempts, error
            )
        session.add(delivery)
        session.commit()


def run_forever(settings: Settings, until: threading.Event | None = None) -> None:
    """`gridproof webhooks run`: the worker in the foreground (until Ctrl-C)."""
    worker = DeliveryWorker(settings)
    worker.start()
    try:
        (until or threading.Event()).wait()
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
