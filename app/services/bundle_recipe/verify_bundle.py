#!/usr/bin/env python3
"""Check a Gridproof evidence bundle offline, with Python's standard library only.

Run it in the unzipped bundle:  python3 verify_bundle.py [--public-key PUBLISHED.pem]
                                                         [--checkpoints SAVED.json]
--public-key: the server's public key as you obtained it yourself (GET /api/v1/audit/checkpoints
  or the operator); without it the bundle's own public_key.pem is used and its key id printed,
  to compare with the published one.
--checkpoints: an answer of GET /api/v1/audit/checkpoints you saved earlier; its signatures for
  this issue are checked against the events too.

Exit 0 when everything holds, 1 with one line per problem. It checks: every original hashes to
its name; the audit chain (events.json) links and hashes; every photo's facts in manifest.json
are what the chain recorded; every signed checkpoint verifies under the public key (Ed25519,
RFC 8032) and its (seq, hash) is in the chain; the last event is covered by a checkpoint.
"""

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
TYPE = "gridproof-checkpoint-v1"
EVENT_KEYS = ("seq", "at", "actor", "action", "from_status", "to_status", "note", "data")
PHOTO_FACTS = ("kind", "sha256", "taken_at", "lat", "lon", "location_source", "flags")

# --- Ed25519 verification (RFC 8032, section 5.1.7) ------------------------------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int, int, int]


def _recover_x(y: int, sign: int) -> int | None:
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P)
    if x2 % P == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    return P - x if (x & 1) != sign else x


def _add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % P, g * h % P, f * g % P, e * h % P


def _mul(scalar: int, point: Point) -> Point:
    result: Point = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _decompress(data: bytes) -> Point | None:
    y = int.from_bytes(data, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


_GY = 4 * pow(5, P - 2, P) % P
_GX = _recover_x(_GY, 0)
assert _GX is not None
BASE: Point = (_GX, _GY, 1, _GX * _GY % P)


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    if len(public) != 32 or len(signature) != 64:
        return False
    a, r = _decompress(public), _decompress(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % L
    left, right = _mul(s, BASE), _add(r, _mul(h, a))
    return (left[0] * right[2] - right[0] * left[2]) % P == 0 and (
        left[1] * right[2] - right[1] * left[2]
    ) % P == 0


def raw_public_key(pem: str) -> bytes:
    """The 32 bytes of an Ed25519 SubjectPublicKeyInfo PEM."""
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    der = base64.b64decode(body)
    if len(der) != 44 or der[:12] != bytes.fromhex("302a300506032b6570032100"):
        raise ValueError("not an Ed25519 public key")
    return der[12:]


# --- The bundle ------------------------------------------------------------------------------


def canonical(body: dict[str, Any], ascii_only: bool = False) -> bytes:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only)
    return text.encode()


def chain_problems(issue_id: int, events: list[dict[str, Any]]) -> list[str]:
    problems, previous = [], GENESIS
    for expected, event in enumerate(events, start=1):
        where = f"event {event.get('seq')}"
        if event["seq"] != expected:
            problems.append(f"{where}: expected seq {expected} (an event is missing)")
        if event["prev_hash"] != previous:
            problems.append(f"{where}: prev_hash is not the previous event's hash")
        body = {"issue_id": issue_id, "prev_hash": event["prev_hash"]}
        body |= {key: event[key] for key in EVENT_KEYS}
        if hashlib.sha256(canonical(body)).hexdigest() != event["hash"]:
            problems.append(f"{where}: hash does not match the event's content")
        previous = event["hash"]
    return problems


def photo_problems(manifest: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    recorded = {}
    for event in events:
        for ref in event["data"].get("photos", []):
            recorded[ref["id"]] = (event["seq"], ref)
    problems = []
    for photo in manifest["photos"]:
        if photo["id"] not in recorded:
            problems.append(f"photo {photo['id']}: recorded by no event of the chain")
            continue
        seq, ref = recorded[photo["id"]]
        for key in PHOTO_FACTS:
            if key in ref and ref[key] != photo[key]:
                problems.append(
                    f"photo {photo['id']}: {key} is {photo[key]!r}, "
                    f"event {seq} records {ref[key]!r}"
                )
        for key, value in (ref.get("exif") or {}).items():
            if photo["exif"].get(key) != value:
                problems.append(f"photo {photo['id']}: exif {key} differs from event {seq}")
    return problems


def original_problems(folder: Path, manifest: dict[str, Any]) -> list[str]:
    problems = []
    for path in sorted((folder / "originals").glob("*")):
        if hashlib.sha256(path.read_bytes()).hexdigest() != path.name.split(".")[0]:
            problems.append(f"{path.name}: the bytes do not hash to the file's name")
    for photo in manifest["photos"]:
        if photo.get("original_sha256_matches") and not (folder / photo["file"]).exists():
            problems.append(f"photo {photo['id']}: {photo['file']} is not in the bundle")
    return problems


def checkpoint_problems(
    issue_id: int, events: list[dict[str, Any]], checkpoints: list[dict[str, Any]], key: bytes
) -> list[str]:
    kid = hashlib.sha256(key).hexdigest()[:16]
    hashes = {event["seq"]: event["hash"] for event in events}
    problems = []
    for point in checkpoints:
        if point["issue_id"] != issue_id:
            continue
        where = f"checkpoint of event {point['seq']} signed at {point['signed_at']}"
        fields = ("issue_id", "seq", "hash", "signed_at")
        message = canonical({"type": TYPE, **{k: point[k] for k in fields}}, ascii_only=True)
        if point["key_id"] != kid:
            problems.append(f"{where}: signed by key {point['key_id']}, not {kid}")
        elif not ed25519_verify(key, message, bytes.fromhex(point["signature"])):
            problems.append(f"{where}: the signature does not verify")
        if hashes.get(point["seq"]) != point["hash"]:
            problems.append(
                f"{where}: the chain's event {point['seq']} is "
                f"{hashes.get(point['seq'], 'missing')}, signed {point['hash']} "
                "(re-chained or cut after it was signed)"
            )
    ours = [p for p in checkpoints if p["issue_id"] == issue_id]
    if events and not any(p["seq"] == events[-1]["seq"] for p in ours):
        problems.append(f"the last event ({events[-1]['seq']}) is covered by no checkpoint")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--public-key", type=Path)
    parser.add_argument("--checkpoints", type=Path)
    parser.add_argument("--bundle", type=Path, default=Path("."), help="the unzipped bundle")
    args = parser.parse_args(argv)
    folder = args.bundle
    manifest = json.loads((folder / "manifest.json").read_text())
    events = json.loads((folder / "events.json").read_text())
    signed = json.loads((folder / "checkpoints.json").read_text())
    issue_id = manifest["issue"]["id"]
    pem = (args.public_key or folder / "public_key.pem").read_text()
    key = raw_public_key(pem)
    checkpoints = list(signed["checkpoints"])
    if args.checkpoints:
        checkpoints += json.loads(args.checkpoints.read_text())["items"]
    problems = original_problems(folder, manifest)
    if events != manifest["events"]:
        problems.append("events.json is not the manifest's events")
    problems += chain_problems(issue_id, events)
    problems += photo_problems(manifest, events)
    problems += checkpoint_problems(issue_id, events, checkpoints, key)
    for problem in problems:
        print(f"FAIL {problem}")
    print(
        f"public key id {hashlib.sha256(key).hexdigest()[:16]}: compare it with the published one"
    )
    verdict = "FAILED" if problems else "OK"
    print(
        f"issue {manifest['issue']['code']}: {len(events)} event(s), "
        f"{len(checkpoints)} checkpoint(s): {verdict}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
