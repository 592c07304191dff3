"""The sweep (app/services/sweep.py): what dead requests left goes, what live ones and committed
photos use stays. In-process on both engines, and against real server processes (uvicorn with
two workers on 127.0.0.1) killed with SIGKILL in the middle of a 12 MB upload."""

import hashlib
import io
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import insert
from sqlmodel import Session, select

from app import cli
from app.config import MB, Settings, get_settings
from app.db import get_engine
from app.demo.photos import make_jpeg
from app.main import create_app
from app.models import StorageClaim
from app.models.base import utcnow
from app.services.claims import Claim
from app.services.objects import open_store
from app.services.photos import ingest_photo
from app.services.storage import STALE_TEMP_S, Storage
from tests.factories import LAT, LON, Zone, jpeg, make_zone, report
from tests.servers import TrickledReport, free_port
from tests.stored import derivative_file, photo_files

ROOT = Path(__file__).resolve().parents[1]


def files_under(root: Path) -> dict[str, int]:
    """Every file under `root`, by relative path, with its size."""
    return {
        str(path.relative_to(root)): path.stat().st_size
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def plant(path: Path, data: bytes = b"left behind") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def plant_photo_files(storage: Storage, sha: str) -> list[Path]:
    """An original and its derivatives, as a request moves them into place."""
    return [plant(path) for path in photo_files(storage.root, sha)]


def fake_sha(seed: int) -> str:
    return hashlib.sha256(f"seed {seed}".encode()).hexdigest()


def committed_sha(client: TestClient, zone: Zone, seed: int) -> str:
    response = report(client, zone, photos=[jpeg(seed=seed)])
    assert response.status_code == 201, response.text
    return str(response.json()["photos"][0]["sha256"])


class Leftovers:
    """What dead requests left (to go) and what live ones hold and committed photos use (to
    stay), planted in one uploads folder and its database."""

    def __init__(self, settings: Settings, committed: str) -> None:
        storage = Storage(settings.upload_dir)
        tmp, root = storage.tmp_dir, storage.root
        self.storage = storage
        # A live request: its upload's temp file open (locked), a derivative named after it
        # (written and closed by a decoding process), and a claim on stored bytes.
        self.live_path, self.live_file = storage.open_temp()
        self.live_file.write(b"\xff\xd8 streaming in")
        self.live_claim = Claim(settings, open_store(settings))
        self.live_claim.add(fake_sha(1))
        self.keep = [
            self.live_path,
            plant(tmp / f"{self.live_path.name}-abcd1234"),
            *plant_photo_files(storage, fake_sha(1)),
            *photo_files(root, committed),
            plant(tmp / "ledger-fresh.xlsx"),  # no lock on it: by age
            plant(root / "derived" / "comparisons" / "1-1-0.jpg"),  # a cache, kept
        ]
        old = time.time() - STALE_TEMP_S - 60
        ledger = plant(tmp / "ledger-old.xlsx")
        os.utime(ledger, (old, old))
        # Dead requests: temp files nobody holds (however fresh), expired claims, and the
        # objects of an expired claim that no committed row has. An expired claim on
        # committed bytes leaves them.
        self.dead_temps = [
            plant(tmp / "up-dead0001"),
            plant(tmp / "up-dead0001-efgh5678"),
            plant(tmp / "up-dead0002-ijkl9012"),  # a derivative whose upload is gone
            ledger,
        ]
        self.dead_claims = [(fake_sha(2), "0123456789abcdef"), (committed, "fedcba9876543210")]
        with get_engine(settings.database_url).begin() as connection:
            past = utcnow() - timedelta(seconds=1)
            for sha, token in self.dead_claims:
                row = {"sha256": sha, "token": token, "expires_at": past}
                connection.execute(insert(StorageClaim).values(**row))
        self.dead_objects = plant_photo_files(storage, fake_sha(2))
        # Objects no row has and no claim names: only a full sweep (not the startup's) finds
        # them.
        self.unreferenced = [
            *plant_photo_files(storage, fake_sha(3)),
            plant(derivative_file(root, fake_sha(4), "thumb")),
        ]

    @property
    def dead(self) -> list[Path]:
        return [*self.dead_temps, *self.dead_objects]

    def lines(self, full: bool) -> list[str]:
        """What the sweep says it removes, in any order."""
        objects = [*self.dead_objects, *(self.unreferenced if full else [])]
        return sorted(
            [
                *map(str, self.dead_temps),
                *(f"claim {sha} {token}" for sha, token in self.dead_claims),
                *(path.relative_to(self.storage.root).as_posix() for path in objects),
            ]
        )

    def close(self) -> None:
        self.live_file.close()
        self.live_claim.release()


@pytest.fixture
def committed(client: TestClient, zone: Zone) -> str:
    return committed_sha(client, zone, seed=71)


@pytest.fixture
def leftovers(settings: Settings, committed: str) -> Iterator[Leftovers]:
    planted = Leftovers(settings, committed)
    yield planted
    planted.close()


def test_startup_removes_what_dead_requests_left(settings: Settings, leftovers: Leftovers) -> None:
    with TestClient(create_app(settings)):
        assert [path for path in leftovers.dead if path.exists()] == []
        assert [path for path in leftovers.keep if not path.exists()] == []
        assert all(path.exists() for path in leftovers.unreferenced)  # the periodic sweep's
        assert claim_rows(settings) == [(fake_sha(1), leftovers.live_claim.token)]


def claim_rows(settings: Settings) -> list[tuple[str, str]]:
    with Session(get_engine(settings.database_url)) as session:
        return sorted(session.exec(select(StorageClaim.sha256, StorageClaim.token)).all())


@pytest.fixture
def cli_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("GRIDPROOF_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("GRIDPROOF_UPLOAD_DIR", str(settings.upload_dir))
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def run_sweep(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    capsys.readouterr()
    assert cli.main(["sweep", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def test_gridproof_sweep_removes_unreferenced_files_and_keeps_used_ones(
    cli_settings: Settings, leftovers: Leftovers, capsys: pytest.CaptureFixture[str]
) -> None:
    root = cli_settings.upload_dir
    everything = files_under(root)
    going = leftovers.lines(full=True)

    dry = run_sweep(capsys, "--dry-run")

    assert files_under(root) == everything  # nothing removed
    assert sorted(line.removeprefix("would remove ") for line in dry[:-1]) == going
    assert dry[-1] == (
        "would remove 4 temp file(s), 2 dead claim(s), 7 unreferenced original(s) and derivative(s)"
    )

    lines = run_sweep(capsys)

    assert sorted(line.removeprefix("removed ") for line in lines[:-1]) == going
    assert lines[-1].startswith("removed 4 temp file(s), 2 dead claim(s), 7 unreferenced")
    assert [path for path in [*leftovers.dead, *leftovers.unreferenced] if path.exists()] == []
    assert [path for path in leftovers.keep if not path.exists()] == []
    assert run_sweep(capsys)[-1].startswith("removed 0 temp file(s), 0 dead claim(s), 0 ")


def test_a_claim_released_meanwhile_is_answered_by_the_committed_row(
    cli_settings: Settings, client: TestClient, zone: Zone, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bytes stored twice: the sweep never removes what a committed row has, claim or not."""
    sha = committed_sha(client, zone, seed=72)
    assert run_sweep(capsys)[-1].startswith("removed 0 temp file(s), 0 dead claim(s), 0 ")
    assert all(path.exists() for path in photo_files(cli_settings.upload_dir, sha))


# --- Real server processes ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def jpeg_12mb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 12 MP photo of noise at quality 94: 12.5 MB (a street scene compresses to 0.4 MB)."""
    noise = Image.frombytes("RGB", (4000, 3000), random.Random(12).randbytes(4000 * 3000 * 3))
    data = make_jpeg(image=noise, quality=94, lat=LAT, lon=LON)
    assert len(data) >= 12 * MB
    return data


class Server:
    """`uvicorn app.main:app --workers 2` in its own process group, SQLite and its own uploads."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.tmp = tmp
        self.uploads = tmp / "uploads"
        self.database_url = f"sqlite:///{tmp / 'server.db'}"
        self.env = {
            **os.environ,
            "GRIDPROOF_DATABASE_URL": self.database_url,
            "GRIDPROOF_UPLOAD_DIR": str(self.uploads),
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Server":
        self.port = free_port()
        command = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(self.port)]
        self.log = (self.tmp / "server.log").open("ab")
        self.process = subprocess.Popen(
            [*command, "--workers", "2"],
            cwd=self.tmp,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own, to be killed whole
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).is_success:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError((self.tmp / "server.log").read_text())

    def kill(self) -> None:
        """kill -9 of the server: its supervisor, workers and everything they started."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a connection still open: no graceful end
                self.kill()
                return
            self.log.close()

    def sweep(self, *argv: str) -> str:
        """`gridproof sweep` in a process of its own, on the server's settings."""
        done = subprocess.run(
            [sys.executable, "-m", "app", "sweep", *argv],
            cwd=self.tmp,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout


@pytest.fixture
def server_setup(
    tmp_path: Path, sqlite_template: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Server, str]]:
    """A migrated SQLite database with the test zone, and the worker's token."""
    server = Server(tmp_path, **getattr(request, "param", {}))
    (tmp_path / "server.db").write_bytes(sqlite_template.read_bytes())
    with Session(get_engine(server.database_url), expire_on_commit=False) as session:
        token = make_zone(session).tokens["grid_worker"]
    get_engine(server.database_url).dispose()
    yield server, token
    server.stop()


def spooled_temps(uploads: Path, at_least: int) -> list[Path]:
    """Wait until the server has an upload's temp file of at least this size (streamed in)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        temps = [p for p in (uploads / "tmp").glob("up-*") if p.stat().st_size >= at_least]
        if temps:
            return temps
        time.sleep(0.02)
    raise AssertionError(f"no temp file of {at_least} bytes in {uploads / 'tmp'}")


def test_a_server_killed_mid_upload_leaves_nothing_after_its_restart(
    server_setup: tuple[Server, str], jpeg_12mb: bytes
) -> None:
    server, token = server_setup
    server.start()
    status, _, _ = TrickledReport(server.port, token, [jpeg(seed=73)], pause=0.005).finish()
    assert status == 201
    before = files_under(server.uploads)
    assert len(before) == 3  # the committed photo's original and derivatives

    upload = TrickledReport(server.port, token, [jpeg_12mb], pause=0.005)
    upload.send(len(jpeg_12mb) // 2)
    spooled_temps(server.uploads, 4 * MB)
    server.kill()
    upload.sock.close()
    assert files_under(server.uploads) != before  # the killed upload's temp file

    server.start()

    assert files_under(server.uploads) == before


LIVE_SERVER = {"GRIDPROOF_SWEEP_INTERVAL_S": "0.2", "GRIDPROOF_IMAGE_PROCESSES": "1"}


@pytest.mark.parametrize("server_setup", [LIVE_SERVER], indirect=True)
def test_a_sweep_leaves_a_live_upload_alone(
    server_setup: tuple[Server, str], jpeg_12mb: bytes
) -> None:
    """Sweeps run meanwhile, in both workers every 0.2 s and by `gridproof sweep`: the upload
    held open in the middle of its body keeps its temp file and then succeeds (its derivatives
    written as temp files by a decoding process, moved into place while the sweeps go on)."""
    server, token = server_setup
    server.start()
    upload = TrickledReport(server.port, token, [jpeg_12mb], pause=0.005)
    upload.send(len(jpeg_12mb) // 2)
    (spool,) = spooled_temps(server.uploads, 4 * MB)
    inode = spool.stat().st_ino

    assert server.sweep().splitlines() == [
        "removed 0 temp file(s), 0 dead claim(s), 0 unreferenced original(s) and derivative(s)"
    ]
    time.sleep(1)  # some periodic sweeps of the server's workers

    assert spool.stat().st_ino == inode
    status, _, body = upload.finish()
    assert status == 201, body
    sha = hashlib.sha256(jpeg_12mb).hexdigest()
    assert sorted(files_under(server.uploads)) == sorted(
        str(path.relative_to(server.uploads)) for path in photo_files(server.uploads, sha)
    )


def test_sweeps_running_all_along_take_nothing_from_photos_being_ingested(
    tmp_path: Path,
) -> None:
    """A sweep of the temp files over and over while photos are ingested with a decoding
    process: the uploads' temp files are locked, their derivatives' (written and closed by the
    decoder) are live by their upload's name until the request moves them into place."""
    settings = Settings(upload_dir=tmp_path, image_processes=1)
    storage = Storage(tmp_path)
    stop = threading.Event()
    removed: list[Path] = []

    def sweep_all_along() -> None:
        while not stop.is_set():
            removed.extend(storage.dead_temps(remove=True))
            time.sleep(0.001)

    sweeper = threading.Thread(target=sweep_all_along)
    sweeper.start()
    try:
        ingested = [
            ingest_photo(io.BytesIO(make_jpeg(1600, 1200, seed=seed)), settings, storage)
            for seed in range(6)
        ]
    finally:
        stop.set()
        sweeper.join()
    assert removed == []
    assert len(files_under(tmp_path)) == 3 * len(ingested)
