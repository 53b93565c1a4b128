"""The pure rules of customer care: phone and email normalisation, one-time codes, GSM-7 SMS
texts, back-off, channel choice, threshold levels, SMTP URLs; and the CLI's one-line errors."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care import backoff, gsm, otp, render
from care.channels import ChannelConfigError, Outgoing, SmtpChannel, message_id, parse_smtp_url
from care.contacts import ContactError, mask_email, mask_phone, normalise_email, normalise_phone
from care.notices import Contact, ThresholdChoice, channels_for, limit_for


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("0912 345 678", "+84912345678"),
        ("+84 912.345.678", "+84912345678"),
        ("(+84) 91-234-5678", "+84912345678"),
        ("84912345678", "+84912345678"),
        ("0362345678", "+84362345678"),
        ("01662345678", "+84362345678"),  # Viettel 0166 → 036 (2018 renumbering)
        ("0120 123 4567", "+84701234567"),  # MobiFone 0120 → 070
        ("0888 123 456", "+84888123456"),
    ],
)
def test_vietnamese_mobile_numbers_normalise_to_plus84(typed: str, normalised: str) -> None:
    assert normalise_phone(typed) == normalised


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("0283 822 1234", "not a Vietnamese mobile"),  # a landline
        ("+1 415 555 0100", "Only Vietnamese mobile"),
        ("091234567", "not a Vietnamese mobile"),
        ("09123456789", "not a Vietnamese mobile"),
        ("zero nine one", "only digits"),
        ("0912345678\r\nBcc: x@y.z", "control characters"),
        ("0" * 10_000, "too long"),
        ("０９１２３４５６７８", "only digits"),  # full-width digits
    ],
)
def test_other_phone_input_is_refused_with_a_reason(typed: str, message: str) -> None:
    with pytest.raises(ContactError, match=message):
        normalise_phone(typed)


def test_email_addresses() -> None:
    assert normalise_email(" An.Nguyen@Example.VN ") == "An.Nguyen@example.vn"
    idn = normalise_email("an@ĐiệnLực.vn")  # an international domain goes out as ASCII
    assert idn.startswith("an@xn--") and idn.endswith(".vn") and idn.isascii()
    for bad, reason in [
        ("an@example.vn\r\nBcc: x@y.z", "control characters"),
        ("an@example.vn\u2028Bcc: x@y.z", "control characters"),
        ("An <an@example.vn>", "no spaces"),
        ("an@localhost", "domain"),
        ("an@-example.vn", "domain"),
        ('"a,b"@example.vn', "before @"),
        ("a" * 250 + "@example.vn", "too long"),
        ("no-at-sign", "looks like"),
    ]:
        with pytest.raises(ContactError, match=reason):
            normalise_email(bad)
    assert mask_email("an.nguyen@example.vn") == "a•••n@example.vn"
    assert mask_phone("+84912345678") == "+84 91•••••78"


def test_one_time_codes() -> None:
    key = b"k" * 32
    code = otp.new_code(lambda n: 42)
    assert code == "000042"
    digest = otp.code_hash(key, 1, "email", "a@b.vn", code)
    now = datetime(2025, 6, 20, tzinfo=UTC)
    pending = otp.Pending(digest, now + otp.LIFETIME, 0, False)
    assert (
        otp.check(pending, otp.code_hash(key, 1, "email", "a@b.vn", "000042"), now) is otp.Check.OK
    )
    # bound to the customer, channel and value it was sent for
    assert (
        otp.check(pending, otp.code_hash(key, 2, "email", "a@b.vn", code), now) is otp.Check.WRONG
    )
    assert (
        otp.check(pending, otp.code_hash(key, 1, "email", "c@b.vn", code), now) is otp.Check.WRONG
    )
    assert otp.check(pending, digest, now + timedelta(minutes=10)) is otp.Check.EXPIRED
    assert otp.check(otp.Pending(digest, pending.expires_at, 5, False), digest, now) is (
        otp.Check.NO_TRIES_LEFT)  # fmt: skip
    assert (
        otp.check(otp.Pending(digest, pending.expires_at, 0, True), digest, now) is otp.Check.USED
    )
    assert otp.clean_code(" 000 042 ") == "000042" and otp.clean_code("٠٠٠٠٤٢") is None
    assert len(set(otp.new_code() for _ in range(50))) > 40


@given(st.text(max_size=400))
def test_any_sms_text_fits_one_gsm7_segment(text: str) -> None:
    fitted = gsm.fit(text)
    assert gsm.is_gsm7(fitted) and gsm.septets(fitted) <= 160


def test_vietnamese_sms_loses_its_accents_not_its_words() -> None:
    assert (
        gsm.to_gsm7("Hóa đơn tiền điện Đà Nẵng: 438.890 ₫")
        == "Hoa don tien dien Da Nang: 438.890 d"
    )
    assert gsm.septets("a€[") == 5


def test_the_longest_notices_still_fit_one_segment() -> None:
    zone = __import__("zoneinfo").ZoneInfo("Asia/Ho_Chi_Minh")
    for lang in render.LANGUAGES:
        bill = render.bill_issued(lang, customer_code="PB0101" + "9" * 7, period="2025-12",
                                  period_start=date(2025, 11, 28), period_end=date(2025, 12, 28),
                                  consumption_kwh=999_999, total_vnd=9_999_999_999,
                                  due=date(2026, 1, 4))  # fmt: skip
        alert = render.threshold(lang, customer_code="PB0101" + "9" * 7,
                                 period_start=date(2025, 12, 28), kwh=999_999, limit_kwh=1,
                                 percent=1000, last_bill_kwh=999_999)  # fmt: skip
        code = render.verification_code(lang, customer_code="PB01010012345", code="123456")
        for sms in (bill.sms, alert.sms, code.sms):
            assert gsm.is_gsm7(sms) and len(sms) <= 160 and not sms.endswith("..."), sms
        outage = render.outage(lang, area="Bà Rịa – Vũng Tàu (PB1901)", reason="x" * 500,
                               start=datetime(2025, 7, 1, 1, tzinfo=UTC),
                               end=datetime(2025, 7, 1, 9, tzinfo=UTC), zone=zone)  # fmt: skip
        assert len(outage.sms) <= 160 and outage.sms.endswith("...")  # the reason is cut


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff.delay(k).total_seconds() for k in range(1, 9)] == [
        30, 60, 120, 240, 480, 960, 1920, 3600]  # fmt: skip
    assert backoff.delay(1000) == backoff.CAP
    assert backoff.is_dead(8, 8) and not backoff.is_dead(7, 8)


def test_channel_choice_falls_back_to_the_contact_the_customer_has() -> None:
    both = Contact(1, "PB01010012345", "+84912345678", "a@b.vn", "both", "vi")
    assert channels_for(both) == [("sms", "+84912345678"), ("email", "a@b.vn")]
    no_email = Contact(1, "PB01010012345", "+84912345678", None, "email", "vi")
    assert channels_for(no_email) == [("sms", "+84912345678")]
    nothing = Contact(1, "PB01010012345", None, None, "sms", "vi")
    assert channels_for(nothing) == []


def test_threshold_level_is_the_lower_of_kwh_and_percent() -> None:
    contact = Contact(1, "PB01010012345", None, "a@b.vn", "email", "vi")
    assert limit_for(ThresholdChoice(contact, 300, None), 200) == 300
    assert limit_for(ThresholdChoice(contact, None, 30), 200) == pytest.approx(260)
    assert limit_for(ThresholdChoice(contact, 250, 30), 200) == 250
    assert limit_for(ThresholdChoice(contact, None, 30), None) is None  # no bill yet


def test_smtp_urls() -> None:
    plain = parse_smtp_url("smtp://mail.example.vn")
    assert (plain.port, plain.security, plain.username) == (25, "plain", None)
    tls = parse_smtp_url("smtp+starttls://user%40x:p%3Ass@mail.example.vn?cafile=/ca.pem")
    assert (tls.port, tls.security, tls.username, tls.password, tls.cafile) == (
        587, "starttls", "user@x", "p:ss", "/ca.pem")  # fmt: skip
    assert parse_smtp_url("smtp://h:2525?starttls=true").security == "starttls"
    assert parse_smtp_url("smtps://h").port == 465
    assert parse_smtp_url("smtp://h?from=Doxa <n@d.vn>").sender == "Doxa <n@d.vn>"
    for bad in (
        "http://h",
        "smtp://",
        "smtp://h:x",
        "smtp://h?from=a%0d%0aBcc:x",
        "smtp://h?from=x",
    ):
        with pytest.raises(ChannelConfigError):
            parse_smtp_url(bad)


def test_a_message_id_is_the_same_for_every_try_and_no_header_takes_a_line_break() -> None:
    assert message_id("bill:7", "email") == message_id("bill:7", "email")
    assert message_id("bill:7", "email") != message_id("bill:8", "email")
    channel = SmtpChannel.from_url("smtp://127.0.0.1:1")
    outcome = channel.send(Outgoing("a@b.vn\r\nBcc: victim@x.y", "s", "b", "k"))
    assert outcome.status == "permanent" and "line break" in outcome.error


def test_cli_errors_are_one_line(doxa) -> None:  # type: ignore[no-untyped-def]
    result = doxa("notify", "run", "--worker-id", "bad id!")
    assert result.code == 2 and "worker id" in result.err and result.err.count("\n") == 1
    result = doxa(
        "notify",
        "run",
        env={"DOXA_SMTP_URL": "http://nope", "DOXA_DATABASE_URL": "postgresql://x@127.0.0.1:1/x"},
    )
    assert result.code == 2 and "DOXA_SMTP_URL" in result.err
    assert doxa("notify", "--help").code == 0


def test_every_customer_care_string_has_a_vietnamese_translation() -> None:
    from pathlib import Path

    from babel.messages.extract import extract_from_file
    from babel.messages.pofile import read_po

    root = Path(__file__).resolve().parent.parent
    files = [*sorted((root / "care").glob("*.py")), root / "lookup_web" / "account.py",
             root / "lookup_web" / "reviews.py",
             root / "lookup_web" / "templates" / "customer" / "account.html",
             root / "lookup_web" / "templates" / "staff" / "reviews.html"]  # fmt: skip
    found = set()
    for path in files:
        method = "python" if path.suffix == ".py" else "jinja2"
        for _line, message, _comments, _context in extract_from_file(method, str(path)):
            found.add(message if isinstance(message, str) else message[0])
    po = root / "lookup_web" / "translations" / "vi" / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as fh:
        catalogue = read_po(fh, locale="vi")
    assert len(found) > 100
    assert sorted(m for m in found if not (catalogue.get(m) and catalogue.get(m).string)) == []


def test_the_mailbox_lists_messages_in_arrival_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Maildir names do not zero-pad their microseconds: a message stored at .100000 s sorts
    before one at .99999 s as text, and the test mailbox once read the older code first."""
    from care.mailbox import MaildirStore

    store = MaildirStore(tmp_path / "mail")
    for name, subject in (("1700000000.M99999P1Q1.h", "first"), ("1700000000.M100000P1Q2.h", "second"),
                          ("1700000001.M5P1Q3.h", "third")):  # fmt: skip
        (tmp_path / "mail" / "new" / name).write_bytes(f"Subject: {subject}\n\nbody\n".encode())
    assert [m["Subject"] for m in store.messages()] == ["first", "second", "third"]
