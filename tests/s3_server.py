"""An S3-protocol server for the tests: moto in server mode (`moto_server`), a subprocess on a
free port of 127.0.0.1. Reusable: `MotoServer` starts and stops one (a test that must kill its
own server mid-request starts a separate one), the `s3_server` fixture shares one per test
session, and `s3_settings` gives a fresh bucket per test.

Credentials are dummies that moto accepts; they reach boto3 the usual way (environment).
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from app.config import Settings
from tests.servers import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoServer:
    """One `moto_server` process; `endpoint` is its URL once `start` returns."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "MotoServer":
        moto = Path(sys.executable).with_name("moto_server")
        self.process = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **CREDENTIALS},
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1)
                return self
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """Stop it at once (SIGKILL), as a store that goes away does."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def new_bucket(self) -> str:
        name = f"gp-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    """One moto server for the test session (per xdist worker)."""
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3_bucket(s3_server: MotoServer, s3_credentials: None) -> tuple[str, str]:
    """(endpoint URL, a fresh empty bucket) for this test."""
    return s3_server.endpoint, s3_server.new_bucket()


def s3_settings(
    database_url: str, tmp_path: Path, endpoint: str, bucket: str, **more: Any
) -> Settings:
    """Settings on this database with the photos in this bucket (the local folder keeps only
    the uploads spooled on their way in); `more` sets other settings."""
    return Settings(
        database_url=database_url,
        upload_dir=tmp_path / "uploads",
        storage="s3",
        s3_endpoint=endpoint,
        s3_bucket=bucket,
        **more,
    )
