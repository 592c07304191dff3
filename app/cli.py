"""The `gridproof` command (also `python -m app`)."""

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from app.cli_webhooks import add_commands as add_webhook_commands
from app.config import get_settings
from app.db import get_engine, migrate, schema_behind
from app.errors import AppError, ValidationFailed
from app.services import objects


def _session() -> Session:
    return Session(get_engine(get_settings().database_url), expire_on_commit=False)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.serving import uvicorn_options

    settings = get_settings()
    try:  # a store that cannot be used stops the start, with the setting to fix named
        objects.open_store(settings).check()
    except objects.StoreNotUsable as exc:
        print(f"gridproof serve: {exc}", file=sys.stderr)
        return 2
    if args.no_migrate:
        # Replicas: the one-shot `gridproof migrate` ran before them; a schema behind the code
        # would fail requests one by one, so it stops the start instead.
        behind = schema_behind(settings.database_url)
        if behind:
            print(f"gridproof: {behind}", file=sys.stderr)
            return 2
    else:
        migrate(settings.database_url)
    # Read by the app's settings in the server process: the flag wins, then a setting from the
    # environment or .env, then one decoding process per core this process may use.
    if args.image_processes is not None:
        os.environ["GRIDPROOF_IMAGE_PROCESSES"] = str(args.image_processes)
    elif "image_processes" not in settings.model_fields_set:
        os.environ["GRIDPROOF_IMAGE_PROCESSES"] = str(min(64, len(os.sched_getaffinity(0))))
    get_settings.cache_clear()
    uvicorn.run(
        "app.main:app", host=args.host, port=args.port, workers=args.workers, **uvicorn_options()
    )
    return 0


def cmd_migrate(_args: argparse.Namespace) -> int:
    migrate(get_settings().database_url)
    print("migrations applied")
    return 0


def cmd_org_add(args: argparse.Namespace) -> int:
    from app.services import orgs

    with _session() as session:
        org = orgs.add_org(session, args.code, args.name, args.kind, args.parent)
        print(f"org unit {org.code} ({org.name}, {org.kind})")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from app.services import auth

    if args.password is not None:
        print(
            "gridproof: a password on the command line lands in the shell's history and in ps; "
            "use --password-stdin (the first line of standard input) or --password-prompt",
            file=sys.stderr,
        )
        return 2
    password = _read_password(args)
    with _session() as session:
        user, token = auth.create_user(session, args.username, args.role, args.org, password)
        print(f"user {user.username} ({user.role}) created; API token:")
        print(token)
    return 0


def _read_password(args: argparse.Namespace) -> str | None:
    """The new user's password: the first line of stdin, or asked twice on the terminal; None
    (a user who signs in with the printed token only) without either flag."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif args.password_prompt:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise ValidationFailed("the two passwords differ")
    else:
        return None
    if not password:
        raise ValidationFailed("the password is empty")
    return password


def cmd_user_disable(args: argparse.Namespace) -> int:
    from app.services import user_admin

    with _session() as session:
        revoked = user_admin.disable_by_name(session, args.username).tokens_revoked
    print(f"user {args.username} disabled; {revoked} token(s) revoked")
    return 0


def cmd_demo(_args: argparse.Namespace) -> int:
    from app.demo import zone as demo

    settings = get_settings()
    migrate(settings.database_url)
    with _session() as session:
        demo.load_demo(session, settings)
    return 0


def cmd_grid_import(args: argparse.Namespace) -> int:
    from app.services import grid_import

    with open(args.file, "rb") as file, _session() as session:
        result = grid_import.import_grid(session, file.read(), args.crs)
    print(
        f"grid: {result.added} added, {result.changed} changed, {result.retired} retired, "
        f"{result.unchanged} unchanged"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from app.services import verification

    settings = get_settings()
    with _session() as session:
        problems, checked = verification.verify(
            session, settings, args.issue, derivatives=not args.skip_derivatives
        )
    for problem in problems:
        print(problem)
    print(
        f"checked {checked.photos} photo(s) and {checked.issues} audit chain(s): "
        f"{'OK' if not problems else f'{len(problems)} problem(s)'}"
    )
    return 1 if problems else 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from app.services import checkpoints

    settings = get_settings()
    if args.public_key:
        print(checkpoints.public_key_pem(checkpoints.private_key(settings).public_key()), end="")
        return 0
    with _session() as session:
        signed = checkpoints.sign_heads(session, settings)
    key = checkpoints.private_key(settings).public_key()
    print(f"{signed} chain head(s) signed with key {checkpoints.key_id(key)}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from app.services import sweep

    report = sweep.sweep(get_settings(), dry_run=args.dry_run)
    for path in report.paths:
        print(f"{'would remove' if args.dry_run else 'removed'} {path}")
    print(report.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridproof", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_serving(commands)
    _add_people(commands)
    _add_data(commands)
    add_webhook_commands(commands)
    return parser


Commands = Any  # argparse's _SubParsersAction, which it does not export


def _add_serving(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="apply migrations, then serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not apply migrations (replicas: `gridproof migrate` runs once before them); "
        "refuse to start if the database is not at the code's revision",
    )
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--image-processes",
        type=int,
        help="processes that decode photos, shared by all requests (default: "
        "GRIDPROOF_IMAGE_PROCESSES if set, else one per core this process may use)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="HTTP worker processes, each with its own image processes (default 1: one event "
        "loop parses uploads far faster than the cores decode them)",
    )
    serve.set_defaults(func=cmd_serve)

    commands.add_parser("migrate", help="apply pending migrations").set_defaults(func=cmd_migrate)


def _add_people(commands: Commands) -> None:
    org = commands.add_parser("org", help="org units").add_subparsers(
        dest="org_command", required=True
    )
    org_add = org.add_parser("add", help="add an org unit (idempotent for the same values)")
    org_add.add_argument("code")
    org_add.add_argument("--name", required=True)
    org_add.add_argument(
        "--kind", required=True, choices=["district", "office", "community", "grid"]
    )
    org_add.add_argument("--parent")
    org_add.set_defaults(func=cmd_org_add)

    user = commands.add_parser("user", help="users").add_subparsers(
        dest="user_command", required=True
    )
    user_add = user.add_parser("add", help="create a user; prints an API token on the last line")
    user_add.add_argument("username")
    user_add.add_argument(
        "--role",
        required=True,
        choices=["worker", "supervisor", "auditor", "viewer", "admin", "external"],
    )
    user_add.add_argument("--org", required=True, help="org unit code")
    secret = user_add.add_mutually_exclusive_group()
    secret.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    secret.add_argument(
        "--password-prompt", action="store_true", help="ask for the password on the terminal"
    )
    # Refused with a reason (never taken from the command line): see cmd_user_add.
    user_add.add_argument("--password", help=argparse.SUPPRESS)
    user_add.set_defaults(func=cmd_user_add)
    user_disable = user.add_parser("disable", help="stop a user signing in; revoke all tokens")
    user_disable.add_argument("username")
    user_disable.set_defaults(func=cmd_user_disable)


def _add_data(commands: Commands) -> None:
    commands.add_parser("demo", help="load the demo zone (idempotent)").set_defaults(func=cmd_demo)

    grid = commands.add_parser("grid", help="grid cells").add_subparsers(
        dest="grid_command", required=True
    )
    grid_import = grid.add_parser("import", help="load a GeoJSON FeatureCollection of cells")
    grid_import.add_argument("file")
    grid_import.add_argument("--crs", choices=["wgs84", "gcj02"], default="wgs84")
    grid_import.set_defaults(func=cmd_grid_import)

    verify = commands.add_parser("verify", help="re-hash originals and re-check audit chains")
    verify.add_argument("--issue", type=int)
    verify.add_argument(
        "--skip-derivatives",
        action="store_true",
        help="do not re-derive each photo's thumb and large to compare (the slow part)",
    )
    verify.set_defaults(func=cmd_verify)
    checkpoint = commands.add_parser(
        "checkpoint", help="sign every audit chain head not signed yet (Ed25519)"
    )
    checkpoint.add_argument(
        "--public-key", action="store_true", help="only print the public key (PEM) to publish"
    )
    checkpoint.set_defaults(func=cmd_checkpoint)
    sweep = commands.add_parser(
        "sweep",
        help="remove temp files and claims of dead requests, and originals and derivatives "
        "that no committed photo uses; prints what it removed",
    )
    sweep.add_argument("--dry-run", action="store_true", help="only print what would go")
    sweep.set_defaults(func=cmd_sweep)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AppError as exc:
        print(f"gridproof: {exc.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
