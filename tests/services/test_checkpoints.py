"""Signed checkpoints of the audit chains (issue 16 item 6): the key, the signatures, the API,
`gridproof verify`, and the evidence ZIP's offline recipe run as shipped."""

import io
import json
import stat
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient
from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from app import cli
from app.config import Settings, get_settings
from app.db import get_engine
from app.models import AuditCheckpoint, Photo
from app.services import audit, checkpoints
from tests.factories import Zone, assert_problem, dispatched_issue, report

# The interpreter the auditor has: the system's, isolated from this project and its packages.
SYSTEM_PYTHON = "/usr/bin/python3"


def auditor_get(client: TestClient, zone: Zone, path: str, user: str = "auditor") -> Any:
    return client.get(path, headers=zone.headers(user))


def rechain(settings: Settings, issue_id: int, note: str) -> None:
    """Rewrite the first event's note and re-chain every event after it from scratch: the
    chain holds together again, as a forger with the database would leave it."""
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        events = audit.events_of(session, issue_id)
        events[0].note = note
        previous = audit.GENESIS
        for event in events:
            event.prev_hash = previous
            event.hash = audit.event_hash(event)
            previous = event.hash
            session.add(event)
        session.commit()
        assert audit.chain_problems(audit.events_of(session, issue_id)) == []


def unzip(client: TestClient, zone: Zone, issue_id: int, folder: Path) -> Path:
    response = auditor_get(client, zone, f"/api/v1/issues/{issue_id}/evidence.zip")
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        bundle.extractall(folder)
    return folder


def recipe(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The shipped script, run as the README says, by the system's Python (-I: no site)."""
    return subprocess.run(
        [SYSTEM_PYTHON, "-I", "verify_bundle.py", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_key_is_made_once_private_and_published(client, zone, settings, capsys, monkeypatch):
    path = settings.audit_key_path
    assert path.exists()  # made at the server's start
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    checkpoints.private_key(settings)
    assert path.read_bytes() == first
    assert client.get("/api/v1/audit/public-key").status_code == 401
    published = client.get("/api/v1/audit/public-key", headers=zone.headers("viewer"))
    assert published.status_code == 200
    key = serialization.load_pem_public_key(published.text.encode())
    assert isinstance(key, Ed25519PublicKey)
    assert published.headers["x-key-id"] == checkpoints.key_id(key)
    assert settings.upload_dir not in path.parents  # not in the swept, served photo store
    assert Path(__file__).resolve().parents[2] not in path.parents  # nor in the repository
    monkeypatch.setenv("GRIDPROOF_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("GRIDPROOF_UPLOAD_DIR", str(settings.upload_dir))
    get_settings.cache_clear()
    capsys.readouterr()
    assert cli.main(["checkpoint", "--public-key"]) == 0
    assert capsys.readouterr().out == published.text
    get_settings.cache_clear()


def test_heads_are_signed_once_listed_in_scope_and_verify(client, zone, settings, session):
    a_issue = dispatched_issue(client, zone, "A")
    b_issue = dispatched_issue(client, zone, "B")
    assert checkpoints.sign_heads(session, settings) == 2
    assert checkpoints.sign_heads(session, settings) == 0  # a head is signed once
    page = auditor_get(client, zone, "/api/v1/audit/checkpoints").json()
    assert [item["issue_id"] for item in page["items"]] == [a_issue["id"], b_issue["id"]]
    key = serialization.load_pem_public_key(page["public_key_pem"].encode())
    assert isinstance(key, Ed25519PublicKey)
    for item in page["items"]:
        key.verify(bytes.fromhex(item["signature"]), item["message"].encode())
        assert json.loads(item["message"]) == {
            "type": "gridproof-checkpoint-v1",
            "issue_id": item["issue_id"],
            "seq": item["seq"],
            "hash": item["hash"],
            "signed_at": item["signed_at"],
        }
        events = auditor_get(client, zone, f"/api/v1/issues/{item['issue_id']}/events").json()
        assert events[-1]["seq"] == item["seq"] and events[-1]["hash"] == item["hash"]
    # Scope: office B's supervisor sees B's checkpoint only; a worker none at all.
    b_page = auditor_get(client, zone, "/api/v1/audit/checkpoints", "b_super").json()
    assert [item["issue_id"] for item in b_page["items"]] == [b_issue["id"]]
    assert_problem(
        auditor_get(client, zone, "/api/v1/audit/checkpoints", "a_worker"), 403, "forbidden"
    )
    one = auditor_get(client, zone, f"/api/v1/audit/checkpoints?issue_id={b_issue['id']}").json()
    assert [item["issue_id"] for item in one["items"]] == [b_issue["id"]]
    paged = auditor_get(client, zone, "/api/v1/audit/checkpoints?limit=1").json()
    assert len(paged["items"]) == 1 and paged["next_cursor"] is not None
    rest = auditor_get(client, zone, f"/api/v1/audit/checkpoints?after={paged['next_cursor']}")
    assert [item["issue_id"] for item in rest.json()["items"]] == [b_issue["id"]]
    for bad in ("limit=0", "after=-1", "issue_id=0", "limit=abc"):
        response = auditor_get(client, zone, f"/api/v1/audit/checkpoints?{bad}")
        assert_problem(response, 422, "validation_error")
    assert client.get("/api/v1/audit/checkpoints").status_code == 401


def test_verify_and_the_verdict_find_a_chain_rechained_after_its_checkpoint(
    client, zone, settings, session, capsys, monkeypatch
):
    monkeypatch.setenv("GRIDPROOF_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("GRIDPROOF_UPLOAD_DIR", str(settings.upload_dir))
    get_settings.cache_clear()
    issue = dispatched_issue(client, zone)
    capsys.readouterr()
    assert cli.main(["checkpoint"]) == 0
    assert "1 chain head(s) signed" in capsys.readouterr().out
    verdict = auditor_get(client, zone, f"/api/v1/issues/{issue['id']}/verification").json()
    assert verdict["valid"] and verdict["chain_valid"] and verdict["checkpoints"] == 1
    assert cli.main(["verify"]) == 0

    rechain(settings, issue["id"], "改写的备注")
    capsys.readouterr()
    assert cli.main(["verify"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if f"issue {issue['id']} " in line and "re-chained" in line], (
        lines
    )
    verdict = auditor_get(client, zone, f"/api/v1/issues/{issue['id']}/verification").json()
    assert verdict["chain_valid"] and not verdict["valid"]
    assert any("re-chained" in problem for problem in verdict["problems"])
    hidden = auditor_get(client, zone, f"/api/v1/issues/{issue['id']}/verification", "b_worker")
    assert_problem(hidden, 404, "not_found")
    get_settings.cache_clear()


def test_the_shipped_recipe_passes_then_fails_a_chain_rechained_after_its_checkpoint(
    client, zone, settings, tmp_path
):
    issue = report(client, zone).json()
    published = tmp_path / "published.pem"
    published.write_text(auditor_get(client, zone, "/api/v1/audit/public-key").text)
    first = unzip(client, zone, issue["id"], tmp_path / "first")
    done = recipe(first, "--public-key", str(published))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("OK")
    saved = tmp_path / "saved.json"
    saved.write_text(auditor_get(client, zone, "/api/v1/audit/checkpoints").text)

    rechain(settings, issue["id"], "改写的备注")
    second = unzip(client, zone, issue["id"], tmp_path / "second")
    failed = recipe(second, "--public-key", str(published))
    assert failed.returncode == 1, failed.stdout
    assert "re-chained" in failed.stdout and "FAILED" in failed.stdout

    # The forger also drops the old checkpoints: the bundle then carries only a signature of
    # the forged head, and the checkpoints the auditor saved earlier still fail it.
    with Session(get_engine(settings.database_url)) as session:
        session.execute(delete(AuditCheckpoint).where(col(AuditCheckpoint.issue_id) == issue["id"]))
        session.commit()
    third = unzip(client, zone, issue["id"], tmp_path / "third")
    assert recipe(third, "--public-key", str(published)).returncode == 0
    failed = recipe(third, "--public-key", str(published), "--checkpoints", str(saved))
    assert failed.returncode == 1 and "re-chained" in failed.stdout, failed.stdout


def test_the_recipe_fails_a_photo_whose_facts_left_the_chain(client, zone, settings, tmp_path):
    issue = report(client, zone).json()
    with Session(get_engine(settings.database_url)) as session:
        photo_id = session.exec(select(Photo.id).where(Photo.issue_id == issue["id"])).one()
        relabel = update(Photo).where(col(Photo.id) == photo_id)
        session.execute(relabel.values(flags=["edited"], taken_at="2026-01-01T00:00:00"))
        session.commit()
    folder = unzip(client, zone, issue["id"], tmp_path / "bundle")
    failed = recipe(folder)
    assert failed.returncode == 1
    assert f"photo {photo_id}: flags" in failed.stdout, failed.stdout
    assert f"photo {photo_id}: taken_at" in failed.stdout, failed.stdout


def test_the_recipe_fails_a_forged_signature_and_another_key(client, zone, tmp_path):
    issue = report(client, zone).json()
    folder = unzip(client, zone, issue["id"], tmp_path / "bundle")
    signed = json.loads((folder / "checkpoints.json").read_text())
    point = signed["checkpoints"][-1]
    point["signature"] = point["signature"][:-2] + (
        "00" if point["signature"][-2:] != "00" else "11"
    )
    (folder / "checkpoints.json").write_text(json.dumps(signed))
    failed = recipe(folder)
    assert failed.returncode == 1 and "does not verify" in failed.stdout, failed.stdout

    other = tmp_path / "other.pem"
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    failed = recipe(folder, "--public-key", str(other))
    assert failed.returncode == 1 and "signed by key" in failed.stdout, failed.stdout


@pytest.mark.parametrize("seed", [1, 2])
def test_the_scripts_ed25519_agrees_with_cryptography(seed):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from app.services.bundle_recipe import verify_bundle

    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    message = f"message {seed}".encode()
    signature = key.sign(message)
    assert verify_bundle.ed25519_verify(raw, message, signature)
    assert not verify_bundle.ed25519_verify(raw, message + b"!", signature)
    assert not verify_bundle.ed25519_verify(raw, message, bytes(64))
