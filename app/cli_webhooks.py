"""`gridproof webhooks …`: subscriptions, their delivery logs, and the delivery worker."""

import argparse
import json
from typing import Any

from sqlmodel import Session

from app.config import get_settings
from app.db import get_engine


def _session() -> Session:
    return Session(get_engine(get_settings().database_url), expire_on_commit=False)


def cmd_add(args: argparse.Namespace) -> int:
    from app.models.webhook import SubscriptionCreate
    from app.services import webhooks

    request = SubscriptionCreate.model_validate(
        {"url": args.url, "events": args.event, "org_unit": args.org, "categories": args.category}
    )
    with _session() as session:
        created = webhooks.create_subscription(session, get_settings(), None, request)
    print(f"subscription {created.id} → {created.url} ({', '.join(created.events)}); secret:")
    print(created.secret)
    return 0


def cmd_list(_args: argparse.Namespace) -> int:
    from app.services import webhooks

    with _session() as session:
        for s in webhooks.list_subscriptions(session):
            state = "active" if s.active else "inactive"
            print(f"{s.id}\t{state}\t{s.url}\t{','.join(s.events)}")
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    from app.services import webhooks

    with _session() as session:
        for d in webhooks.deliveries(session, args.id, None, args.limit):
            row: dict[str, Any] = d.model_dump(mode="json")
            print(json.dumps(row, ensure_ascii=False))
    return 0


def cmd_run(_args: argparse.Namespace) -> int:
    from app.services.webhook_worker import run_forever

    run_forever(get_settings())
    return 0


def add_commands(commands: Any) -> None:
    hooks = commands.add_parser("webhooks", help="webhook subscriptions").add_subparsers(
        dest="webhooks_command", required=True
    )
    add = hooks.add_parser("add", help="subscribe a URL; prints the signing secret last")
    add.add_argument("url")
    add.add_argument(
        "--event",
        action="append",
        required=True,
        choices=["issue.created", "issue.status_changed", "issue.overdue", "issue.flags_raised"],
    )
    add.add_argument("--org", help="only issues of this org unit or below")
    add.add_argument("--category", action="append", default=[], help="only these categories")
    add.set_defaults(func=cmd_add)
    hooks.add_parser("list", help="list subscriptions").set_defaults(func=cmd_list)
    log = hooks.add_parser("deliveries", help="a subscription's delivery log (JSON lines)")
    log.add_argument("id", type=int)
    log.add_argument("--limit", type=int, default=50)
    log.set_defaults(func=cmd_deliveries)
    run = hooks.add_parser("run", help="send deliveries in the foreground (as serve does)")
    run.set_defaults(func=cmd_run)
