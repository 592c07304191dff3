"""The `gridproof` command, run in-process against both engines."""

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from app import cli
from app.config import Settings, get_settings
from app.db import get_engine
from app.main import create_app
from app.models import Category, Issue, IssueEvent, OrgUnit, Photo, User
from tests.stored import original_file

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


@pytest.fixture
def cli_settings(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """The environment the command reads, pointing at this test's database and uploads."""
    upload_dir = tmp_path / "uploads"
    monkeypatch.setenv("GRIDPROOF_DATABASE_URL", database_url)
    monkeypatch.setenv("GRIDPROOF_UPLOAD_DIR", str(upload_dir))
    get_settings.cache_clear()
    yield Settings(database_url=database_url, upload_dir=upload_dir)
    get_settings.cache_clear()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`gridproof argv…` in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        status = cli.main(list(argv))
    except SystemExit as exc:  # argparse refuses bad usage this way
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def count(settings: Settings, model: type, *where: object) -> int:
    with Session(get_engine(settings.database_url)) as session:
        return int(session.exec(select(func.count()).select_from(model).where(*where)).one())


def one_of(settings: Settings, model: type, *where: object) -> object:
    with Session(get_engine(settings.database_url)) as session:
        return session.exec(select(model).where(*where).order_by(model.id)).first()


def test_migrate_is_harmless_to_repeat(cli_settings, capsys):
    for _ in range(2):
        status, out, _err = run(capsys, "migrate")
        assert status == 0
        assert "migrations applied" in out
    assert count(cli_settings, Category) == 15


def test_org_add_is_idempotent_for_the_same_values(cli_settings, capsys):
    add_d = ("org", "add", "D", "--name", "经开区", "--kind", "district")
    add_a = ("org", "add", "A", "--name", "祥云办事处", "--kind", "office", "--parent", "D")
    for argv in (add_d, add_a, add_d, add_a):
        status, out, err = run(capsys, *argv)
        assert status == 0, err
        assert argv[2] in out
    assert count(cli_settings, OrgUnit) == 2

    for different in (
        ("org", "add", "A", "--name", "另一个名字", "--kind", "office", "--parent", "D"),
        ("org", "add", "A", "--name", "祥云办事处", "--kind", "community", "--parent", "D"),
        ("org", "add", "A", "--name", "祥云办事处", "--kind", "office"),
    ):
        status, _out, err = run(capsys, *different)
        assert status == 2, different
        assert "A" in err and "exists" in err, err
    status, _out, err = run(
        capsys, "org", "add", "X", "--name", "x", "--kind", "grid", "--parent", "NOPE"
    )
    assert status == 2 and "NOPE" in err
    status, _out, err = run(capsys, "org", "add", "Y", "--name", "y", "--kind", "planet")
    assert status == 2 and err
    assert count(cli_settings, OrgUnit) == 2
    a = one_of(cli_settings, OrgUnit, OrgUnit.code == "A")
    assert isinstance(a, OrgUnit) and a.name == "祥云办事处"


def test_user_add_prints_a_token_that_works(cli_settings, capsys, monkeypatch):
    assert run(capsys, "org", "add", "D", "--name", "经开区", "--kind", "district")[0] == 0
    status, out, err = run(capsys, "user", "add", "alice", "--role", "supervisor", "--org", "D")
    assert status == 0, err
    lines = out.rstrip("\n").split("\n")
    token = lines[-1]
    assert token == token.strip() and " " not in token and len(token) >= 32
    assert token not in "\n".join(lines[:-1])
    with TestClient(create_app(cli_settings)) as client:
        me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        assert (me.json()["username"], me.json()["role"], me.json()["org_unit"]) == (
            "alice",
            "supervisor",
            "D",
        )
    # A password makes sign-in possible too: read from standard input, never the command line.
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-pw\n"))
    status, out, _err = run(
        capsys, "user", "add", "bob", "--role", "worker", "--org", "D", "--password-stdin"
    )
    assert status == 0
    with TestClient(create_app(cli_settings)) as client:
        login = client.post("/api/v1/auth/login", json={"username": "bob", "password": "s3cret-pw"})
        assert login.status_code == 200
        bearer = {"Authorization": f"Bearer {out.rstrip().splitlines()[-1]}"}
        assert client.get("/api/v1/auth/me", headers=bearer).json()["username"] == "bob"


def test_user_add_asks_for_the_password_and_never_takes_it_as_an_argument(
    cli_settings, capsys, monkeypatch
):
    assert run(capsys, "org", "add", "D", "--name", "经开区", "--kind", "district")[0] == 0
    status, out, err = run(
        capsys, "user", "add", "eve", "--role", "worker", "--org", "D", "--password", "pw-in-ps"
    )
    assert status == 2 and "--password-stdin" in err and out == ""
    answers = iter(["typed-pw-1", "typed-pw-2"])
    monkeypatch.setattr("getpass.getpass", lambda _prompt="": next(answers))
    status, out, err = run(
        capsys, "user", "add", "eve", "--role", "worker", "--org", "D", "--password-prompt"
    )
    assert status == 2 and "differ" in err and out == ""
    assert count(cli_settings, User) == 0
    monkeypatch.setattr("getpass.getpass", lambda _prompt="": "typed-pw")
    status, _out, _err = run(
        capsys, "user", "add", "eve", "--role", "worker", "--org", "D", "--password-prompt"
    )
    assert status == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    status, out, err = run(
        capsys, "user", "add", "fay", "--role", "worker", "--org", "D", "--password-stdin"
    )
    assert status == 2 and "empty" in err and out == ""
    with TestClient(create_app(cli_settings)) as client:
        login = client.post("/api/v1/auth/login", json={"username": "eve", "password": "typed-pw"})
        assert login.status_code == 200, login.text


def test_user_add_refuses_bad_input(cli_settings, capsys):
    assert run(capsys, "org", "add", "D", "--name", "经开区", "--kind", "district")[0] == 0
    assert run(capsys, "user", "add", "alice", "--role", "worker", "--org", "D")[0] == 0
    status, out, err = run(capsys, "user", "add", "alice", "--role", "worker", "--org", "D")
    assert status == 2 and "alice" in err and out == ""
    status, out, err = run(capsys, "user", "add", "carol", "--role", "worker", "--org", "NOPE")
    assert status == 2 and "NOPE" in err and out == ""
    status, _out, err = run(capsys, "user", "add", "dave", "--role", "king", "--org", "D")
    assert status == 2 and err
    assert count(cli_settings, User) == 1


def test_python_dash_m_app_help():
    result = subprocess.run(
        [str(VENV_PYTHON), "-m", "app", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for command in ("serve", "migrate", "org", "demo", "user", "verify"):
        assert command in result.stdout


# --- demo and verify -------------------------------------------------------------------------


def verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    status, out, _err = run(capsys, "verify", *argv)
    return status, out.splitlines()


def lines_naming(lines: list[str], *words: str) -> list[str]:
    return [line for line in lines if all(word in line for word in words)]


def test_demo_then_verify(cli_settings, capsys):
    """One scenario, because loading the demo zone is the slow part."""
    demo_is_idempotent_and_prints_the_sign_ins(cli_settings, capsys)
    status, lines = verify(capsys)
    assert status == 0, lines
    assert "OK" in lines[-1]
    verify_finds_a_changed_original(cli_settings, capsys)
    verify_finds_an_edited_event(cli_settings, capsys)
    verify_finds_a_missing_original_and_checks_one_issue_on_request(cli_settings, capsys)


def demo_is_idempotent_and_prints_the_sign_ins(settings: Settings, capsys) -> None:
    status, out, err = run(capsys, "demo")
    assert status == 0, err
    issues = count(settings, Issue)
    assert 30 <= issues <= 60  # 40 stories, and one per 工作组 and 专班
    with Session(get_engine(settings.database_url)) as session:
        statuses = set(session.exec(select(Issue.status)))
    assert statuses == {
        "reported",
        "accepted",
        "dispatched",
        "rectified",
        "closed",
        "rejected",
        "duplicate",
    }
    photos = count(settings, Photo)
    events = count(settings, IssueEvent)
    users = count(settings, User)

    status, again, err = run(capsys, "demo")
    assert status == 0, err
    assert count(settings, Issue) == issues
    assert count(settings, Photo) == photos
    assert count(settings, IssueEvent) == events
    assert count(settings, User) == users
    for text in (out, again):
        for username in ("admin", "zhihui", "xiangyun", "wang", "shenji", "dapingmu"):
            assert username in text
        assert "gridproof" in text  # the demo password


def verify_finds_a_changed_original(settings: Settings, capsys) -> None:
    photo = one_of(settings, Photo)
    assert isinstance(photo, Photo)
    path = original_file(settings.upload_dir, photo.sha256)
    original = path.read_bytes()
    path.write_bytes(original[:-10] + b"0123456789")
    status, lines = verify(capsys)
    assert status == 1
    assert lines_naming(lines, f"photo {photo.id} ", f"issue {photo.issue_id}"), lines
    path.write_bytes(original)
    assert verify(capsys)[0] == 0


def verify_finds_an_edited_event(settings: Settings, capsys) -> None:
    event = one_of(settings, IssueEvent, col(IssueEvent.seq) == 2)
    assert isinstance(event, IssueEvent)
    edit = update(IssueEvent).where(col(IssueEvent.id) == event.id)
    with Session(get_engine(settings.database_url)) as session:
        session.execute(edit.values(note="改过的备注"))
        session.commit()
    status, lines = verify(capsys)
    assert status == 1
    assert lines_naming(lines, f"issue {event.issue_id} ", f"event {event.seq}"), lines
    with Session(get_engine(settings.database_url)) as session:
        session.execute(edit.values(note=event.note))
        session.commit()
    assert verify(capsys)[0] == 0


def verify_finds_a_missing_original_and_checks_one_issue_on_request(
    settings: Settings, capsys
) -> None:
    photo = one_of(settings, Photo)
    assert isinstance(photo, Photo)
    original_file(settings.upload_dir, photo.sha256).unlink()
    status, lines = verify(capsys)
    assert status == 1
    assert lines_naming(lines, f"photo {photo.id} ", "missing"), lines

    status, lines = verify(capsys, "--issue", str(photo.issue_id))
    assert status == 1
    assert lines_naming(lines, f"photo {photo.id} ", "missing"), lines
    assert "1 audit chain" in lines[-1]

    other = one_of(settings, Issue, col(Issue.id) != photo.issue_id)
    assert isinstance(other, Issue)
    status, lines = verify(capsys, "--issue", str(other.id))
    assert status == 0, lines
    assert "1 audit chain" in lines[-1]
    assert not lines_naming(lines, "missing")


@pytest.mark.parametrize(
    ("flag", "environment", "expected"),
    [
        (["--image-processes", "3"], "5", "3"),  # the flag wins
        ([], "5", "5"),  # then the setting
        ([], None, str(min(64, len(os.sched_getaffinity(0))))),  # then the usable cores
        ([], "0", "0"),  # 0 (decode in the request's thread) is a setting too
    ],
)
def test_serve_picks_the_number_of_decoding_processes(
    cli_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: list[str],
    environment: str | None,
    expected: str,
) -> None:
    import uvicorn

    # Registered first, so that whatever serve writes into the environment is undone after.
    monkeypatch.setenv("GRIDPROOF_IMAGE_PROCESSES", "undone")
    if environment is None:
        monkeypatch.delenv("GRIDPROOF_IMAGE_PROCESSES")
    else:
        monkeypatch.setenv("GRIDPROOF_IMAGE_PROCESSES", environment)
    get_settings.cache_clear()
    served: list[int] = []
    monkeypatch.setattr(uvicorn, "run", lambda *_a, **_k: served.append(Settings().image_processes))
    status, _out, _err = run(capsys, "serve", *flag)
    assert status == 0
    assert served == [int(expected)]
