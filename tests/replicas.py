"""Replicas as operators run them: `gridproof serve --no-migrate` PROCESSES (real uvicorn), each
with its own local folder, on one PostgreSQL database and one S3-protocol server, and the
`gridproof` command (migrate, sweep, verify) run as a process against the same configuration.

Used by tests/live/test_replicas.py and bench/replicas.py. Nothing here shares a folder between
replicas: what they share is the database, the bucket and their configuration (the signing
secret and the audit key), as docker-compose.yml has it.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.s3_server import CREDENTIALS
from tests.servers import free_port

GRIDPROOF = str(Path(sys.executable).with_name("gridproof"))
SIGNING_SECRET = "replicas-share-this-secret"


@dataclass(frozen=True)
class Cluster:
    """What every replica and command of one installation is given."""

    database_url: str
    s3_endpoint: str
    bucket: str
    root: Path  # each replica's folder and the shared key file live under it
    prefix: str = "photos/"
    extra: dict[str, str] = field(default_factory=dict)  # more GRIDPROOF_* settings

    @property
    def audit_key_file(self) -> Path:
        return self.root / "secrets" / "audit-ed25519.pem"

    def environment(self, upload_dir: Path) -> dict[str, str]:
        """The process environment: this machine's, less any GRIDPROOF_* of the caller's."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPROOF_")}
        return {
            **inherited,
            **CREDENTIALS,
            "GRIDPROOF_DATABASE_URL": self.database_url,
            "GRIDPROOF_UPLOAD_DIR": str(upload_dir),
            "GRIDPROOF_STORAGE": "s3",
            "GRIDPROOF_S3_ENDPOINT": self.s3_endpoint,
            "GRIDPROOF_S3_BUCKET": self.bucket,
            "GRIDPROOF_S3_PREFIX": self.prefix,
            "GRIDPROOF_SIGNING_SECRET": SIGNING_SECRET,
            "GRIDPROOF_AUDIT_KEY_FILE": str(self.audit_key_file),
            "GRIDPROOF_WEBHOOK_WORKER": "false",
            **self.extra,
        }

    def command(
        self, *args: str, folder: str = "cli", check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`gridproof args…` as a process, with its own local folder under root."""
        home = self.root / folder
        home.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [GRIDPROOF, *args],
            cwd=home,  # no .env of the repository is read
            env=self.environment(home / "uploads"),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"gridproof {' '.join(args)}: {done.returncode}\n{done.stderr}")
        return done

    def make_audit_key(self) -> None:
        """The one key both replicas sign with, made once outside them (as for compose)."""
        self.command("checkpoint", "--public-key")
        self.audit_key_file.chmod(0o400)  # read-only, as a mounted secret


class Replica:
    """One `gridproof serve --no-migrate` process on a free port of 127.0.0.1."""

    def __init__(self, cluster: Cluster, name: str, *serve_options: str) -> None:
        self.cluster = cluster
        self.name = name
        self.folder = cluster.root / name  # its own: no folder is shared
        self.serve_options = serve_options or ("--image-processes", "0")
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def upload_dir(self) -> Path:
        return self.folder / "uploads"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60) -> "Replica":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        command = [GRIDPROOF, "serve", "--no-migrate", "--port", str(self.port)]
        with open(self.folder / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [*command, *self.serve_options],
                cwd=self.folder,
                env=self.cluster.environment(self.upload_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its decoding processes go with it on stop
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} was not ready in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def kill(self) -> None:
        """kill -9 of the server and everything it started: no cleanup of any kind runs."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def replicas(
    cluster: Cluster, *names: str, serve_options: tuple[str, ...] = ()
) -> Iterator[list[Replica]]:
    """These replicas started (in turn) and stopped at the end, whatever happens."""
    with ExitStack() as stack:
        started = []
        for name in names:
            replica = Replica(cluster, name, *serve_options)
            stack.callback(replica.stop)
            started.append(replica.start())
        yield started
