import httpx
import pytest

from bot.errors import UserError, parse_id
from bot.vast import _error_detail


@pytest.mark.parametrize(("text", "expected"), [("12", 12), ("#7", 7), (" 3 ", 3)])
def test_parse_id_accepts_numbers(text, expected):
    assert parse_id(text, "proposal", "`/rollout cancel ID`") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("twelve", "`twelve` is not a proposal id; use `/rollout cancel ID`."),
        ("", "`(nothing)` is not a proposal id"),
        ("٣", "is not a proposal id"),
        ("12345678901234567890123", "Proposal #12345678901234567890 does not exist."),
    ],
)
def test_parse_id_rejects_non_ids(text, message):
    with pytest.raises(UserError) as raised:
        parse_id(text, "proposal", "`/rollout cancel ID`")
    assert message in str(raised.value)


def test_error_detail_hides_proxy_html():
    page = httpx.Response(
        504, text="<html><body><h1>504 Gateway Time-out</h1>nginx</body></html>", headers={"content-type": "text/html"}
    )
    assert _error_detail(page) == "504 Gateway Timeout"


@pytest.mark.parametrize(
    ("body", "expected"),
    [({"success": False, "msg": "missing endpoint_id"}, "missing endpoint_id"), ({"error_msg": "loading"}, "loading")],
)
def test_error_detail_prefers_vast_message(body, expected):
    assert _error_detail(httpx.Response(400, json=body)) == expected
