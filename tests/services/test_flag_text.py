"""Flags as sentences: Chinese by default, English on request, with their figures."""

from datetime import UTC, datetime

from app.services.checks import Flag
from app.services.flag_text import SENTENCES, PhotoFacts, describe, length, sentence

ZHENGZHOU = (34.7466, 113.6254)
PARIS = (48.8566, 2.3522)


def test_every_flag_the_checks_raise_has_both_sentences() -> None:
    assert set(Flag) <= set(SENTENCES)
    for zh, en in SENTENCES.values():
        assert zh and en and zh != en


def test_far_from_issue_quotes_the_distance_in_km() -> None:
    facts = PhotoFacts(lat=PARIS[0], lon=PARIS[1], issue_lat=ZHENGZHOU[0], issue_lon=ZHENGZHOU[1])
    text = sentence("far_from_issue", facts)
    assert text.startswith("拍摄位置距问题 ") and text.endswith(" km")
    km = int(text.removeprefix("拍摄位置距问题 ").removesuffix(" km"))
    assert 8400 < km < 8600
    assert sentence("far_from_issue", facts, english=True) == f"Taken {km} km from the issue"


def test_short_distances_are_in_metres() -> None:
    assert length(350.4) == "350 m"
    assert length(12_345) == "12 km"


def test_flags_without_a_figure_read_cleanly() -> None:
    out = describe(["after_matches_before", "edited"], PhotoFacts())
    assert out == [
        {"code": "after_matches_before", "text": "整改后照片与整改前相同"},
        {"code": "edited", "text": "照片经编辑软件处理"},
    ]


def test_stale_capture_says_how_old() -> None:
    facts = PhotoFacts(
        taken_at="2026-11-01T09:00:00+08:00", uploaded_at=datetime(2026, 11, 5, 1, tzinfo=UTC)
    )
    assert sentence("stale_capture", facts) == "照片拍摄于上传前 4 天"
    assert sentence("stale_capture", facts, english=True) == "Taken 4 days before it was uploaded"


def test_an_unknown_code_is_shown_as_itself() -> None:
    assert describe(["something_new"], PhotoFacts()) == [
        {"code": "something_new", "text": "something_new"}
    ]
