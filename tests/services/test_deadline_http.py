"""A receiver that trickles its answer is cut off at the total deadline (a real server)."""

import pytest

from app.services import deadline_http
from tests.servers import Trickler


def test_a_trickled_answer_is_cut_off_at_the_deadline() -> None:
    trickler = Trickler(interval=0.25)  # about 17 s for the whole answer, 0.25 s per byte
    with pytest.raises(deadline_http.DeadlineExceeded, match="within 1 s"):
        deadline_http.post(trickler.url, b"{}", {}, timeout=2, deadline=1)
    assert trickler.wait()
    assert trickler.requests == 1 and trickler.cut_off


def test_an_answer_within_the_deadline_is_read() -> None:
    trickler = Trickler(interval=0.001)
    answer = deadline_http.post(trickler.url, b"{}", {}, timeout=2, deadline=20)
    assert answer == deadline_http.Answer(200, "ok")
    assert trickler.wait() and not trickler.cut_off
