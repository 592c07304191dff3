"""The S3-compatible backend of the object store (`objects.ObjectStore`), through boto3:
MinIO on-premises, a cloud's object storage, moto in the tests.

Objects are written once with a conditional put (`If-None-Match: *`, which S3, MinIO and moto
honour): a key that exists is refused with 412 and keeps its object. A store that answers
501 to the condition gets a HEAD and a plain put instead. Connection failures, timeouts and
refusals (5xx, access denied, a bucket gone) raise `StorageUnavailable`; retries are few and
short so that a request fails in seconds, not minutes, when the store is down.
"""

import functools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.config import Settings
from app.errors import StorageUnavailable
from app.services.objects import ObjectMissing, StoreNotUsable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = {"404", "NoSuchKey", "NotFound"}
_EXISTS = {"412", "PreconditionFailed"}
_UNCONDITIONAL = {"501", "NotImplemented"}
_CONFIG = Config(
    connect_timeout=3,
    read_timeout=30,
    retries={"max_attempts": 2, "mode": "standard"},
    # Checksums only where the protocol requires them: every S3-compatible server takes that.
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
)


def _content_type(key: str) -> str:
    return "image/jpeg" if key.endswith(".jpg") else "application/octet-stream"


class S3Store:
    """Objects in `bucket` under `prefix` (keys as in `objects`)."""

    def __init__(self, client: "S3Client", bucket: str, prefix: str, endpoint: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint or "AWS S3"

    @classmethod
    def of(cls, settings: Settings) -> "S3Store":
        if not settings.s3_bucket:
            raise StoreNotUsable("GRIDPROOF_STORAGE=s3 needs GRIDPROOF_S3_BUCKET (it is empty)")
        return _store(
            settings.s3_endpoint, settings.s3_bucket, settings.s3_prefix, settings.s3_region
        )

    def put_files(self, files: list[tuple[Path, str]], created: list[str]) -> None:
        for temp, key in files:
            if self._put_once(temp, key):
                created.append(key)
            temp.unlink(missing_ok=True)

    def _put_once(self, temp: Path, key: str) -> bool:
        try:
            with open(temp, "rb") as body:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.prefix + key,
                    Body=body,
                    ContentType=_content_type(key),
                    IfNoneMatch="*",
                )
            return True
        except ClientError as exc:
            code = _code(exc)
            if code in _EXISTS:
                return False
            if code not in _UNCONDITIONAL:
                raise _unavailable(exc) from exc
        except BotoCoreError as exc:
            raise _unavailable(exc) from exc
        if self.exists(key):
            return False
        with open(temp, "rb") as body, _translated():
            self.client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=body, ContentType=_content_type(key)
            )
        return True

    def open(self, key: str) -> BinaryIO:
        with _translated(key):
            answer = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        return cast(BinaryIO, answer["Body"])

    def size(self, key: str) -> int | None:
        try:
            with _translated(key):
                return self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)[
                    "ContentLength"
                ]
        except ObjectMissing:
            return None

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def delete(self, keys: Iterable[str]) -> None:
        batch: list[str] = []
        for key in keys:
            batch.append(key)
            if len(batch) == 1000:  # the most one DeleteObjects takes
                self._delete(batch)
                batch = []
        if batch:
            self._delete(batch)

    def _delete(self, keys: list[str]) -> None:
        objects: Any = [{"Key": self.prefix + key} for key in keys]
        with _translated():
            answer = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )
        errors = [e for e in answer.get("Errors", []) if e.get("Code") not in _MISSING]
        if errors:
            raise StorageUnavailable(f"the object store did not delete {errors[0].get('Key')}")

    def keys(self, prefix: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        with _translated():
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix) :]

    def local_path(self, key: str) -> Path | None:
        return None

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in _MISSING | {"NoSuchBucket"}:
                raise StoreNotUsable(
                    f"GRIDPROOF_S3_BUCKET: the bucket {self.bucket!r} does not exist at "
                    f"{self.endpoint} (create it, or set GRIDPROOF_S3_BUCKET to one that does)"
                ) from exc
            raise StoreNotUsable(
                f"GRIDPROOF_S3_BUCKET: the bucket {self.bucket!r} at {self.endpoint} refused "
                f"access ({_code(exc)}): check the credentials (AWS_ACCESS_KEY_ID …)"
            ) from exc
        except BotoCoreError as exc:
            raise StoreNotUsable(
                f"GRIDPROOF_S3_ENDPOINT: the object store at {self.endpoint} does not answer "
                f"({exc})"
            ) from exc

    def writable(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError):
            return False
        return True


@functools.lru_cache(maxsize=8)
def _store(endpoint: str, bucket: str, prefix: str, region: str) -> S3Store:
    """One client per store: making one costs tens of milliseconds, and clients are
    thread-safe."""
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint or None, region_name=region or None, config=_CONFIG
    )
    return S3Store(client, bucket, prefix, endpoint)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _unavailable(exc: Exception) -> StorageUnavailable:
    return StorageUnavailable(f"the object store failed: {exc}", zh=f"照片存储出错：{exc}")


@contextmanager
def _translated(key: str | None = None) -> Iterator[None]:
    """Turn boto3's errors into ours: a missing key (when reading one) into ObjectMissing,
    anything else into StorageUnavailable."""
    try:
        yield
    except ClientError as exc:
        if key is not None and _code(exc) in _MISSING:
            raise ObjectMissing(key) from exc
        raise _unavailable(exc) from exc
    except BotoCoreError as exc:
        raise _unavailable(exc) from exc
