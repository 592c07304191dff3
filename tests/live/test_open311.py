"""Open311 GeoReport v2 against a live server, in XML (parsed with a real parser) and JSON."""

import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import httpx
import pytest
import requests
from sqlmodel import func, select

from app.models import Issue, IssueContact
from app.models.base import utcnow
from app.services import grid_import, signing
from tests import factories, grid_samples
from tests.live.conftest import Live

V2 = "/open311/v2"
# The element order of the spec's examples.
SERVICE = ["service_code", "service_name", "description", "metadata", "type", "keywords", "group"]
ATTRIBUTE = [
    "variable", "code", "datatype", "required", "datatype_description", "order", "description",
]  # fmt: skip
REQUEST = [
    "service_request_id", "status", "status_notes", "service_name", "service_code",
    "description", "agency_responsible", "service_notice", "requested_datetime",
    "updated_datetime", "expected_datetime", "address", "address_id", "zipcode", "lat", "long",
    "media_url",
]  # fmt: skip
CREATED = ["service_request_id", "token", "service_notice", "account_id"]


def xml(response: httpx.Response, status: int = 200) -> ET.Element:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert response.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(response.content)


def tags(element: ET.Element) -> list[str]:
    return [child.tag for child in element]


def post(live: Live, fmt: str = "xml", files: Any = None, **fields: Any) -> httpx.Response:
    data = {"api_key": live.key, "service_code": "flyposter", "lat": "34.7512", "long": "113.7801"}
    data |= {k.replace("attribute_", "attribute["): v for k, v in fields.items()}
    data = {k + ("]" if k.startswith("attribute[") else ""): v for k, v in data.items()}
    return httpx.post(f"{live.url}{V2}/requests.{fmt}", data=data, files=files, timeout=30)


def issue_count(live: Live) -> int:
    with live.session() as session:
        return session.exec(select(func.count()).select_from(Issue)).one()


def test_discovery_services_and_definition_in_xml_and_json(live: Live) -> None:
    root = xml(httpx.get(f"{live.url}{V2}/discovery.xml"))
    assert root.tag == "discovery"
    assert tags(root) == ["changeset", "contact", "key_service", "endpoints"]
    endpoint = root.find("endpoints/endpoint")
    assert endpoint is not None
    assert tags(endpoint) == ["specification", "url", "changeset", "type", "formats"]
    assert [f.text for f in endpoint.findall("formats/format")] == ["text/xml", "application/json"]
    assert httpx.get(f"{live.url}{V2}/discovery.json").json()["endpoints"][0]["url"].endswith(V2)

    root = xml(httpx.get(f"{live.url}{V2}/services.xml"))
    assert root.tag == "services"
    services = root.findall("service")
    assert {s.findtext("service_code") for s in services} >= set(factories.CONTRACT_CATEGORIES)
    assert all(tags(s) == SERVICE for s in services)
    listed = httpx.get(f"{live.url}{V2}/services.json").json()
    assert [list(s) for s in listed] == [SERVICE] * len(listed)
    assert (
        next(s for s in listed if s["service_code"] == "flyposter")["service_name"] == "非法小广告"
    )

    root = xml(httpx.get(f"{live.url}{V2}/services/bare_soil.xml"))
    assert root.tag == "service_definition"
    assert tags(root) == ["service_code", "attributes"]
    attribute = root.find("attributes/attribute")
    assert attribute is not None and tags(attribute) == ATTRIBUTE
    assert attribute.findtext("code") == "quantity" and "m²" in (
        attribute.findtext("description") or ""
    )
    definition = httpx.get(f"{live.url}{V2}/services/bare_soil.json").json()
    assert definition["attributes"][0]["datatype"] == "number"


def test_post_form_encoded_then_read_it_back(live: Live) -> None:
    response = post(
        live,
        description="电线杆上的小广告",
        attribute_quantity="3",
        address_string="经开区第五大街",
        email="citizen@example.cn",
        first_name="三",
        last_name="张",
        phone="13800000000",
    )
    request = xml(response, 201).find("request")
    assert request is not None and tags(request) == CREATED
    code = request.findtext("service_request_id")
    token = request.findtext("token")

    one = xml(httpx.get(f"{live.url}{V2}/requests/{code}.xml", params={"api_key": live.key}))
    found = one.find("request")
    assert found is not None and tags(found) == REQUEST
    assert found.findtext("status") == "open" and found.findtext("service_code") == "flyposter"
    assert found.findtext("agency_responsible") == "经开区"
    assert found.findtext("requested_datetime", "").endswith("+08:00")
    body = httpx.get(f"{live.url}{V2}/requests/{code}.json", params={"api_key": live.key}).json()
    assert list(body[0]) == REQUEST and body[0]["lat"] == pytest.approx(34.7512)

    by_token = xml(httpx.get(f"{live.url}{V2}/tokens/{token}.xml", params={"api_key": live.key}))
    assert by_token.findtext("request/service_request_id") == code
    assert httpx.get(
        f"{live.url}{V2}/tokens/{token}.json", params={"api_key": live.key}
    ).json() == [{"service_request_id": code, "token": token}]

    # The JSON API shows the source, never the contact; the sender reads it with extensions.
    issue = next(i for i in _issues(live) if i["code"] == code)
    assert issue["source"] == "12345" and issue["quantity"] == 3
    assert "13800000000" not in str(issue)
    extended = httpx.get(
        f"{live.url}{V2}/requests/{code}.json", params={"api_key": live.key, "extensions": "true"}
    ).json()[0]["extended_attributes"]
    assert extended["phone"] == "13800000000" and extended["updates"][0]["action"] == "report"
    with live.session() as session:
        assert session.exec(select(IssueContact)).one().email == "citizen@example.cn"


def _issues(live: Live) -> list[dict[str, Any]]:
    with live.api("d_super") as client:
        items: list[dict[str, Any]] = client.get("/api/v1/issues").json()["items"]
        return items


def test_another_external_system_does_not_see_the_contact(live: Live) -> None:
    from app.services import auth

    code = xml(post(live, phone="13900000000"), 201).findtext("request/service_request_id")
    with live.session() as session:
        _user, other = auth.create_user(session, "suishoupai", "external", "D")
    body = httpx.get(
        f"{live.url}{V2}/requests/{code}.json", params={"api_key": other, "extensions": "true"}
    ).json()
    assert "phone" not in body[0]["extended_attributes"]


def test_multipart_media_goes_through_the_photo_pipeline(live: Live) -> None:
    photo = factories.jpeg(seed=77)
    files = [("media", ("street.jpg", photo, "image/jpeg"))]
    response = post(live, "json", files=files)
    assert response.status_code == 201, response.text
    code = response.json()[0]["service_request_id"]
    issue = next(i for i in _issues(live) if i["code"] == code)
    assert len(issue["photos"]) == 1 and issue["photos"][0]["width"] == 640
    body = httpx.get(f"{live.url}{V2}/requests/{code}.json", params={"api_key": live.key}).json()
    media = httpx.get(body[0]["media_url"])  # no token: the URL is signed
    assert media.status_code == 200 and media.headers["content-type"] == "image/jpeg"
    assert media.content.startswith(b"\xff\xd8")
    url = body[0]["media_url"]
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    refused = httpx.get(tampered)
    assert refused.status_code == 403 and refused.json()["code"] == "signature_invalid"
    assert url.startswith(f"{live.url}/media/photos/{issue['photos'][0]['id']}/large.jpg?")
    photo_id = issue["photos"][0]["id"]
    signer = signing.load_signer(live.settings)
    expired = signer.links(utcnow() - timedelta(days=3)).url(photo_id, "large")
    assert httpx.get(live.url + expired).status_code == 403
    # The path of earlier releases takes the same signatures (links handed out stay valid).
    query = url.split("?", 1)[1]
    legacy = httpx.get(f"{live.url}{V2}/media/{photo_id}/large.jpg?{query}")
    assert legacy.status_code == 200 and legacy.content == media.content
    # … and answers in the spec's error list.
    legacy_expired = f"{live.url}{V2}/media/{photo_id}/large.jpg?{expired.split('?', 1)[1]}"
    description = xml(httpx.get(legacy_expired), 403).findtext("error/description", "")
    assert description.startswith("link_expired")
    legacy_tampered = f"{live.url}{V2}/media/{photo_id}/large.jpg?{tampered.split('?', 1)[1]}"
    assert xml(httpx.get(legacy_tampered), 403).findtext("error/code") == "403"
    # A photo the pipeline refuses refuses the report, and nothing is written.
    before = issue_count(live)
    gif = [("media", ("x.gif", factories.sample("hostile__gif_php_polyglot.gif"), "image/gif"))]
    refused = post(live, "xml", files=gif)
    assert xml(refused, 400).findtext("error/description", "").startswith("unsupported_media_type")
    assert issue_count(live) == before


def test_bad_input_gets_the_spec_error_list_and_writes_nothing(live: Live) -> None:
    before = issue_count(live)
    cases = [
        (post(live, service_code="no_such"), 400),
        (post(live, lat="", long=""), 400),
        (post(live, description="字" * 4001), 400),
        (post(live, api_key="not-a-key"), 403),
        (post(live, api_key=live.zone.tokens["d_super"]), 403),  # not an external key
    ]
    for response, status in cases:
        root = xml(response, status)
        assert root.tag == "errors" and tags(root) == ["error"]
        assert tags(root[0]) == ["code", "description"] and root[0].findtext("code") == str(status)
    assert issue_count(live) == before
    too_long = httpx.get(
        f"{live.url}{V2}/requests.json",
        params={
            "api_key": live.key,
            "start_date": "2026-01-01T00:00:00Z",
            "end_date": "2026-05-01T00:00:00Z",
        },
    )
    assert too_long.status_code == 400 and too_long.json()[0]["code"] == 400
    missing = httpx.get(
        f"{live.url}{V2}/requests/JK-00000000-0000.xml", params={"api_key": live.key}
    )
    assert xml(missing, 404).findtext("error/code") == "404"
    assert httpx.get(f"{live.url}{V2}/requests.json").status_code == 403
    assert xml(httpx.get(f"{live.url}{V2}/nothing.xml"), 404).tag == "errors"


def post_at(live: Live, address: str, fmt: str = "xml") -> httpx.Response:
    """A report with an address_string and no lat/long."""
    data = {"api_key": live.key, "service_code": "flyposter", "address_string": address}
    return httpx.post(f"{live.url}{V2}/requests.{fmt}", data=data, timeout=30)


def _issue_by_code(live: Live, code: str | None) -> Issue:
    with live.session() as session:
        return session.exec(select(Issue).where(Issue.code == code)).one()


def test_an_address_string_is_placed_from_our_own_data(live: Live) -> None:
    with live.session() as session:
        grid_import.import_grid(session, grid_samples.dumps(grid_samples.zone_grid()))

    # A 网格's name, exactly or inside a longer address: a point in that cell, routed there.
    for address, cell, (west, south, east, north) in [
        ("远大第一网格", "A1G", (113.77, 34.75, 113.78, 34.76)),
        ("毛庄第一网格 东侧公交站", "B1G", (113.78, 34.75, 113.79, 34.76)),
        ("b1g", "B1G", (113.78, 34.75, 113.79, 34.76)),  # its code, in any case
    ]:
        code = xml(post_at(live, address), 201).findtext("request/service_request_id")
        issue = _issue_by_code(live, code)
        assert issue.grid_cell_code == cell, address
        assert west < issue.lon < east and south < issue.lat < north
        assert issue.address == address

    # An address reported before with a position: where those reports were.
    first = post(live, lat="34.7512", long="113.7801", address_string="经开区第五大街8号")
    assert first.status_code == 201, first.text
    answer = post_at(live, " 经开区第五大街8号 ", "json")
    assert answer.status_code == 201, answer.text
    issue = _issue_by_code(live, answer.json()[0]["service_request_id"])
    assert (issue.lat, issue.lon) == (pytest.approx(34.7512), pytest.approx(113.7801))


def test_an_unknown_address_gets_the_spec_error_and_writes_nothing(live: Live) -> None:
    with live.session() as session:
        grid_import.import_grid(session, grid_samples.dumps(grid_samples.zone_grid()))
    before = issue_count(live)
    # Not ours; only an office's or the district's name (an area, not a place); blank.
    for address in ["火星路1号", "九龙办事处", "经开区", "   "]:
        root = xml(post_at(live, address), 400)
        assert root.tag == "errors" and root.findtext("error/code") == "400"
        description = root.findtext("error/description", "")
        assert description.startswith(("unknown_address", "validation_error")), description
    body = post_at(live, "火星路1号", "json").json()
    assert body[0]["code"] == 400 and body[0]["description"].startswith("unknown_address")
    assert issue_count(live) == before


def test_a_name_two_cells_share_is_refused_not_guessed(live: Live) -> None:
    grid = grid_samples.zone_grid()
    twin = next(f for f in grid["features"] if f["properties"]["code"] == "B1G")
    twin["properties"]["name"] = "远大第一网格"  # the same name as A1G
    with live.session() as session:
        grid_import.import_grid(session, grid_samples.dumps(grid))
    before = issue_count(live)
    body = post_at(live, "远大第一网格 门口", "json").json()
    assert body[0]["code"] == 400
    assert body[0]["description"].startswith("unknown_address")
    assert "A1G" in body[0]["description"] and "B1G" in body[0]["description"]
    assert issue_count(live) == before
    # Its code still places it.
    assert post_at(live, "A1G").status_code == 201


def test_status_mapping_and_filters(live: Live) -> None:
    open_code = post(live, "json").json()[0]["service_request_id"]
    closed_code = post(live, "json", service_code="garbage").json()[0]["service_request_id"]
    issue = next(i for i in _issues(live) if i["code"] == closed_code)
    with live.api("d_super") as client:
        response = client.post(
            f"/api/v1/issues/{issue['id']}/transitions",
            json={"action": "reject", "note": "非本辖区问题"},
            headers={"If-Match": f'"{issue["version"]}"'},
        )
        assert response.status_code == 200, response.text
    params = {"api_key": live.key}
    closed = httpx.get(f"{live.url}{V2}/requests.json", params=params | {"status": "closed"}).json()
    assert [r["service_request_id"] for r in closed] == [closed_code]
    assert closed[0]["status_notes"] == "非本辖区问题"
    opened = httpx.get(f"{live.url}{V2}/requests.xml", params=params | {"status": "open"})
    assert [r.findtext("service_request_id") for r in xml(opened)] == [open_code]
    both = httpx.get(
        f"{live.url}{V2}/requests.json",
        params=params | {"service_request_id": f"{open_code},{closed_code}"},
    ).json()
    assert {r["service_request_id"] for r in both} == {open_code, closed_code}
    by_code = httpx.get(
        f"{live.url}{V2}/requests.json", params=params | {"service_code": "garbage"}
    )
    assert [r["service_code"] for r in by_code.json()] == ["garbage"]
    page = httpx.get(f"{live.url}{V2}/requests.json", params=params | {"page_size": 1, "page": 2})
    assert len(page.json()) == 1


@pytest.mark.parametrize("output_format", ["xml", "json"])
def test_a_pypi_open311_client_reads_it(
    live: Live, output_format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from georeport import GeoReport

    code = post(live, "json", description="客户端测试").json()[0]["service_request_id"]
    # The client sends api_key only on POST; our reads are scoped to the key, so it rides along.
    real_get = requests.get

    def get_with_key(url: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return real_get(url, params={**(params or {}), "api_key": live.key}, **kwargs)

    monkeypatch.setattr(requests, "get", get_with_key)
    client = GeoReport(f"{live.url}{V2}", output_format=output_format)
    services = client.get_service_list()
    assert "flyposter" in {s["service_code"] for s in services}
    definition = client.get_service_definition("flyposter")
    assert definition["service_code"] == "flyposter"
    found = client.get_service_requests(service_request_id=code)
    record = found[0] if isinstance(found, list) else found  # xmltodict: one item is a dict
    assert record["service_request_id"] == code and record["status"] == "open"
