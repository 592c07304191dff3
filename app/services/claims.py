"""Claims of the SHA-256s that requests in progress store: rows of `storage_claims`, seen by
every replica on the one database.

Objects are content-addressed, so two requests with the same bytes share them: the second
finds them stored and creates nothing. Should the first then fail, it must not remove objects
that the second is about to reference; should both fail, the last must remove them. So a
request claims each SHA-256 before its objects are put (`Claim.add`), and one that gives up
removes a SHA-256's objects only when no other live claim has it and no committed photo row
uses it (`Claim.release_and_remove`). A claim lives until its request commits (its rows go
away in the request's own write transaction, `Claim.release_in`, so the photo rows and the
end of the claim are seen together) or gives up, or until `claim_ttl_s` has passed: then it
is a dead request's (a replica killed mid-upload), and the sweep removes it and the objects
nobody uses (app/services/sweep.py).

Taking a claim, and the check-and-remove of giving up (or of the sweep), hold a lock per
SHA-256 for their transaction, so they never interleave: on PostgreSQL an advisory
transaction lock, on SQLite the database's write lock (every write transaction is BEGIN
IMMEDIATE). A claim taken after a removal finds the objects gone and stores them again.
"""

import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Connection, delete, insert, text
from sqlmodel import col, select

from app.config import Settings
from app.db import get_engine
from app.errors import StorageUnavailable, logger
from app.models.base import utcnow
from app.models.photo import Photo
from app.models.storage_claim import StorageClaim
from app.services.objects import ObjectStore, photo_keys
from app.services.storage import Storage

# The first key of PostgreSQL's two-key advisory locks that guard a SHA-256's objects.
LOCK_SPACE = 0x67700000
# The advisory lock (SWEEP_SPACE, 0) held by the one sweep under way, across replicas.
SWEEP_SPACE = LOCK_SPACE + 1

_claims = StorageClaim.__table__  # type: ignore[attr-defined]


class Claim:
    """The SHA-256s one request stores, claimed in the database until it commits or gives up."""

    def __init__(self, settings: Settings, store: ObjectStore) -> None:
        self.settings = settings
        self.store = store
        self.token = secrets.token_hex(16)
        self.shas: set[str] = set()

    def add(self, sha256: str) -> None:
        """Claim these bytes (committed at once, so every replica sees it) before their
        objects are put."""
        if sha256 in self.shas:  # the same bytes twice in one request: claimed once
            return
        expires_at = utcnow() + timedelta(seconds=self.settings.claim_ttl_s)
        with locked(self.settings, [sha256]) as connection:
            row = {"sha256": sha256, "token": self.token, "expires_at": expires_at}
            connection.execute(insert(_claims).values(**row))
        self.shas.add(sha256)

    def release_in(self, connection: Connection) -> None:
        """End the claim in the request's own write transaction, whose rows reference what it
        stored: one commit fewer, and no moment when both the rows and the claim are seen.
        Once that commits, call `released`; should it fail, `release_and_remove`."""
        if self.shas:
            connection.execute(delete(_claims).where(_claims.c.token == self.token))

    def released(self) -> None:
        """The transaction of `release_in` has committed: nothing is left to release."""
        self.shas = set()

    def release(self) -> None:
        """The request has committed (or stored nothing): its rows reference what it stored."""
        if not self.shas:
            return
        with get_engine(self.settings.database_url).begin() as connection:
            self.release_in(connection)
        self.released()

    def release_and_remove(self) -> None:
        """The request gives up: remove the objects of its SHA-256s that nobody else needs.
        Should the store refuse, the claims stay, and the sweep removes them (and the
        objects) once they expire."""
        if not self.shas:
            return
        try:
            with locked(self.settings, self.shas) as connection:
                connection.execute(delete(_claims).where(_claims.c.token == self.token))
                unused = (
                    self.shas - live_claimed(connection, self.shas) - used(connection, self.shas)
                )
                self.store.delete(key for sha in sorted(unused) for key in photo_keys(sha))
        except StorageUnavailable:
            logger.warning("the object store refused a removal: the sweep retries it later")
            return
        self.shas = set()


@contextmanager
def locked(settings: Settings, shas: Iterable[str]) -> Iterator[Connection]:
    """A write transaction holding the lock of each of these SHA-256s (see the module)."""
    with get_engine(settings.database_url).begin() as connection:
        if connection.dialect.name == "postgresql":
            for key in sorted({_lock_key(sha) for sha in shas}):  # one order: no deadlock
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:space, :key)"),
                    {"space": LOCK_SPACE, "key": key},
                )
        yield connection


def live_claimed(connection: Connection, shas: set[str]) -> set[str]:
    """Those of the SHA-256s that an unexpired claim has."""
    query = select(StorageClaim.sha256).where(
        col(StorageClaim.sha256).in_(shas), col(StorageClaim.expires_at) > utcnow()
    )
    return set(connection.execute(query).scalars())


def used(connection: Connection, shas: set[str]) -> set[str]:
    """Those of the SHA-256s that committed photo rows have."""
    if not shas:
        return set()
    query = select(Photo.sha256).where(col(Photo.sha256).in_(shas))
    return set(connection.execute(query).scalars())


def expired(settings: Settings) -> list[tuple[str, str]]:
    """(sha256, token) of the claims whose request is gone (their time has passed)."""
    query = (
        select(StorageClaim.sha256, StorageClaim.token)
        .where(col(StorageClaim.expires_at) <= utcnow())
        .order_by(col(StorageClaim.sha256))
    )
    with get_engine(settings.database_url).connect() as connection:
        return [(sha, token) for sha, token in connection.execute(query)]


def drop_expired(connection: Connection, shas: set[str]) -> None:
    connection.execute(
        delete(_claims).where(_claims.c.sha256.in_(shas), _claims.c.expires_at <= utcnow())
    )


@contextmanager
def sweep_lock(settings: Settings, storage: Storage, wait: bool) -> Iterator[bool]:
    """One sweep at a time across replicas: on PostgreSQL a session advisory lock, held on a
    connection of its own for the sweep; on SQLite (one machine) the upload folder's flock.
    Yields False (without waiting) when `wait` is False and another sweep is under way."""
    engine = get_engine(settings.database_url)
    if engine.dialect.name != "postgresql":
        with storage.sweeping(wait) as ours:
            yield ours
        return
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        args = {"space": SWEEP_SPACE, "key": 0}
        if wait:
            connection.execute(text("SELECT pg_advisory_lock(:space, :key)"), args)
            ours = True
        else:
            ours = bool(
                connection.execute(text("SELECT pg_try_advisory_lock(:space, :key)"), args).scalar()
            )
        try:
            yield ours
        finally:
            if ours:
                connection.execute(text("SELECT pg_advisory_unlock(:space, :key)"), args)


def _lock_key(sha256: str) -> int:
    """A 32-bit signed key from the hash's first 8 hex digits (a collision only serialises)."""
    return int(sha256[:8], 16) - 2**31
