from __future__ import annotations

import json
import logging

import pytest

from bot.logs import Redactor, setup_logging
from engine.trace import new_request_id


@pytest.mark.parametrize(
    ("text", "hidden", "mask"),
    [
        ("call me on 13812345678 please", "13812345678", "[phone]"),
        ("手机 +86 138-1234-5678", "1234-5678", "[phone]"),
        ("office +49 30 1234 5678", "1234 5678", "[phone]"),
        ("身份证 11010519491231002X 已提交", "11010519491231002X", "[id-number]"),
        ("mail ada.lovelace@example.com now", "ada.lovelace@example.com", "[email]"),
        ("token xoxb-1234-5678-abcdef in use", "xoxb-1234-5678-abcdef", "[token]"),
        ("Authorization: Bearer eyJhbGciOi.abc.def", "eyJhbGciOi", "[token]"),
        ("app_secret=abcdef123456 leaked", "abcdef123456", "[secret]"),
        ('{"password": "hunter22"}', "hunter22", "[secret]"),
    ],
)
def test_personal_data_and_tokens_are_masked(text: str, hidden: str, mask: str) -> None:
    redacted = Redactor()(text)
    assert hidden not in redacted and mask in redacted


def test_configured_secret_values_are_masked_wherever_they_appear() -> None:
    redact = Redactor(["s3cr3t-value-123"])
    assert redact("url=http://x/?k=s3cr3t-value-123&z=1") == "url=http://x/?k=[secret]&z=1"


def test_ordinary_text_is_left_alone() -> None:
    text = "VPN error GC-412 on 2026-11-23 at 10:30, ticket 4711, version 1.7.5"
    assert Redactor()(text) == text


def test_json_lines_carry_the_request_id_and_are_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("INFO", json_lines=True, redact=True, secrets=["topsecretvalue"])
    rid = new_request_id("slack", "m1")
    logging.getLogger("teambot.test").info("asker 13812345678 used topsecretvalue")
    entry = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert entry["request_id"] == rid and entry["level"] == "INFO"
    assert entry["message"] == "asker [phone] used [secret]"
    logging.getLogger().handlers.clear()


def test_redaction_of_encoded_and_unusual_forms() -> None:
    from bot.logs import Redactor

    redact = Redactor()
    for line in (
        'GET /search?q=alice.wong%40example.com HTTP/1.1" 200',
        "call +86 138 1234 5678 or 0086 13812345678",
        "手机１３８１２３４５６７８",
        "phone 138.1234.5678",
        "mail ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",
        "q=%2B86%20138%201234%205678",
    ):
        masked = redact(line)
        assert "1234" not in masked and "５６７８" not in masked and "alice" not in masked, masked
    assert redact("问题：怎么连，VPN？") == "问题：怎么连，VPN？"  # Chinese punctuation kept


def test_url_printing_loggers_are_quiet_by_default() -> None:
    import logging

    from bot.logs import setup_logging

    setup_logging("INFO", json_lines=False, redact=True)
    for name in ("httpx", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)  # what uvicorn does after us
        assert not logger.filter(logger.makeRecord(name, logging.INFO, "", 0, "GET /", (), None))
        assert logger.filter(logger.makeRecord(name, logging.WARNING, "", 0, "GET /", (), None))


@pytest.mark.parametrize(
    "card",
    [
        "4111111111111111",  # 16 digits, together
        "4111 1111 1111 1111",  # grouped by spaces
        "4111-1111-1111-1111",  # by dashes
        "6222 0212 3456 7890 128",  # a 19-digit UnionPay number, grouped
        "6212260200012345670",  # 19 digits together
        "４１１１１１１１１１１１１１１１",  # full-width
        "%EF%BC%94%EF%BC%91%EF%BC%91%EF%BC%91" + "1" * 12,  # URL-encoded full-width digits
    ],
)
def test_bank_card_numbers_are_masked_at_every_level(
    card: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.privacy import luhn, readable

    digits = readable(card).replace(" ", "").replace("-", "")
    assert luhn(digits), digits  # the cases are real card numbers
    assert "[card]" in Redactor()(f"卡号{card}，谢谢")
    setup_logging("DEBUG", json_lines=False, redact=True)
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        logging.getLogger("teambot.test").log(level, "pay with %s now", card)
    lines = capsys.readouterr().err.strip().splitlines()[-4:]
    assert len(lines) == 4 and all("[card]" in line and "1111 1111" not in line for line in lines)
    logging.getLogger().handlers.clear()


def test_order_numbers_and_other_long_digits_are_not_cards() -> None:
    redact = Redactor()
    for text in (
        "order 4111111111111112 shipped",  # fails the Luhn check
        "trace 20261207123045678901 done",  # 20 digits: longer than any card
        "at 1733572800000 ms",  # an epoch in milliseconds, 13 digits
    ):
        assert redact(text) == text


def test_url_encoded_full_width_digits_are_folded_after_decoding() -> None:
    """%EF%BC%91 is "１": decoded first, then folded, so the phone pattern sees 1s."""
    redact = Redactor()
    encoded = "".join(f"%EF%BC%{0x90 + int(d):02X}" for d in "13812345678")
    assert redact(f"GET /search?q={encoded} HTTP/1.1") == "GET /search?q=[phone] HTTP/1.1"
    twice = "%2540example.com"  # %40 escaped once more
    assert "[email]" in redact(f"alice.wong{twice}")
