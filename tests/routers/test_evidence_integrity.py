"""The evidence re-hashes the originals it ships, and an original that no longer matches its
SHA-256 is never served under it (issue 17 item 5)."""

import io
import zipfile

from tests.factories import assert_problem, jpeg, report
from tests.stored import original_file


def test_a_changed_original_is_said_left_out_and_never_served(client, zone, settings):
    first, second = jpeg(seed=3), jpeg(seed=4)
    issue = report(client, zone, photos=[first, second]).json()
    evidence = client.get(f"/api/v1/issues/{issue['id']}/evidence", headers=zone.headers("auditor"))
    body = evidence.json()
    assert body["originals_rehashed"] is True
    assert [p["original_sha256_matches"] for p in body["photos"]] == [True, True]
    good, bad = body["photos"]
    original = client.get(f"/api/v1/photos/{bad['id']}/original", headers=zone.headers("auditor"))
    assert original.status_code == 200 and original.content == second

    path = original_file(settings.upload_dir, bad["sha256"])
    path.write_bytes(second[:-4] + b"0000")
    again = client.get(f"/api/v1/issues/{issue['id']}/evidence", headers=zone.headers("auditor"))
    assert [p["original_sha256_matches"] for p in again.json()["photos"]] == [True, False]
    assert again.headers["etag"] != evidence.headers["etag"]
    headers = zone.headers("auditor")
    refused = client.get(f"/api/v1/photos/{bad['id']}/original", headers=headers)
    assert_problem(refused, 500, "original_corrupted")
    assert bad["sha256"] not in refused.headers.get("etag", "")
    assert client.get(f"/api/v1/photos/{good['id']}/original", headers=headers).content == first

    bundle = client.get(f"/api/v1/issues/{issue['id']}/evidence.zip", headers=headers)
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        names = archive.namelist()
        assert good["file"] in names and bad["file"] not in names
        assert "original_sha256_matches" in archive.read("README.txt").decode()

    path.unlink()
    missing = client.get(f"/api/v1/issues/{issue['id']}/evidence", headers=headers).json()
    assert [p["original_sha256_matches"] for p in missing["photos"]] == [True, None]
