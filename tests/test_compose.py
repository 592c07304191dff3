"""docker-compose.yml and deploy/nginx.conf checked against the app itself (Docker cannot run
here): every service's command goes through the real `gridproof` parser, every GRIDPROOF_*
variable must be a field of the real `Settings` (an unknown name fails) and validate, the
migrations run once before the replicas, both replicas share their configuration but no
folder, and nginx names both replicas and lets the app's largest upload through.

`compose_problems` and `nginx_problems` return what is wrong; the tests below run them on the
files as committed (nothing wrong) and on copies broken one way each (the problem is named).
"""

import copy
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from app.cli import build_parser
from app.config import MB, Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
NGINX = ROOT / "deploy" / "nginx.conf"
REPLICAS = ("app1", "app2")
# Variables of the app's containers that are not the app's settings, and who reads them.
OTHER_VARIABLES = {
    "AWS_ACCESS_KEY_ID": "boto3",
    "AWS_SECRET_ACCESS_KEY": "boto3",
    "AWS_DEFAULT_REGION": "boto3",
    "FORWARDED_ALLOW_IPS": "uvicorn (trust nginx's X-Forwarded-For)",
}
# What `docker compose` would put in for ${NAME:?…} (the operator's .env): any value will do.
REQUIRED_VALUES = {
    "POSTGRES_PASSWORD": "pw",
    "MINIO_ROOT_PASSWORD": "secret-key",
    "GRIDPROOF_SIGNING_SECRET": "s",
}
_INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::([-?])([^}]*))?\}")


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: str) -> str:
    """Compose's ${NAME:-default} and ${NAME:?error}, as with the operator's .env."""

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if kind == "-":
            return rest
        return REQUIRED_VALUES[name]

    return _INTERPOLATION.sub(one, value)


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the image built from this repository."""
    return {name: s for name, s in compose["services"].items() if s.get("build") == "."}


def command_of(service: dict[str, Any]) -> Any:
    """The service's command parsed by the real `gridproof` parser."""
    command = service["command"]
    words = shlex.split(command) if isinstance(command, str) else command
    assert words[0] == "gridproof", f"{words[0]} is not the gridproof command"
    return build_parser().parse_args(words[1:])


def settings_of(service: dict[str, Any]) -> tuple[Settings | None, list[str]]:
    """The Settings the service's environment makes (None: they do not validate), and what is
    wrong: variables nothing reads, the validation error."""
    environment = {k: interpolate(str(v)) for k, v in service.get("environment", {}).items()}
    unknown, values = [], {}
    for name, value in environment.items():
        field = name.removeprefix("GRIDPROOF_").lower()
        if name.startswith("GRIDPROOF_") and field in Settings.model_fields:
            values[field] = value
        elif name not in OTHER_VARIABLES:
            unknown.append(f"{name} is no setting of the app")
    try:
        return Settings(_env_file=None, **values), unknown  # type: ignore[call-arg]
    except ValueError as exc:
        return None, [*unknown, f"invalid settings: {exc}"]


def _healthcheck(service: dict[str, Any]) -> list[str]:
    check = service.get("healthcheck") or {}
    return [] if check.get("disable") else list(check.get("test") or [])


def compose_problems(compose: dict[str, Any]) -> list[str]:
    """What is wrong with the compose file, as sentences (empty: nothing)."""
    problems: list[str] = []
    services = compose["services"]
    apps = app_services(compose)
    commands = {name: command_of(service) for name, service in apps.items()}
    for name, service in apps.items():
        settings, wrong = settings_of(service)
        problems += [f"{name}: {sentence}" for sentence in wrong]
        if settings is not None and settings.storage != "s3":
            problems.append(f"{name}: photos must go to the object store (GRIDPROOF_STORAGE=s3)")
    migrating = [name for name, args in commands.items() if args.command == "migrate"]
    serving = [name for name, args in commands.items() if args.command == "serve"]
    if len(migrating) != 1:
        problems.append(f"the migrations must run in exactly one service, not {migrating}")
    elif services[migrating[0]].get("restart") != "no":
        problems.append(f'{migrating[0]} must run once (restart: "no")')
    if sorted(serving) != sorted(REPLICAS):
        problems.append(f"the replicas must be {REPLICAS}, not {serving}")
    for name in serving:
        problems += _replica_problems(compose, name, commands[name], migrating)
    problems += _shared_configuration_problems(compose, serving)
    problems += _backing_services_problems(compose, serving)
    return problems


def _replica_problems(
    compose: dict[str, Any], name: str, args: Any, migrating: list[str]
) -> list[str]:
    service = compose["services"][name]
    problems = []
    if not args.no_migrate:
        problems.append(f"{name} must not migrate (serve --no-migrate): {migrating} does")
    if args.host != "0.0.0.0":
        problems.append(f"{name} must listen on 0.0.0.0 for the proxy, not {args.host}")
    if "ports" in service:
        problems.append(f"{name} publishes a port: only the proxy may (X-Forwarded-For trust)")
    check = " ".join(_healthcheck(service))
    if (
        f"127.0.0.1:{args.port}/readyz" not in check
        and f"localhost:{args.port}/readyz" not in check
    ):
        problems.append(f"{name} needs a health check on its /readyz at port {args.port}")
    wanted = {
        "db": "service_healthy",
        "minio": "service_healthy",
        "bucket": "service_completed_successfully",
        **dict.fromkeys(migrating, "service_completed_successfully"),
    }
    depends = service.get("depends_on") or {}
    for other, condition in wanted.items():
        if (depends.get(other) or {}).get("condition") != condition:
            problems.append(f"{name} must depend on {other} with condition {condition}")
    return problems


def _shared_configuration_problems(compose: dict[str, Any], serving: list[str]) -> list[str]:
    """Same settings (signing secret, audit key) for every replica; no folder shared."""
    services = compose["services"]
    problems = []
    environments = [services[name].get("environment", {}) for name in serving]
    if any(environment != environments[0] for environment in environments):
        problems.append(f"the replicas {serving} must have the same environment")
    for name in serving:
        environment = services[name].get("environment", {})
        if not interpolate(str(environment.get("GRIDPROOF_SIGNING_SECRET", ""))):
            problems.append(f"{name}: GRIDPROOF_SIGNING_SECRET must be set (the same everywhere)")
        key = str(environment.get("GRIDPROOF_AUDIT_KEY_FILE", ""))
        secret = key.removeprefix("/run/secrets/")
        if not key.startswith("/run/secrets/") or secret not in services[name].get("secrets", []):
            problems.append(f"{name}: GRIDPROOF_AUDIT_KEY_FILE must be a mounted secret")
        elif secret not in (compose.get("secrets") or {}):
            problems.append(f"{name}: the secret {secret} is not defined")
    volumes = [
        str(volume).split(":")[0]
        for name in serving
        for volume in services[name].get("volumes", [])
    ]
    shared = {volume for volume in volumes if volumes.count(volume) > 1}
    if shared:
        problems.append(f"the replicas share {sorted(shared)}: they must share no folder")
    return problems


def _backing_services_problems(compose: dict[str, Any], serving: list[str]) -> list[str]:
    services = compose["services"]
    problems = []
    for name in ("db", "minio", "proxy"):
        if name not in services or not _healthcheck(services[name]):
            problems.append(f"{name} needs a health check")
    for name in serving[:1]:
        settings, _unknown = settings_of(services[name])
        if settings is None:
            continue
        database = urlsplit(settings.database_url)
        db_env = services["db"]["environment"]
        if (database.hostname, database.username, database.path) != (
            "db",
            db_env["POSTGRES_USER"],
            f"/{db_env['POSTGRES_DB']}",
        ):
            problems.append(f"{name}'s database URL does not name the db service's database")
        if urlsplit(settings.s3_endpoint).hostname != "minio":
            problems.append(f"{name}'s S3 endpoint is not the minio service")
        bucket = " ".join(services["bucket"].get("entrypoint", []))
        if f"mb --ignore-existing store/{settings.s3_bucket}" not in bucket:
            problems.append(f"the bucket service does not create {settings.s3_bucket}")
    proxy_depends = services["proxy"].get("depends_on") or {}
    for name in serving:
        if (proxy_depends.get(name) or {}).get("condition") != "service_healthy":
            problems.append(f"proxy must depend on {name} being healthy")
    return problems


def nginx_problems(config: str, compose: dict[str, Any]) -> list[str]:
    """What is wrong with nginx's config for these replicas and their largest upload."""
    problems = []
    text = re.sub(r"#[^\n]*", "", config)
    upstreams = dict(re.findall(r"upstream\s+(\w+)\s*\{([^}]*)\}", text))
    passes = re.findall(r"proxy_pass\s+http://(\w+)\s*;", text)
    if not passes or any(target not in upstreams for target in passes):
        problems.append(f"proxy_pass must name an upstream, not {passes}")
    servers = {s for body in upstreams.values() for s in re.findall(r"server\s+(\S+?)[\s;]", body)}
    apps = app_services(compose)
    wanted = set()
    for name, service in apps.items():
        args = command_of(service)
        if args.command == "serve":
            wanted.add(f"{name}:{args.port}")
    if servers != wanted:
        problems.append(
            f"the upstream must be the replicas {sorted(wanted)}, not {sorted(servers)}"
        )
    limits = re.findall(r"client_max_body_size\s+(\d+)([kKmMgG]?)\s*;", text)
    replica = apps[REPLICAS[0]]
    settings, _unknown = settings_of(replica)
    largest = settings.max_request_bytes if settings else 0
    if len(limits) != 1:
        problems.append("client_max_body_size must be set once")
    else:
        number, unit = limits[0]
        allowed = int(number) * {"": 1, "k": 1024, "m": MB, "g": 1024 * MB}[unit.lower()]
        if not largest <= allowed < largest + MB:
            problems.append(
                f"client_max_body_size {number}{unit} must fit the app's largest request, "
                f"{largest} bytes (2 × max_photos_per_request × max_upload_mb + 1 MB)"
            )
    if not re.search(r"proxy_request_buffering\s+off\s*;", text):
        problems.append("uploads must stream to the app (proxy_request_buffering off)")
    if not re.search(r"proxy_set_header\s+X-Forwarded-For\s", text):
        problems.append("the client's address must reach the app (X-Forwarded-For)")
    return problems


# The files as committed.


def test_compose_file_holds_together() -> None:
    assert compose_problems(load_compose()) == []


def test_nginx_config_fits_the_replicas_and_the_largest_upload() -> None:
    assert nginx_problems(NGINX.read_text(), load_compose()) == []


def test_the_proxy_mounts_the_checked_config_and_is_the_only_way_in() -> None:
    compose = load_compose()
    proxy = compose["services"]["proxy"]
    mounted = [str(v).split(":")[0] for v in proxy["volumes"]]
    assert "./deploy/nginx.conf" in mounted
    assert (ROOT / "deploy" / "nginx.conf").is_file()
    published = [name for name, s in compose["services"].items() if "ports" in s]
    assert published == ["proxy"]


def test_the_audit_key_secret_is_kept_out_of_the_repository() -> None:
    secret = load_compose()["secrets"]["audit_key"]["file"]
    path = ROOT / secret
    assert path.parent == ROOT / "deploy" / "secrets"
    ignore = (path.parent / ".gitignore").read_text().split()
    assert "*" in ignore  # the folder holds no committed key, only its .gitignore


def test_the_images_default_command_is_a_real_serve() -> None:
    cmd = re.search(r"^CMD\s+(\[.*\])\s*$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd is not None
    args = command_of({"command": yaml.safe_load(cmd.group(1))})
    assert (args.command, args.host, args.no_migrate) == ("serve", "0.0.0.0", False)


def test_the_operators_env_example_names_every_required_value() -> None:
    example = (ROOT / "deploy" / "env.example").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE.read_text()))
    assert required == set(REQUIRED_VALUES)
    for name in required:
        assert re.search(rf"^{name}=", example, re.MULTILINE), name


# Broken copies: each mistake is named.


def _broken(change: Any) -> list[str]:
    compose = copy.deepcopy(load_compose())
    change(compose["services"])
    return compose_problems(compose)


def test_an_unknown_setting_fails() -> None:
    def typo(services: dict[str, Any]) -> None:
        services["app1"]["environment"]["GRIDPROOF_S3_BUCKT"] = "gridproof"  # every app's

    assert "app1: GRIDPROOF_S3_BUCKT is no setting of the app" in _broken(typo)


def test_a_setting_that_does_not_validate_fails() -> None:
    def bad(services: dict[str, Any]) -> None:
        # A copy: the services share one environment mapping (the YAML anchor).
        services["app1"]["environment"] = {
            **services["app1"]["environment"],
            "GRIDPROOF_MAX_UPLOAD_MB": "-3",
        }

    problems = _broken(bad)
    assert any(p.startswith("app1: invalid settings") and "max_upload_mb" in p for p in problems)
    assert "the replicas ['app1', 'app2'] must have the same environment" in problems


def test_a_replica_that_migrates_fails() -> None:
    def migrating(services: dict[str, Any]) -> None:
        services["app2"]["command"].remove("--no-migrate")

    assert any(p.startswith("app2 must not migrate") for p in _broken(migrating))


def test_migrations_run_in_exactly_one_one_shot_service() -> None:
    def twice(services: dict[str, Any]) -> None:
        services["migrate2"] = copy.deepcopy(services["migrate"])

    assert any("exactly one service" in p for p in _broken(twice))

    def restarting(services: dict[str, Any]) -> None:
        services["migrate"]["restart"] = "unless-stopped"

    assert 'migrate must run once (restart: "no")' in _broken(restarting)


def test_a_replica_started_before_the_migrations_fails() -> None:
    def early(services: dict[str, Any]) -> None:
        services["app1"]["depends_on"] = {"db": {"condition": "service_healthy"}}

    problems = _broken(early)
    assert "app1 must depend on migrate with condition service_completed_successfully" in problems
    assert "app1 must depend on bucket with condition service_completed_successfully" in problems


def test_replicas_with_different_secrets_or_a_shared_folder_fail() -> None:
    def different(services: dict[str, Any]) -> None:
        services["app2"]["environment"] = {
            **services["app2"]["environment"],
            "GRIDPROOF_SIGNING_SECRET": "another",
        }
        services["app2"]["volumes"] = services["app1"]["volumes"]

    problems = _broken(different)
    assert "the replicas ['app1', 'app2'] must have the same environment" in problems
    assert any(p.startswith("the replicas share ['app1-uploads']") for p in problems)


def test_an_audit_key_that_is_not_a_secret_fails() -> None:
    def on_a_volume(services: dict[str, Any]) -> None:
        for name in REPLICAS:
            services[name]["environment"]["GRIDPROOF_AUDIT_KEY_FILE"] = "/keys/audit.pem"

    assert "app1: GRIDPROOF_AUDIT_KEY_FILE must be a mounted secret" in _broken(on_a_volume)


def test_missing_health_checks_fail() -> None:
    def unchecked(services: dict[str, Any]) -> None:
        del services["db"]["healthcheck"]
        services["app1"]["healthcheck"] = {"disable": True}

    problems = _broken(unchecked)
    assert "db needs a health check" in problems
    assert "app1 needs a health check on its /readyz at port 8000" in problems


def test_a_command_the_app_does_not_know_fails() -> None:
    def unknown(services: dict[str, Any]) -> None:
        services["app1"]["command"] = [*services["app1"]["command"], "--replicas", "2"]

    with pytest.raises(SystemExit):
        _broken(unknown)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("server app2:8000", "server app3:8000", "the upstream must be the replicas"),
        ("server app2:8000 max_fails=3 fail_timeout=10s;", "", "the upstream must be"),
        ("client_max_body_size 501m;", "client_max_body_size 25m;", "must fit the app's"),
        ("client_max_body_size 501m;", "client_max_body_size 2g;", "must fit the app's"),
        ("client_max_body_size 501m;", "", "client_max_body_size must be set once"),
        ("proxy_pass http://gridproof;", "proxy_pass http://elsewhere;", "must name an upstream"),
        ("proxy_request_buffering off;", "", "must stream to the app"),
    ],
)
def test_nginx_mistakes_are_named(old: str, new: str, problem: str) -> None:
    config = NGINX.read_text()
    assert old in config
    problems = nginx_problems(config.replace(old, new), load_compose())
    assert any(problem in p for p in problems), problems


def test_the_body_limit_follows_the_upload_settings() -> None:
    compose = load_compose()
    for name in REPLICAS:
        compose["services"][name]["environment"]["GRIDPROOF_MAX_UPLOAD_MB"] = "50"
    problems = nginx_problems(NGINX.read_text(), compose)
    assert any("must fit the app's largest request, 1049624576 bytes" in p for p in problems)
