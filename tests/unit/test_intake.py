"""New leads: checked fields, normalized addresses, and CSV import with line-numbered errors."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from nurture.content.catalog import Catalog, FeedConfig
from nurture.errors import InputError
from nurture.intake import new_lead, normalize_email, read_csv
from nurture.models import Stage

NOW = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
CATALOG = Catalog(
    feeds={
        "cloud-blog": FeedConfig(url="https://example.com/cloud.xml"),
        "sec-news": FeedConfig(url="https://example.com/sec.xml"),
        "fin-news": FeedConfig(url="https://example.com/fin.xml"),
    },
    interests={"cloud": ["cloud-blog"], "security": ["sec-news"], "devops": ["cloud-blog"]},
    industries={"finance": ["fin-news"], "manufacturing": ["cloud-blog"]},
)


def csv_file(tmp_path: Path, text: str, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# new_lead


def test_valid_lead_is_normalized():
    lead = new_lead(CATALOG, NOW, email="  Ann.Smith@Example.COM ", interests=["Cloud", "security", "cloud", " "],
                    industry=" Finance ", first_name=" Ann ", last_name="Smith", company=" Acme BV ",
                    locale="NL", customer=True)
    assert lead.email == "ann.smith@example.com"
    assert lead.interests == ["cloud", "security"]
    assert lead.industry == "finance"
    assert (lead.first_name, lead.last_name, lead.company) == ("Ann", "Smith", "Acme BV")
    assert lead.locale == "nl"
    assert lead.customer is True
    assert lead.stage is Stage.MQL
    assert lead.cycle == 0 and lead.score == 0 and lead.suppressed is None
    assert lead.created_at == NOW and lead.cycle_started_at == NOW
    assert lead.id is None


def test_minimal_lead():
    lead = new_lead(CATALOG, NOW, email="bob@example.org")
    assert lead.email == "bob@example.org"
    assert lead.interests == [] and lead.industry == "" and lead.customer is False and lead.locale == "en"


@pytest.mark.parametrize(
    "email",
    ["", "plain", "@example.com", "a@", "a@@example.com", "a b@example.com", "a@example..com", "a@exa mple.com"],
)
def test_malformed_email(email):
    with pytest.raises(InputError, match="not a valid email address"):
        new_lead(CATALOG, NOW, email=email)


def test_unknown_interest_is_named():
    with pytest.raises(InputError) as error:
        new_lead(CATALOG, NOW, email="a@example.com", interests=["cloud", "Knitting"])
    message = str(error.value)
    assert "unknown interest" in message
    assert "knitting" in message
    assert "cloud, devops, security" in message


def test_unknown_industry_is_named():
    with pytest.raises(InputError) as error:
        new_lead(CATALOG, NOW, email="a@example.com", industry="Fishing")
    assert "unknown industry" in str(error.value)
    assert "fishing" in str(error.value)


@pytest.mark.parametrize("field", ["first_name", "last_name", "company"])
@pytest.mark.parametrize("value", ["Ann\nBcc: x@example.com", "Ann\r", "A\x00B", "x" * 201])
def test_name_with_line_break_or_too_long(field, value):
    with pytest.raises(InputError) as error:
        new_lead(CATALOG, NOW, email="a@example.com", **{field: value})
    assert field in str(error.value)


def test_name_of_max_length_is_fine():
    assert new_lead(CATALOG, NOW, email="a@example.com", company="x" * 200).company == "x" * 200


@pytest.mark.parametrize("locale", ["e-n", "", "en_US", "x" * 9, "../en"])
def test_bad_locale(locale):
    with pytest.raises(InputError, match="locale"):
        new_lead(CATALOG, NOW, email="a@example.com", locale=locale)


def test_normalize_email():
    assert normalize_email(" Mixed.Case@Example.ORG ") == "mixed.case@example.org"
    with pytest.raises(InputError) as error:
        normalize_email("no-at-sign")
    assert "no-at-sign" in str(error.value)


# read_csv


def test_read_good_csv(tmp_path):
    path = csv_file(tmp_path, (
        "email,first_name,last_name,company,industry,interests,locale,customer\n"
        "Ann@Example.com,Ann,Smith,Acme,finance,cloud;security,en,yes\n"
        "bob@example.org,Bob,,,,,nl,no\n"
        'carol@example.net,Carol,"O\'Neil, Jr",Widgets,manufacturing,devops|Cloud,,\n'
    ))
    ann, bob, carol = read_csv(path, CATALOG, NOW)
    assert (ann.email, ann.first_name, ann.industry, ann.interests, ann.customer) == (
        "ann@example.com", "Ann", "finance", ["cloud", "security"], True)
    assert (bob.email, bob.locale, bob.interests, bob.industry, bob.customer) == (
        "bob@example.org", "nl", [], "", False)
    assert carol.last_name == "O'Neil, Jr"
    assert carol.interests == ["devops", "cloud"]
    assert carol.locale == "en"
    assert all(lead.created_at == NOW for lead in (ann, bob, carol))


def test_csv_with_byte_order_mark_and_only_an_email_column(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffemail\r\nann@example.com\r\n".encode())
    assert [lead.email for lead in read_csv(path, CATALOG, NOW)] == ["ann@example.com"]


def test_csv_with_only_a_header_is_empty(tmp_path):
    assert read_csv(csv_file(tmp_path, "email,company\n"), CATALOG, NOW) == []


def test_bad_row_names_its_line(tmp_path):
    path = csv_file(tmp_path, "email,company\nann@example.com,A\nnot-an-email,B\ncarl@example.com,C\n")
    with pytest.raises(InputError) as error:
        read_csv(path, CATALOG, NOW)
    message = str(error.value)
    assert f"{path}:3:" in message
    assert "not-an-email" in message


def test_unknown_interest_in_a_row_names_its_line(tmp_path):
    path = csv_file(tmp_path, "email,interests\nann@example.com,cloud\nbob@example.com,cloud;knitting\n")
    with pytest.raises(InputError, match=r":3: unknown interest: knitting"):
        read_csv(path, CATALOG, NOW)


def test_bad_row_after_a_blank_line_names_its_real_line(tmp_path):
    path = csv_file(tmp_path, "email,company\n\nann@example.com,A\nnot-an-email,B\n")
    with pytest.raises(InputError) as error:
        read_csv(path, CATALOG, NOW)
    assert f"{path}:4:" in str(error.value)


def test_unknown_column(tmp_path):
    path = csv_file(tmp_path, "email,phone,fax\nann@example.com,1,2\n")
    with pytest.raises(InputError) as error:
        read_csv(path, CATALOG, NOW)
    assert "unknown column" in str(error.value)
    assert "fax, phone" in str(error.value)


@pytest.mark.parametrize("header", ["mail,company", "e-mail", "Email"])
def test_missing_email_column(tmp_path, header):
    path = csv_file(tmp_path, f"{header}\nann@example.com\n")
    with pytest.raises(InputError, match="'email' column"):
        read_csv(path, CATALOG, NOW)


def test_empty_file(tmp_path):
    with pytest.raises(InputError, match="'email' column"):
        read_csv(csv_file(tmp_path, ""), CATALOG, NOW)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_csv(tmp_path / "absent.csv", CATALOG, NOW)


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("email,company\nann@example.com,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="cannot read"):
        read_csv(path, CATALOG, NOW)


def test_row_with_more_fields_than_columns(tmp_path):
    path = csv_file(tmp_path, "email,company\nann@example.com,A,surplus\n")
    with pytest.raises(InputError, match=r":2: more fields than columns"):
        read_csv(path, CATALOG, NOW)


def test_duplicate_email_rows(tmp_path):
    path = csv_file(tmp_path, "email,company\nann@example.com,A\nbob@example.com,B\nANN@example.com,C\n")
    with pytest.raises(InputError) as error:
        read_csv(path, CATALOG, NOW)
    message = str(error.value)
    assert ":4:" in message
    assert "ann@example.com" in message
    assert "row 2" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("yes", True), ("YES", True), ("y", True), ("1", True), ("true", True),
     ("no", False), ("No", False), ("0", False), ("false", False), ("", False), ("  yes ", True)],
)
def test_customer_column(tmp_path, value, expected):
    path = csv_file(tmp_path, f"email,customer\nann@example.com,{value}\n")
    [lead] = read_csv(path, CATALOG, NOW)
    assert lead.customer is expected


@pytest.mark.parametrize("value", ["maybe", "2", "ja", "nope"])
def test_customer_column_garbage(tmp_path, value):
    path = csv_file(tmp_path, f"email,customer\nann@example.com,no\nbob@example.com,{value}\n")
    with pytest.raises(InputError) as error:
        read_csv(path, CATALOG, NOW)
    assert ":3:" in str(error.value)
    assert repr(value) in str(error.value)


@pytest.mark.parametrize(
    "interests", ["cloud;security", "cloud|security", " cloud | security ;", "Cloud;security;cloud"]
)
def test_interest_separators(tmp_path, interests):
    path = csv_file(tmp_path, f'email,interests\nann@example.com,"{interests}"\n')
    [lead] = read_csv(path, CATALOG, NOW)
    assert lead.interests == ["cloud", "security"]
