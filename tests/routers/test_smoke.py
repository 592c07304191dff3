from tests.factories import report


def test_report_and_read_back(client, zone):
    response = report(client, zone)
    assert response.status_code == 201, response.text
    issue = response.json()
    assert issue["status"] == "reported"
    got = client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("grid_worker"))
    assert got.json()["code"] == issue["code"]
