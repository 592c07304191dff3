"""Webhooks: subscriptions, and the outbox rows written in the transaction of each change.

Every change of an issue passes `audit.append_event`, which calls `enqueue_for_event`: a
delivery row per matching subscription joins the change's transaction, so a change that rolls
back leaves none and one that commits is never lost. `overdue` is derived from the clock, not
written by a change: `enqueue_overdue` (run by the delivery worker) adds those. The worker
(app/services/webhook_worker.py) sends them after commit.
"""

import hashlib
import hmac
import ipaddress
import secrets
import socket
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import NotFound, ValidationFailed
from app.models import Issue, IssueEvent, OrgUnit, Photo, User
from app.models.base import utcnow
from app.models.issue import IssueStatus
from app.models.webhook import (
    DeliveryPublic,
    DeliveryStatus,
    SubscriptionCreate,
    SubscriptionPublic,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from app.services import orgs

SIGNATURE_HEADER = "Gridproof-Signature"
# Read by the worker after a commit that enqueued something (see webhook_worker.wake_on_commit).
ENQUEUED = "webhooks_enqueued"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The Gridproof-Signature header: t=<unix seconds>,v1=HMAC-SHA256(secret, "t.body")."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


# --- URLs --------------------------------------------------------------------------------


def check_url(url: str, settings: Settings) -> None:
    """422 unless http(s) to a public address (private ones only if the setting allows)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("订阅地址必须是 http(s) URL", field="url")
    if settings.webhook_allow_private:
        return
    for address in _addresses(parts.hostname, parts.port):
        if not address.is_global or address.is_multicast:
            raise ValidationFailed(f"订阅地址指向内网地址 {address}，不允许", field="url")


def _addresses(host: str, port: int | None) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except OSError:
        raise ValidationFailed(f"无法解析主机 {host!r}", field="url") from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]


# --- Subscriptions -------------------------------------------------------------------------


def create_subscription(
    session: Session, settings: Settings, admin: User | None, request: SubscriptionCreate
) -> SubscriptionPublic:
    url = str(request.url)
    check_url(url, settings)
    unit = orgs.by_code(session, request.org_unit) if request.org_unit else None
    subscription = WebhookSubscription(
        url=url,
        secret=request.secret or secrets.token_urlsafe(32),
        events=sorted({e.value for e in request.events}),
        org_unit_id=unit.id if unit else None,
        categories=sorted(set(request.categories)),
        created_by_id=admin.id if admin else None,
    )
    session.add(subscription)
    session.commit()
    return subscription_public(session, subscription, with_secret=True)


def subscription_public(
    session: Session, subscription: WebhookSubscription, with_secret: bool = False
) -> SubscriptionPublic:
    unit = session.get(OrgUnit, subscription.org_unit_id) if subscription.org_unit_id else None
    assert subscription.id is not None
    return SubscriptionPublic(
        id=subscription.id,
        url=subscription.url,
        events=subscription.events,
        org_unit=unit.code if unit else None,
        categories=subscription.categories,
        active=subscription.active,
        created_at=subscription.created_at,
        secret=subscription.secret if with_secret else None,
    )


def list_subscriptions(session: Session) -> list[SubscriptionPublic]:
    rows = session.exec(select(WebhookSubscription).order_by(col(WebhookSubscription.id)))
    return [subscription_public(session, s) for s in rows]


def get_subscription(session: Session, subscription_id: int) -> WebhookSubscription:
    subscription = session.get(WebhookSubscription, subscription_id)
    if subscription is None:
        raise NotFound(f"没有订阅 {subscription_id}")
    return subscription


def deactivate(session: Session, subscription_id: int) -> None:
    """No further deliveries are enqueued; pending ones are still sent (the log is kept)."""
    subscription = get_subscription(session, subscription_id)
    subscription.active = False
    session.add(subscription)
    session.commit()


def deliveries(
    session: Session, subscription_id: int, status: DeliveryStatus | None, limit: int
) -> list[DeliveryPublic]:
    """The subscription's delivery log, newest first."""
    get_subscription(session, subscription_id)
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    rows = session.exec(query.order_by(col(WebhookDelivery.id).desc()).limit(limit))
    return [DeliveryPublic.model_validate(row, from_attributes=True) for row in rows]


# --- The outbox ----------------------------------------------------------------------------


def enqueue_for_event(session: Session, issue: Issue, event: IssueEvent) -> None:
    """Outbox rows for the subscriptions that want this change (in the change's transaction)."""
    subscriptions = list(
        session.exec(select(WebhookSubscription).where(col(WebhookSubscription.active)))
    )
    if not subscriptions:
        return
    wanted: list[tuple[WebhookEvent, dict[str, Any]]] = []
    if event.action == "report":
        wanted.append((WebhookEvent.ISSUE_CREATED, {}))
    elif event.from_status is not None and event.from_status != event.to_status:
        wanted.append((WebhookEvent.STATUS_CHANGED, {}))
    flags = _new_flags(session, event)
    if flags:
        wanted.append((WebhookEvent.FLAGS_RAISED, {"flags": flags}))
    for kind, extra in wanted:
        payload = _payload(session, kind, issue, event.at, _change(event) | extra)
        key = f"{kind.value}:{issue.id}:{event.seq}"
        _enqueue(session, subscriptions, kind, issue, key, payload)


def _new_flags(session: Session, event: IssueEvent) -> list[str]:
    ids = [p["id"] for p in event.data.get("photos", []) if isinstance(p, dict) and "id" in p]
    if not ids:
        return []
    rows = session.exec(select(Photo.flags).where(col(Photo.id).in_(ids)))
    return sorted({flag for flags in rows for flag in flags})


def _change(event: IssueEvent) -> dict[str, Any]:
    return {
        "action": event.action,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "note": event.note,
        "actor": event.actor,
        "seq": event.seq,
    }


def _payload(
    session: Session, kind: WebhookEvent, issue: Issue, at: datetime, change: dict[str, Any]
) -> dict[str, Any]:
    unit = session.get(OrgUnit, issue.org_unit_id)
    return {
        "event": kind.value,
        "at": at.isoformat(),
        "issue": {
            "id": issue.id,
            "code": issue.code,
            "category": issue.category_code,
            "status": issue.status,
            "org_unit": unit.code if unit else None,
            "source": issue.source,
            "lat": issue.lat,
            "lon": issue.lon,
            "deadline": issue.deadline_at.isoformat() if issue.deadline_at else None,
            "version": issue.version,
        },
        "change": change,
    }


def _matches(session: Session, subscription: WebhookSubscription, kind: str, issue: Issue) -> bool:
    if kind not in subscription.events:
        return False
    if subscription.categories and issue.category_code not in subscription.categories:
        return False
    if subscription.org_unit_id is None:
        return True
    unit = session.get(OrgUnit, issue.org_unit_id)
    scope = session.get(OrgUnit, subscription.org_unit_id)
    return unit is not None and scope is not None and orgs.is_within(unit, scope)


def _enqueue(
    session: Session,
    subscriptions: list[WebhookSubscription],
    kind: WebhookEvent,
    issue: Issue,
    key: str,
    payload: dict[str, Any],
) -> int:
    added = 0
    for subscription in subscriptions:
        if not _matches(session, subscription, kind.value, issue):
            continue
        assert subscription.id is not None
        delivery = WebhookDelivery(
            subscription_id=subscription.id,
            event=kind.value,
            event_key=key,
            issue_id=issue.id,
            payload={"id": key, **payload},
        )
        session.add(delivery)
        added += 1
    if added:
        session.info[ENQUEUED] = True
    return added


def enqueue_overdue(session: Session, now: datetime | None = None) -> int:
    """Outbox rows for issues that went overdue in the last day (once per deadline); commits."""
    now = now or utcnow()
    subscriptions = [
        s
        for s in session.exec(select(WebhookSubscription).where(col(WebhookSubscription.active)))
        if WebhookEvent.OVERDUE.value in s.events
    ]
    if not subscriptions:
        return 0
    overdue = session.exec(
        select(Issue).where(
            Issue.status == IssueStatus.DISPATCHED,
            col(Issue.deadline_at) < now,
            col(Issue.deadline_at) > now - timedelta(days=1),
        )
    ).all()
    added = 0
    for issue in overdue:
        assert issue.deadline_at is not None
        key = f"overdue:{issue.id}:{issue.dispatch_round}:{int(issue.deadline_at.timestamp())}"
        # Only subscriptions that existed when the deadline passed, each told once.
        fresh = [
            s
            for s in subscriptions
            if s.created_at < issue.deadline_at and not _has(session, s, key)
        ]
        payload = _payload(session, WebhookEvent.OVERDUE, issue, issue.deadline_at, {})
        added += _enqueue(session, fresh, WebhookEvent.OVERDUE, issue, key, payload)
    try:
        session.commit()
    except IntegrityError:  # another process enqueued them first
        session.rollback()
        return 0
    return added


def _has(session: Session, subscription: WebhookSubscription, key: str) -> bool:
    query = select(WebhookDelivery.id).where(
        WebhookDelivery.subscription_id == subscription.id, WebhookDelivery.event_key == key
    )
    return session.exec(query).first() is not None
