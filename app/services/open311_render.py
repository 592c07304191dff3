"""Open311 answers as the spec's XML (the required format) or JSON, from one structure.

A response is a dict (one root element) or a list of dicts (a root element holding one element
per item); dict order is element order. A list inside an item becomes a wrapper element with
one child per entry, named by SINGULAR; True/False are "true"/"false"; None an empty element.
"""

import json
import xml.etree.ElementTree as ET
from enum import StrEnum
from typing import Any


class Fmt(StrEnum):
    XML = "xml"
    JSON = "json"


MEDIA_TYPES = {Fmt.XML: "text/xml; charset=utf-8", Fmt.JSON: "application/json; charset=utf-8"}
SINGULAR = {
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
    "photos": "photo",
    "updates": "update",
    "flags": "flag",
}
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def render(fmt: Fmt, data: dict[str, Any] | list[dict[str, Any]], root: str, item: str) -> bytes:
    """The answer's bytes: `root` names the root element, `item` each entry of a list."""
    if fmt == Fmt.JSON:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    element = ET.Element(root)
    if isinstance(data, list):
        for entry in data:
            _fill(ET.SubElement(element, item), entry)
    else:
        _fill(element, data)
    return XML_DECLARATION + ET.tostring(element, encoding="unicode").encode()


def _fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            _fill(ET.SubElement(element, key), child)
    elif isinstance(value, list):
        name = SINGULAR.get(element.tag, "item")
        for entry in value:
            _fill(ET.SubElement(element, name), entry)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = str(value)


def errors(fmt: Fmt, items: list[tuple[int, str]]) -> bytes:
    """The spec's error list: [{code, description}] or <errors><error>…</error></errors>."""
    body = [{"code": code, "description": description} for code, description in items]
    return render(fmt, body, "errors", "error")
