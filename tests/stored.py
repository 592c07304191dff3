"""Where the local backend of the object store keeps a photo's objects (the upload folder's
layout, which existing installs have): for tests that look at or tamper with the files."""

from pathlib import Path

from app.services.objects import LocalStore, derivative_key, original_key, photo_keys


def original_file(root: Path, sha256: str) -> Path:
    return LocalStore(root).path(original_key(sha256))


def derivative_file(root: Path, sha256: str, size: str) -> Path:
    return LocalStore(root).path(derivative_key(sha256, size))


def photo_files(root: Path, sha256: str) -> list[Path]:
    """The original and the derivatives of these bytes."""
    return [LocalStore(root).path(key) for key in photo_keys(sha256)]
