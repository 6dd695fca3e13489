"""Feed parsing, sanitizing and filtering, and the feeds.yaml catalog."""

import json
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

import nurture
from nurture.content.catalog import (
    TITLE_LIMIT,
    Catalog,
    FeedConfig,
    FetchConfig,
    Parsed,
    load_catalog,
    mix,
    parse,
    sanitize,
)
from nurture.errors import ConfigError

SAMPLES = Path(nurture.__file__).parent / "samples" / "feeds"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
ANY = FeedConfig(url="https://feeds.example.com/x.xml")


def sample(name: str) -> bytes:
    return (SAMPLES / f"{name}.xml").read_bytes()


def rss(*items: str, encoding: str = "utf-8") -> str:
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n<rss version="2.0"><channel><title>T</title>'
        f"<link>https://example.com/</link><description>d</description>{''.join(items)}</channel></rss>"
    )


def item(title: str, link: str = "https://example.com/a", guid: str | None = "g1",
         date: str | None = "Mon, 02 Nov 2026 10:00:00 +0000", description: str = "<p>text</p>") -> str:
    guid_tag = f"<guid isPermaLink='false'>{guid}</guid>" if guid is not None else ""
    date_tag = f"<pubDate>{date}</pubDate>" if date is not None else ""
    return (f"<item><title>{title}</title><link>{link}</link>{guid_tag}{date_tag}"
            f"<description><![CDATA[{description}]]></description></item>")


# the bundled samples


@pytest.mark.parametrize(("name", "count"), [("cloud", 8), ("finance", 7), ("manufacturing", 7), ("security", 8)])
def test_sample_feeds_parse_sorted_newest_first(name, count):
    parsed = parse(sample(name), ANY, NOW)
    assert parsed.problem is None
    assert len(parsed.items) == count
    dates = [entry.published for entry in parsed.items]
    assert dates == sorted(dates, reverse=True)
    assert all(date.tzinfo is not None and date < NOW for date in dates)
    assert len({entry.guid for entry in parsed.items}) == count
    assert all(entry.link.startswith("https://") for entry in parsed.items)
    assert all(entry.title and len(entry.title) <= TITLE_LIMIT for entry in parsed.items)


def test_sample_dates_are_read_from_the_feed():
    newest = parse(sample("security"), ANY, NOW).items[0]
    assert newest.published == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert newest.guid == "tag:news.example.net,2026-11-20:security-weekly/identity-new-perimeter"
    assert newest.title == "Identity is the new perimeter: lessons from this year's top breaches"


def test_script_and_onclick_in_security_sample_are_stripped():
    parsed = parse(sample("security"), ANY, NOW)
    [vpn] = [entry for entry in parsed.items if "VPN" in entry.title]
    assert "authentication bypass" in vpn.summary
    for entry in parsed.items:
        lowered = entry.summary.lower()
        assert "<script" not in lowered
        assert "onclick" not in lowered
        assert "javascript:" not in lowered
        assert "alert(1)" not in lowered
        assert "<img" not in lowered


def test_sample_summaries_keep_safe_markup():
    parsed = parse(sample("security"), ANY, NOW)
    [ransomware] = [entry for entry in parsed.items if entry.title.startswith("Ransomware")]
    assert "<strong>ransomware</strong>" in ransomware.summary
    [sponsored] = [entry for entry in parsed.items if entry.title.startswith("Sponsored")]
    assert 'href="https://example.com/partners/mdr-buyers-guide"' in sponsored.summary


# sanitize


@pytest.mark.parametrize(
    ("html", "forbidden"),
    [
        ("<p>a<script>alert(1)</script>b</p>", ["<script", "alert"]),
        ("<style>p{color:red}</style><p>a</p>", ["<style", "color:red"]),
        ('<iframe src="https://evil.example/"></iframe><p>a</p>', ["<iframe", "evil.example"]),
        ('<p onclick="steal()">a</p>', ["onclick", "steal"]),
        ('<a href="https://ok.example/" onmouseover="steal()">a</a>', ["onmouseover", "steal"]),
        ('<img src="x" onerror="steal()">', ["onerror", "<img", "steal"]),
        ('<a href="javascript:alert(1)">a</a>', ["javascript:", "alert"]),
        ('<a href="JaVaScRiPt:alert(1)">a</a>', ["javascript:", "alert"]),
        ('<a href="data:text/html;base64,PHNjcmlwdD4=">a</a>', ["data:", "base64"]),
        ('<p style="background:url(javascript:alert(1))">a</p>', ["style", "javascript:"]),
        ('<form action="https://evil.example/"><input name="x"></form>', ["<form", "<input"]),
        ("<p>a\x00b\x1bc</p>", ["\x00", "\x1b"]),
    ],
)
def test_sanitize_strips_dangerous_html(html, forbidden):
    clean = sanitize(html)
    for word in forbidden:
        assert word not in clean.lower()


def test_sanitize_keeps_allowed_markup_and_safe_links():
    clean = sanitize(
        '<p>Hi <strong>there</strong> <a href="https://ok.example/x" title="t">link</a></p><ul><li>1</li></ul>'
    )
    assert "<strong>there</strong>" in clean
    assert 'href="https://ok.example/x"' in clean
    assert "noopener" in clean
    assert "<li>1</li>" in clean
    assert sanitize('<a href="mailto:a@example.com">m</a>').count("mailto:a@example.com") == 1


# filters, caps, titles, guids


def test_exclude_filter():
    titles = [entry.title for entry in parse(sample("security"), FeedConfig(url="x", exclude=["Sponsored"]), NOW).items]
    assert len(titles) == 7
    assert not any("Sponsored" in title for title in titles)


def test_include_filter_is_case_insensitive_and_any_word():
    config = FeedConfig(url="x", include=["zero trust", "PHISHING"])
    titles = [entry.title for entry in parse(sample("security"), config, NOW).items]
    assert titles == [
        "Zero trust in practice: what 200 CISOs told us about year two",
        "Phishing simulations that change behaviour instead of annoying staff",
    ]


def test_include_filter_looks_at_the_summary_too():
    data = rss(item("Plain title", guid="a", description="<p>all about <b>Kubernetes</b></p>"),
               item("Other title", guid="b", link="https://example.com/b"))
    parsed = parse(data.encode(), FeedConfig(url="x", include=["kubernetes"]), NOW)
    assert [entry.guid for entry in parsed.items] == ["a"]


def test_include_and_exclude_together():
    config = FeedConfig(url="x", include=["ransomware", "zero trust"], exclude=["CISOs"])
    titles = [entry.title for entry in parse(sample("security"), config, NOW).items]
    assert titles == ["Ransomware groups pivot to data-theft-only extortion"]


def test_max_items_keeps_the_newest():
    full = parse(sample("cloud"), ANY, NOW).items
    capped = parse(sample("cloud"), FeedConfig(url="x", max_items=3), NOW).items
    assert capped == full[:3]


def test_long_title_is_shortened():
    long_title = "Word " * 60
    parsed = parse(rss(item(long_title)).encode(), ANY, NOW)
    [entry] = parsed.items
    assert len(entry.title) <= TITLE_LIMIT
    assert entry.title.endswith("…")
    assert entry.title.startswith("Word Word")


def test_title_markup_and_whitespace_are_flattened():
    parsed = parse(rss(item("  Big   &lt;b&gt;news&lt;/b&gt;\n today ")).encode(), ANY, NOW)
    assert parsed.items[0].title == "Big news today"


def test_guid_falls_back_to_the_link():
    parsed = parse(rss(item("No id", link="https://example.com/no-id", guid=None)).encode(), ANY, NOW)
    [entry] = parsed.items
    assert entry.guid == "https://example.com/no-id"


def test_atom_entry_without_id_uses_its_link():
    data = (b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
            b'<entry><title>Atom item</title><link href="https://example.com/atom-1"/>'
            b"<updated>2026-11-01T00:00:00Z</updated></entry></feed>")
    [entry] = parse(data, ANY, NOW).items
    assert entry.guid == "https://example.com/atom-1"
    assert entry.published == datetime(2026, 11, 1, tzinfo=UTC)


def test_item_without_date_gets_now():
    [entry] = parse(rss(item("Undated", date=None)).encode(), ANY, NOW).items
    assert entry.published == NOW


# feedparser warns (DeprecationWarning) when _published asks for updated_parsed of an entry that only has an
# unparsable published date; the project's filterwarnings=error would turn that into an exception
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("date", ["", "not a date"])
def test_item_with_an_unparsable_date_gets_now(date):
    [entry] = parse(rss(item("Badly dated", date=date)).encode(), ANY, NOW).items
    assert entry.published == NOW


def test_rss_item_date_is_converted_to_utc():
    [entry] = parse(rss(item("Dated", date="Mon, 02 Nov 2026 12:00:00 +0200")).encode(), ANY, NOW).items
    assert entry.published == datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def test_items_without_a_web_link_or_title_are_dropped():
    data = rss(
        item("Script link", link="javascript:alert(1)", guid="a"),
        item("Relative link", link="/relative", guid="b"),
        item("", link="https://example.com/untitled", guid="c"),
        item("Kept", link="https://example.com/kept", guid="d"),
    )
    parsed = parse(data.encode(), ANY, NOW)
    assert [entry.title for entry in parsed.items] == ["Kept"]


def test_long_summary_is_cut_and_still_sanitized():
    text = "<p>" + "lorem ipsum " * 100 + "</p><script>alert(1)</script>"
    [entry] = parse(rss(item("Long", description=text)).encode(), ANY, NOW).items
    assert len(entry.summary) <= 420
    assert "<script" not in entry.summary
    assert "lorem ipsum" in entry.summary


# malformed input never raises


def junk() -> bytes:
    return random.Random(1).randbytes(4096)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not xml at all",
        b"<!DOCTYPE html><html><head><title>Home</title></head><body><p>Welcome</p></body></html>",
        json.dumps({"items": [{"title": "t", "link": "https://example.com"}]}).encode(),
        junk(),
        rss().encode(),
        b"\xef\xbb\xbf",
        b"<?xml version='1.0'?><rss",
    ],
    ids=["empty", "text", "html", "json", "binary", "no-items", "bom", "cut-in-the-prolog"],
)
def test_unusable_input_gives_a_problem_not_an_exception(data):
    parsed = parse(data, ANY, NOW)
    assert isinstance(parsed, Parsed)
    assert parsed.items == []
    assert isinstance(parsed.problem, str) and parsed.problem.strip()


@pytest.mark.parametrize("name", ["cloud", "finance", "manufacturing", "security"])
def test_truncated_sample_does_not_raise(name):
    data = sample(name)
    parsed = parse(data[: len(data) // 2], ANY, NOW)
    assert isinstance(parsed, Parsed)
    assert len(parsed.items) < len(parse(data, ANY, NOW).items)


@pytest.mark.parametrize("name", ["cloud", "security"])
def test_truncated_sample_reports_a_problem(name):
    data = sample(name)
    parsed = parse(data[: len(data) // 2], ANY, NOW)
    assert parsed.problem


def test_latin1_feed_parses():
    data = rss(item("Café crème", description="<p>naïve Ærø</p>"), encoding="iso-8859-1").encode("latin-1")
    assert "é".encode("latin-1") in data
    parsed = parse(data, ANY, NOW)
    assert parsed.problem is None
    [entry] = parsed.items
    assert entry.title == "Café crème"
    assert "naïve Ærø" in entry.summary


# feeds.yaml


FEEDS_YAML = """\
feeds:
  cloud:
    url: feeds/cloud.xml
    title: Cloud
  security:
    url: https://security.example.com/atom.xml
    include: [patch, zero trust]
    exclude: [sponsored]
    max_items: 5
  finance:
    url: /srv/feeds/finance.xml
  abs-file:
    url: file:///srv/feeds/abs.xml
  rel-file:
    url: file://local/rel.xml
interests:
  cloud: [cloud]
  security: [security, cloud]
industries:
  finance: [finance, security]
"""


def write(tmp_path: Path, text: str, name: str = "feeds.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_catalog(tmp_path):
    catalog = load_catalog(write(tmp_path, FEEDS_YAML))
    assert set(catalog.feeds) == {"cloud", "security", "finance", "abs-file", "rel-file"}
    assert catalog.feeds["security"] == FeedConfig(
        url="https://security.example.com/atom.xml", include=["patch", "zero trust"], exclude=["sponsored"],
        max_items=5,
    )
    assert catalog.feeds["cloud"].max_items == 30
    assert catalog.interests == {"cloud": ["cloud"], "security": ["security", "cloud"]}
    assert catalog.industries == {"finance": ["finance", "security"]}
    assert catalog.base == tmp_path.resolve()


def test_feeds_for_deduplicates_and_includes_industry_feeds(tmp_path):
    catalog = load_catalog(write(tmp_path, FEEDS_YAML))
    assert catalog.feeds_for(["cloud", "security"], "finance") == ["cloud", "security", "finance"]
    assert catalog.feeds_for(["security"], "") == ["security", "cloud"]
    assert catalog.feeds_for([], "finance") == ["finance", "security"]
    assert catalog.feeds_for(["unknown"], "unknown") == []


def test_location_resolves_relative_paths_against_the_yaml_folder(tmp_path):
    folder = tmp_path / "config"
    folder.mkdir()
    catalog = load_catalog(write(folder, FEEDS_YAML))
    assert catalog.location("cloud") == str(folder.resolve() / "feeds" / "cloud.xml")
    assert catalog.location("rel-file") == str(folder.resolve() / "local" / "rel.xml")
    assert catalog.location("security") == "https://security.example.com/atom.xml"
    assert catalog.location("finance") == "/srv/feeds/finance.xml"
    assert catalog.location("abs-file") == "/srv/feeds/abs.xml"


def test_location_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    path = write(tmp_path, FEEDS_YAML)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_catalog(Path("..") / path.name).location("cloud") == str(tmp_path.resolve() / "feeds" / "cloud.xml")


def test_bundled_samples_load_from_a_catalog(tmp_path):
    text = "feeds:\n" + "".join(f"  {p.stem}:\n    url: {p}\n" for p in sorted(SAMPLES.glob("*.xml")))
    catalog = load_catalog(write(tmp_path, text))
    for name in catalog.feeds:
        parsed = parse(Path(catalog.location(name)).read_bytes(), catalog.feeds[name], NOW)
        assert parsed.problem is None and parsed.items


def test_interest_naming_an_undefined_feed(tmp_path):
    text = "feeds:\n  cloud:\n    url: https://example.com/c.xml\ninterests:\n  ai: [cloud, robots]\n"
    with pytest.raises(ConfigError) as error:
        load_catalog(write(tmp_path, text))
    assert "'robots'" in str(error.value)
    assert "interests.ai" in str(error.value)
    assert "feeds.yaml" in str(error.value)


def test_industry_naming_an_undefined_feed(tmp_path):
    text = "feeds:\n  cloud:\n    url: https://example.com/c.xml\nindustries:\n  retail: [shops]\n"
    with pytest.raises(ConfigError, match="shops"):
        load_catalog(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("feedz:\n  a:\n    url: x\n", "feedz"),
        ("feeds:\n  a:\n    url: x\n    keywords: [a]\n", "keywords"),
        ("feeds:\n  a:\n    title: no url\n", "url"),
        ("feeds:\n  a:\n    url: x\n    max_items: 0\n", "max_items"),
    ],
)
def test_unknown_or_invalid_keys(tmp_path, text, named):
    with pytest.raises(ConfigError) as error:
        load_catalog(write(tmp_path, text))
    assert named in str(error.value)


@pytest.mark.parametrize("text", ["feeds: [\n", "feeds:\n  a: {url: x\n", "\tfeeds: {}\n", "a: b: c\n"])
def test_invalid_yaml(tmp_path, text):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_catalog(write(tmp_path, text))


def test_missing_feeds_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_catalog(tmp_path / "absent.yaml")


def test_empty_feeds_file_is_an_empty_catalog(tmp_path):
    catalog = load_catalog(write(tmp_path, ""))
    assert catalog.feeds == {} and catalog.feeds_for(["x"], "y") == []


@pytest.mark.parametrize("text", ["- cloud\n- security\n", "just a string\n"])
def test_top_level_that_is_not_a_mapping(tmp_path, text):
    with pytest.raises(ConfigError, match="mapping"):
        load_catalog(write(tmp_path, text))


def test_catalog_built_in_code():
    catalog = Catalog(feeds={"a": ANY, "b": ANY}, interests={"x": ["a", "b"], "y": ["b"]}, industries={"z": ["a"]})
    assert catalog.feeds_for(["y", "x"], "z") == ["b", "a"]


def test_fetch_settings_come_from_feeds_yaml(tmp_path):
    text = "fetch:\n  timeout: 2.5\n  max_bytes: 100000\n  concurrency: 3\n  max_redirects: 1\n" + FEEDS_YAML
    settings = load_catalog(write(tmp_path, text)).fetch
    assert (settings.timeout, settings.max_bytes, settings.concurrency, settings.max_redirects) == (2.5, 100000, 3, 1)
    assert load_catalog(write(tmp_path, FEEDS_YAML)).fetch == FetchConfig()
    assert FetchConfig().timeout == 15 and FetchConfig().max_bytes == 5 * 1024 * 1024


@pytest.mark.parametrize(("text", "named"), [("fetch:\n  timeout: 0\n", "fetch.timeout"),
                                             ("fetch:\n  retries: 3\n", "fetch.retries"),
                                             ("fetch:\n  concurrency: 0\n", "fetch.concurrency")])
def test_bad_fetch_settings_are_named(tmp_path, text, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_catalog(write(tmp_path, text))


def test_the_bundled_feeds_yaml_loads_and_every_feed_is_read():
    catalog = load_catalog(Path(nurture.__file__).parent.parent / "feeds.yaml")
    used = {name for names in [*catalog.interests.values(), *catalog.industries.values()] for name in names}
    assert used == set(catalog.feeds)


# a corpus of odd real-world feeds: each parses to the items a reader would expect


ATOM = '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>{}</feed>'
RDF = ('<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
       'xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
       '<channel rdf:about="https://e.example/"><title>t</title><link>https://e.example/</link></channel>{}</rdf:RDF>')
LAUGHS = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
          + "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefgh", "bcdefghi", strict=True))
          + ']><rss version="2.0"><channel><title>t</title><item><title>Laughs &i;</title>'
          "<link>https://e.example/1</link></item></channel></rss>")
XXE = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><rss version="2.0"><channel>'
       "<title>t</title><item><title>Secret &x; here</title><link>https://e.example/1</link></item></channel></rss>")
ODD_FEEDS: dict[str, tuple[bytes, list[str]]] = {
    "rss-0.91": (b'<?xml version="1.0"?><rss version="0.91"><channel><title>t</title><item><title>Old school'
                 b"</title><link>https://e.example/1</link><description>d</description></item></channel></rss>",
                 ["Old school"]),
    "rss-1.0-rdf": (RDF.format('<item rdf:about="https://e.example/1"><title>RDF item</title>'
                               "<link>https://e.example/1</link><dc:date>2026-11-01T10:00:00Z</dc:date></item>").encode(),
                    ["RDF item"]),
    "atom-content-only": (ATOM.format('<entry><id>a</id><title>Content only</title><link href="https://e.example/1"/>'
                                      '<updated>2026-11-01T00:00:00Z</updated><content type="html">&lt;p&gt;body'
                                      "&lt;/p&gt;</content></entry>").encode(), ["Content only"]),
    "atom-text-title-with-markup": (ATOM.format('<entry><id>a</id><title type="xhtml"><div xmlns="http://www.w3.org/'
                                                '1999/xhtml">Rich <b>title</b></div></title><link href="https://e.'
                                                'example/1"/></entry>').encode(), ["Rich title"]),
    "undefined-html-entity": (rss(item("Caf&eacute; &amp; bar&nbsp;talk")).encode(), ["Café & bar talk"]),
    "bare-ampersand": (rss(item("Tom & Jerry")).encode(), ["Tom & Jerry"]),
    "double-escaped-title": (rss(item("&amp;lt;b&amp;gt;Bold&amp;lt;/b&amp;gt; news")).encode(), ["<b>Bold</b> news"]),
    "bom-and-blank-lines": (b"\xef\xbb\xbf\n\n  " + rss(item("After a BOM")).encode(), ["After a BOM"]),
    "utf-16": (rss(item("Zürich"), encoding="utf-16").encode("utf-16"), ["Zürich"]),
    "windows-1252-undeclared": (('<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>'
                                "“Smart” quotes – dash</title><link>https://e.example/1</link></item></channel></rss>"
                                 ).encode("cp1252"), ["“Smart” quotes – dash"]),
    "cdata-title": (rss(item("<![CDATA[Kept <as> text]]>")).encode(), ["Kept <as> text"]),
    "duplicate-guids": (rss(item("Newer copy", guid="same", date="Tue, 03 Nov 2026 10:00:00 +0000"),
                            item("Older copy", guid="same")).encode(), ["Newer copy"]),
    "future-date": (rss(item("From the future", date="Fri, 01 Jan 2100 00:00:00 +0000")).encode(), ["From the future"]),
    "billion-laughs": (LAUGHS.encode(), ["Laughs &i;"]),  # expat refuses to expand; the rest is kept
    "external-entity": (XXE.encode(), ["Secret here"]),
    "many-items": (rss(*(item(f"Item {n}", link=f"https://e.example/{n}", guid=str(n)) for n in range(1000))).encode(),
                   [f"Item {n}" for n in range(30)]),
}


ODD_BUT_NOTED = {"billion-laughs", "bare-ampersand", "undefined-html-entity"}


@pytest.mark.parametrize("name", list(ODD_FEEDS))
def test_odd_real_world_feeds_parse_to_sensible_items(name):
    data, titles = ODD_FEEDS[name]
    parsed = parse(data, ANY, NOW)
    assert [entry.title for entry in parsed.items] == titles
    for entry in parsed.items:
        assert entry.published <= NOW
        assert "root:" not in entry.title + entry.summary  # no external entity was read
    assert (parsed.problem is not None) == (name in ODD_BUT_NOTED), parsed.problem


def test_a_future_date_is_read_as_now():
    [entry] = parse(ODD_FEEDS["future-date"][0], ANY, NOW).items
    assert entry.published == NOW


def test_a_guid_shared_within_one_feed_keeps_the_newest_copy():
    [entry] = parse(ODD_FEEDS["duplicate-guids"][0], ANY, NOW).items
    assert (entry.guid, entry.published) == ("same", datetime(2026, 11, 3, 10, tzinfo=UTC))


def test_items_sharing_a_link_without_guid_are_told_apart_by_title_and_date():
    data = rss(item("A", link="https://e.example/", guid=None), item("B", link="https://e.example/", guid=None),
               item("C", link="https://e.example/c", guid=None, date=None)).encode()
    first = {entry.title: entry.guid for entry in parse(data, ANY, NOW).items}
    assert first["C"] == "https://e.example/c"
    assert first["A"].startswith("sha256:") and first["B"].startswith("sha256:") and first["A"] != first["B"]
    later = {entry.title: entry.guid for entry in parse(data, ANY, datetime(2027, 1, 1, tzinfo=UTC)).items}
    assert later == first  # keys stay the same on the next refresh


def test_relative_links_are_resolved_against_the_feed_url():
    data = rss(item("Relative", link="/posts/1", description='<p><a href="/more">more</a></p>')).encode()
    assert parse(data, ANY, NOW).items == []  # nowhere to resolve against
    [entry] = parse(data, ANY, NOW, base_url="https://blog.example.org/feed/").items
    assert entry.link == "https://blog.example.org/posts/1"
    assert 'href="https://blog.example.org/more"' in entry.summary


# sanitizing: what must never reach a template


@pytest.mark.parametrize(
    ("markup", "forbidden"),
    [
        ('<svg onload="steal()"><circle r="1"/></svg>', ["<svg", "onload", "steal"]),
        ("<math><mi xlink:href='javascript:alert(1)'>x</mi></math>", ["<math", "javascript"]),
        ('<object data="https://evil.example/x.swf"></object><embed src="https://evil.example/x">', ["<object",
                                                                                                   "<embed", "evil"]),
        ('<base href="https://evil.example/">', ["<base", "evil"]),
        ('<meta http-equiv="refresh" content="0;url=https://evil.example/">', ["<meta", "evil"]),
        ('<link rel="stylesheet" href="https://evil.example/x.css">', ["<link", "evil"]),
        ("<style>@import url(https://evil.example/x.css);</style><p>a</p>", ["@import", "evil"]),
        ('<p style="position:fixed;top:0;left:0;width:100%;height:100%">cover</p>', ["style", "position"]),
        ('<div style="background:url(https://evil.example/track.gif)">t</div>', ["style", "evil"]),
        ('<p style="width:expression(alert(1))">x</p>', ["expression", "alert"]),
        ('<a href="jav&#x09;ascript:alert(1)">a</a>', ["javascript", "alert", "script:"]),
        ('<a href=" javascript:alert(1)">a</a>', ["javascript", "alert"]),
        ('<a href="vbscript:msgbox(1)">a</a>', ["vbscript"]),
        ('<a href="/relative/path">a</a>', ["href"]),
        ('<a href="https://ok.example/" target="_top" class="button" id="x">a</a>', ["target", "class", "id="]),
        ("<!--[if IE]><script>alert(1)</script><![endif]--><p>a</p>", ["<!--", "alert"]),
        ('<img src="https://tracker.example/pixel.gif" width="1" height="1">', ["<img", "tracker"]),
        ('<table><tr><td background="https://evil.example/x">t</td></tr></table>', ["<table", "<td", "evil"]),
        ('<form><button formaction="https://evil.example/">go</button></form>', ["<form", "<button", "evil"]),
        ("<p>a</p></div></div></td></tr></table></body></html><div class='card'>", ["</div>", "</body>", "class"]),
    ],
)
def test_sanitize_removes_more_tricks(markup, forbidden):
    clean = sanitize(markup)
    for word in forbidden:
        assert word not in clean.lower()


@pytest.mark.parametrize("markup", ["<b>bold <i>never closed", "<ul><li>one<li>two", "<p><a href='https://e/'>x"])
def test_sanitized_html_is_balanced_so_it_cannot_break_the_layout(markup):
    clean = sanitize(markup)
    opened = re.findall(r"<(\w+)[ >]", clean)
    closed = re.findall(r"</(\w+)>", clean)
    assert sorted(tag for tag in opened if tag != "br") == sorted(closed)


def test_a_feed_summary_full_of_tricks_comes_out_clean():
    description = ('<p onclick="x()">Intro <a href="javascript:steal()">bad</a> <a href="https://ok.example/a">good'
                   '</a></p><script>alert(1)</script><style>body{display:none}</style></div></div>')
    [entry] = parse(rss(item("Tricks", description=description)).encode(), ANY, NOW).items
    assert entry.summary == ('<p>Intro <a rel="noopener noreferrer">bad</a> '
                             '<a href="https://ok.example/a" rel="noopener noreferrer">good</a></p>')


def test_a_long_summary_is_cut_as_plain_text_and_escaped():
    description = "<p>" + "a &lt;b&gt; " * 100 + "</p>"
    [entry] = parse(rss(item("Long", description=description)).encode(), ANY, NOW).items
    assert "<b>" not in entry.summary and "&lt;b&gt;" in entry.summary
    assert entry.summary.endswith("…")


# mixing a digest across feeds


@dataclass(frozen=True)
class Story:
    feed: str
    link: str
    published: datetime


def day(number: int) -> datetime:
    return datetime(2026, 11, number, tzinfo=UTC)


def test_mix_lets_every_feed_take_a_turn():
    busy = [Story("cloud", f"https://e.example/c{n}", day(20 - n)) for n in range(10)]
    quiet = [Story("security", "https://e.example/s1", day(1)), Story("finance", "https://e.example/f1", day(2))]
    picked = mix(busy + quiet, ["cloud", "security", "finance"], 5)
    assert [story.link for story in picked] == ["https://e.example/c0", "https://e.example/c1", "https://e.example/c2",
                                                "https://e.example/f1", "https://e.example/s1"]


def test_mix_breaks_ties_by_the_order_of_the_feeds_and_takes_an_article_once():
    same = day(5)
    stories = [Story("b", "https://e.example/1", same), Story("a", "https://e.example/2", same),
               Story("b", "https://e.example/2", same), Story("a", "https://e.example/3", day(4))]
    assert [(s.feed, s.link) for s in mix(stories, ["a", "b"], 5)] == [
        ("a", "https://e.example/2"), ("b", "https://e.example/1"), ("a", "https://e.example/3")]


def test_mix_with_a_small_limit_takes_the_newest_of_the_first_round():
    stories = [Story("a", "https://e.example/a", day(1)), Story("b", "https://e.example/b", day(3)),
               Story("c", "https://e.example/c", day(2))]
    assert [s.feed for s in mix(stories, ["a", "b", "c"], 2)] == ["b", "c"]
    assert mix(stories, ["a", "b", "c"], 0) == [] and mix([], ["a"], 3) == []
