"""Rendering the bundled templates, CSS inlining, escaping, locales, template errors and the text part."""

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import lxml.html
import pytest

from nurture.errors import TemplateProblem
from nurture.models import FeedItem
from nurture.render import inline
from nurture.render.cache import TemplateCache
from nurture.render.inline import inline_blocks, inline_document, stylesheet
from nurture.render.templates import Renderer, TrackedLink
from nurture.render.textpart import html_to_text
from nurture.render.variables import email_variables, item_view, sample_lead
from nurture.score.history import why
from nurture.settings import Settings

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
LAYOUT = TEMPLATES / "en" / "layout.html"
LAYOUT_PARTS = re.findall(r'\{%-?\s*include\s+"([^"]+)"', LAYOUT.read_text(encoding="utf-8"))
UNSUBSCRIBE = "https://t.example/u/UNSUB"
PREFERENCES = "https://t.example/p/PREFS"
PIXEL = "https://t.example/o.gif"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
EVIL_TITLE = "<script>alert(1)</script> & Co"
RECIPES = "https://blog.example.org/recipes?x=1&y='2'"
RECIPES_HREF = "https://blog.example.org/recipes?x=1&amp;y='2'"  # as nh3 writes it


def url_for(index: int) -> str:
    return f"https://t.example/c/{index}"


def feed_items() -> list[FeedItem]:
    return [
        FeedItem(feed="security", guid="g1", title=EVIL_TITLE, link="https://news.example.net/evil",
                 summary="<p>Attackers &amp; defenders, <strong>café</strong> edition.</p>",
                 published=datetime(2026, 11, 18, tzinfo=UTC), fetched_at=NOW),
        FeedItem(feed="cloud", guid="g2", title="Five ways to cut your Kubernetes bill",
                 link="https://blog.example.org/k8s?utm=1&x=2", summary="<p>Right-size requests.</p>",
                 published=datetime(2026, 11, 10, tzinfo=UTC), fetched_at=NOW),
        FeedItem(feed="cloud", guid="g3", title="Grüße – café au lait", link="https://blog.example.org/cafe",
                 summary=f'<p>Read <a href="{RECIPES_HREF}" rel="noopener noreferrer">the recipes</a>.</p>',
                 published=datetime(2026, 11, 2, tzinfo=UTC), fetched_at=NOW),
    ]


def make_context(items=None, lead=None):
    return email_variables(Settings(), lead or sample_lead(), feed_items() if items is None else items,
                           unsubscribe_url=UNSUBSCRIBE, preferences_url=PREFERENCES,
                           confirm_url="https://t.example.com/confirm/tok")


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


@pytest.fixture(scope="module")
def digest(renderer):
    return renderer.render("digest", "en", make_context(), url_for=url_for, pixel_url=PIXEL)


def hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


# the bundled templates


@pytest.mark.parametrize("name", ["digest", "confirmation"])
@pytest.mark.parametrize("locale", ["en", "nl"])
def test_render_basics(renderer, name, locale):
    rendered = renderer.render(name, locale, make_context(), url_for=url_for, pixel_url=PIXEL)
    assert rendered.subject.strip()
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    assert rendered.preheader
    assert rendered.html.count(PIXEL) == 1
    assert rendered.html.lstrip().lower().startswith("<!doctype html>")
    assert UNSUBSCRIBE in rendered.html and UNSUBSCRIBE in rendered.text
    assert PREFERENCES in rendered.html
    for href in hrefs(rendered.html):
        assert href in (UNSUBSCRIBE, PREFERENCES) or re.fullmatch(r"https://t\.example/c/\d+", href), href
    used = {int(href.rsplit("/", 1)[1]) for href in hrefs(rendered.html) if "/c/" in href}
    assert used == set(range(len(rendered.links)))
    for text in (rendered.html, rendered.text, rendered.subject, rendered.preheader):
        assert "{{" not in text and "{%" not in text and "%7B%7B" not in text.upper()
    assert rendered.text.endswith("\n")


def test_digest_links(digest):
    assert digest.links[0] == TrackedLink("https://example.com/", action="honeypot", points=0)  # hidden, first
    assert digest.links[1:4] == (
        TrackedLink("https://news.example.net/evil"),
        TrackedLink("https://blog.example.org/k8s?utm=1&x=2"),
        TrackedLink("https://blog.example.org/cafe"),
    )
    [callback] = [link for link in digest.links if link.action == "callback"]
    assert callback.url == Settings().mail.calls_to_action["callback"].url
    [pricing] = [link for link in digest.links if link.tag == "high-intent"]
    assert pricing.url == "https://example.com/pricing"
    assert pricing.action == "content"
    assert digest.links[4] == TrackedLink(RECIPES)  # a link inside a feed summary
    assert len(digest.links) == 7
    assert digest.links[1].as_dict() == {"url": "https://news.example.net/evil", "action": "content",
                                         "tag": None, "points": None}


def test_no_article_url_appears_untracked(digest):
    for link in digest.links:
        assert link.url not in digest.html
        assert link.url not in digest.text


def test_text_part_uses_the_same_tracked_urls(digest):
    for index, link in enumerate(digest.links):
        assert (url_for(index) in digest.text) is (link.action != "honeypot")
    assert PREFERENCES in digest.text


def test_subject_is_the_first_title_unescaped(digest):
    assert digest.subject == EVIL_TITLE
    assert digest.preheader == "3 new articles on cloud, security"


def test_css_is_inlined(digest):
    cards = re.findall(r'<div class="card"[^>]*>', digest.html)
    assert len(cards) == 3
    for card in cards:
        assert re.search(r'style="[^"]*border', card), card
    assert re.search(r'<a class="button"[^>]*style="[^"]*background', digest.html)
    assert re.search(r'<body[^>]*style="[^"]*margin', digest.html)
    assert ".card {" not in digest.html  # the rule itself is gone; only the media query is kept


def test_hostile_title_is_escaped_in_html_and_plain_in_text(digest):
    assert "<script>" not in digest.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in digest.html
    assert EVIL_TITLE in digest.text
    assert "&amp;" not in digest.text and "&lt;" not in digest.text


def test_summary_html_is_kept_and_text_is_plain(digest):
    assert "<strong>café</strong>" in digest.html
    assert "Attackers & defenders, café edition." in digest.text
    assert "<strong>" not in digest.text


def test_non_ascii_survives(digest):
    assert "Grüße – café au lait" in digest.html
    assert "Grüße – café au lait" in digest.text


def test_lead_fields_are_escaped(renderer):
    lead = sample_lead()
    lead.first_name = '<b onmouseover="x()">Sam</b>'
    rendered = renderer.render("confirmation", "en", make_context(lead=lead), url_for=url_for, pixel_url=PIXEL)
    assert "<b onmouseover" not in rendered.html
    assert "&lt;b onmouseover=" in rendered.html
    assert rendered.subject == 'Welcome to Acme Software, <b onmouseover="x()">Sam</b>'


def test_an_unconfirmed_leads_confirmation_echoes_nothing_typed_but_the_address(renderer):
    lead = sample_lead("victim@example.org")
    lead.confirmed_at = None  # signed up on the public form by anyone: a spammer's text must not ride along
    lead.first_name, lead.last_name, lead.company = "Cheap pills at spam.example", "Win", "Big prize"
    confirm = "https://t.example.com/confirm/tok"
    for locale in ("en", "nl"):
        rendered = renderer.render("confirmation", locale, make_context(lead=lead), url_for=url_for, pixel_url=PIXEL)
        for part in (rendered.subject, rendered.html, rendered.text):
            assert not any(word in part for word in ("pills", "Win", "prize")), part
        assert "victim@example.org" in rendered.html and confirm in rendered.html and confirm in rendered.text
        assert rendered.subject in ("Please confirm your address for Acme Software",
                                    "Bevestig uw adres voor Acme Software")
        assert [link.action for link in rendered.links] == ["honeypot"]  # no call-back offer before consent


def test_title_with_line_break_cannot_break_the_subject(renderer):
    items = feed_items()
    items[0].title = "Line one\r\nBcc: victim@example.net\tand more"
    rendered = renderer.render("digest", "en", make_context(items=items), url_for=url_for, pixel_url=PIXEL)
    assert rendered.subject == "Line one Bcc: victim@example.net and more"


def test_empty_digest_has_a_fallback_subject(renderer):
    rendered = renderer.render("digest", "en", make_context(items=[]), url_for=url_for, pixel_url=PIXEL)
    assert rendered.subject == "What is new at Acme Software"
    assert 'class="card"' not in rendered.html


def test_confirmation(renderer):
    rendered = renderer.render("confirmation", "en", make_context(), url_for=url_for, pixel_url=PIXEL)
    assert rendered.subject == "Welcome to Acme Software, Sam"
    assert rendered.links == (TrackedLink("https://example.com/", action="honeypot", points=0),
                              TrackedLink(Settings().mail.calls_to_action["callback"].url, action="callback"))
    assert "Call me back" in rendered.html
    assert url_for(1) in rendered.text
    assert url_for(0) not in rendered.text  # the honeypot is for machines only


def test_without_tracking_links_are_plain_and_nothing_is_tracked(renderer):
    rendered = renderer.render("digest", "en", make_context())
    assert rendered.links == ()
    assert "https://news.example.net/evil" in rendered.html
    assert "https://example.com/pricing" in rendered.html
    assert "o.gif" not in rendered.html and "<img" not in rendered.html


def test_rendering_twice_gives_the_same_result(renderer, digest):
    again = renderer.render("digest", "en", make_context(), url_for=url_for, pixel_url=PIXEL)
    assert again == digest


# locales


def test_unknown_locale_falls_back_to_english(renderer, digest):
    german = renderer.render("digest", "de", make_context(), url_for=url_for, pixel_url=PIXEL)
    assert german == digest
    assert "Unsubscribe" in german.html


def test_dutch(renderer):
    rendered = renderer.render("digest", "nl", make_context(), url_for=url_for, pixel_url=PIXEL)
    assert "Afmelden" in rendered.html and "Afmelden" in rendered.text
    assert "Bel mij terug" in rendered.html
    assert "Unsubscribe" not in rendered.html
    assert rendered.preheader == "3 nieuwe artikelen over cloud, security"
    assert "18-11-2026" in rendered.html
    confirmation = renderer.render("confirmation", "nl", make_context(), url_for=url_for, pixel_url=PIXEL)
    assert confirmation.subject == "Welkom bij Acme Software, Sam"


def test_dutch_borrows_the_english_layout(renderer):
    rendered = renderer.render("digest", "nl", make_context(), url_for=url_for, pixel_url=PIXEL)
    assert re.search(r'<div class="card"[^>]*style="[^"]*border', rendered.html)
    assert {"en", "nl"} <= set(renderer.locales())


# broken templates


def template_dir(tmp_path: Path, files: dict[str, str], layout: str | None = None) -> Path:
    folder = tmp_path / "templates" / "en"
    folder.mkdir(parents=True)
    if layout is None:
        shutil.copy(LAYOUT, folder / "layout.html")
    else:
        (folder / "layout.html").write_text(layout, encoding="utf-8")
    for part in LAYOUT_PARTS:  # what the layout includes (the footer)
        shutil.copy(TEMPLATES / "en" / part, folder / part)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder.parent


HEAD = '{% extends "layout.html" %}\n{% block subject %}Hi{% endblock %}\n{% block preheader %}pre{% endblock %}\n'


def test_warming_compiles_the_templates_and_what_they_load(tmp_path):
    folder = template_dir(tmp_path, {"welcome.html": HEAD + "{% block content %}<p>Hi</p>{% endblock %}\n",
                                     "broken.html": HEAD + "{% block content %}{% if x %}{% endblock %}\n"})
    renderer = Renderer(folder)
    renderer.warm(["welcome", "broken", "missing"], "en")  # the broken and missing ones are passed over
    cache = renderer.environment("en").cache
    assert cache is not None
    assert {name for _, name in cache} == {"welcome.html", "layout.html", *LAYOUT_PARTS}
    with pytest.raises(TemplateProblem, match="broken.html"):  # what is wrong is told when it renders
        renderer.render("broken", "en", make_context())


def test_missing_template(tmp_path):
    with pytest.raises(TemplateProblem, match="'nothing' not found"):
        Renderer(template_dir(tmp_path, {})).render("nothing", "en", make_context())


def test_syntax_error_names_the_file(tmp_path):
    source = HEAD + "{% block content %}\n<p>{% if lead.first_name %}never closed</p>\n{% endblock %}\n"
    folder = template_dir(tmp_path, {"broken.html": source})
    with pytest.raises(TemplateProblem) as error:
        Renderer(folder).render("broken", "en", make_context())
    assert "broken.html" in str(error.value)
    assert "endif" in str(error.value)


def test_syntax_error_in_an_expression(tmp_path):
    source = HEAD + "{% block content %}\n<p>{{ lead.first_name( }}</p>\n{% endblock %}\n"
    with pytest.raises(TemplateProblem, match=r"broken\.html:\d+: "):
        Renderer(template_dir(tmp_path, {"broken.html": source})).render("broken", "en", make_context())


def test_syntax_error_names_the_right_line(tmp_path):
    source = HEAD + "{% block content %}\n<p>one</p>\n\n<p>two</p>\n\n<p>{{ lead.first_name( }}</p>\n{% endblock %}\n"
    assert source.splitlines()[8] == "<p>{{ lead.first_name( }}</p>"  # line 9
    with pytest.raises(TemplateProblem) as error:
        Renderer(template_dir(tmp_path, {"broken.html": source})).render("broken", "en", make_context())
    assert "broken.html:9:" in str(error.value)


def test_syntax_error_line_without_inlining(tmp_path):
    source = HEAD + "{% block content %}\n<p>one</p>\n\n<p>two</p>\n\n<p>{{ lead.first_name( }}</p>\n{% endblock %}\n"
    folder = template_dir(tmp_path, {"broken.html": source})
    with pytest.raises(TemplateProblem, match=r"broken\.html:9: "):
        Renderer(folder, inline_css=False).render("broken", "en", make_context())


def test_undefined_variable_names_the_template_and_variable(tmp_path):
    source = HEAD + "{% block content %}\n<p>{{ no_such_variable }}</p>\n{% endblock %}\n"
    with pytest.raises(TemplateProblem) as error:
        Renderer(template_dir(tmp_path, {"undef.html": source})).render("undef", "en", make_context())
    assert "undef" in str(error.value)
    assert "no_such_variable" in str(error.value)


def test_undefined_attribute_in_subject(tmp_path):
    source = ('{% extends "layout.html" %}\n{% block subject %}Hi {{ lead.nickname }}{% endblock %}\n'
              "{% block preheader %}p{% endblock %}\n{% block content %}x{% endblock %}\n")
    with pytest.raises(TemplateProblem, match="nickname"):
        Renderer(template_dir(tmp_path, {"subj.html": source})).render("subj", "en", make_context())


def test_missing_context_variable_is_reported(renderer):
    variables = make_context()
    del variables["unsubscribe_url"]
    with pytest.raises(TemplateProblem, match="unsubscribe_url"):
        renderer.render("digest", "en", variables, url_for=url_for, pixel_url=PIXEL)


def test_template_without_subject(tmp_path):
    source = '{% extends "layout.html" %}\n{% block content %}<p>x</p>{% endblock %}\n'
    with pytest.raises(TemplateProblem):
        Renderer(template_dir(tmp_path, {"nosubject.html": source})).render("nosubject", "en", make_context())


def layout_without_pixel() -> str:
    layout = LAYOUT.read_text(encoding="utf-8")
    without = re.sub(r"\{% if pixel_url %\}.*?\{% endif %\}", "", layout)
    assert without != layout
    return without


PLAIN = HEAD + '{% block content %}<p><a href="{{ track("https://example.com/x") }}">x</a></p>{% endblock %}\n'


def test_layout_without_pixel_and_no_pixel_url_renders_html(tmp_path):
    folder = template_dir(tmp_path, {"plain.html": PLAIN}, layout=layout_without_pixel())
    rendered = Renderer(folder).render("plain", "en", make_context(), url_for=url_for)
    assert "<img" not in rendered.html
    assert '<a href="https://t.example/c/0"' in rendered.html
    assert rendered.links == (TrackedLink("https://example.com/x"),)


@pytest.mark.parametrize("case", ["layout-without-pixel", "pixel-url-with-ampersand"])
def test_pixel_is_added_once_without_escaping_the_email(tmp_path, case):
    if case == "layout-without-pixel":
        folder, pixel = template_dir(tmp_path, {"plain.html": PLAIN}, layout=layout_without_pixel()), PIXEL
    else:
        folder, pixel = template_dir(tmp_path, {"plain.html": PLAIN}), PIXEL + "?a=1&b=2"
    rendered = Renderer(folder).render("plain", "en", make_context(), url_for=url_for, pixel_url=pixel)
    assert "&lt;" not in rendered.html
    assert rendered.html.count("o.gif") == 1
    assert rendered.html.index("o.gif") < rendered.html.lower().rindex("</body>")


def test_text_part_is_made_from_html_when_the_template_has_no_text_block(tmp_path):
    source = HEAD + '{% block content %}<p>Read <a href="{{ track("https://example.com/x") }}">this</a></p>' \
        "{% endblock %}\n"
    rendered = Renderer(template_dir(tmp_path, {"notext.html": source})).render(
        "notext", "en", make_context(), url_for=url_for, pixel_url=PIXEL)
    assert "Read this (https://t.example/c/1)" in rendered.text
    assert "https://t.example/c/0" not in rendered.text  # the hidden honeypot link
    assert "Unsubscribe (https://t.example/u/UNSUB)" in rendered.text
    assert "<" not in rendered.text


# inline


def test_inline_document_keeps_jinja_syntax():
    source = ('<html><head><style>.x { color: red; }</style></head><body>'
              '<a class="x" href="{{ track(url) }}">{{ label }}</a>{% if a %}y{% endif %}</body></html>')
    result = inline_document(source)
    assert 'href="{{ track(url) }}"' in result
    assert "{% if a %}y{% endif %}" in result
    assert "%7B" not in result.upper()
    assert '<a class="x" href="{{ track(url) }}" style="color:red">{{ label }}</a>' in result
    assert "<style" not in result


def test_inline_blocks_only_touches_html_blocks():
    css = stylesheet("<style>.card { border: 1px solid #000; }</style>")
    assert ".card" in css
    source = ('{% block subject %}<div class="card">s</div>{% endblock %}'
              '{% block content %}<div class="card">{{ x }}</div>{% endblock %}')
    result = inline_blocks(source, css)
    subject, body = result.split("{% endblock %}", 1)
    assert "style" not in subject
    assert re.search(r'<div class="card" style="border:1px solid #000">\{\{ x \}\}</div>', body)


# text part


def test_html_to_text_keeps_link_urls_in_brackets():
    text = html_to_text('<p>Read <a href="https://example.com/a?b=1&amp;c=2">the article</a> now.</p>')
    assert text == "Read the article (https://example.com/a?b=1&c=2) now.\n"


def test_html_to_text_drops_head_style_and_script():
    html = ("<html><head><title>T</title><style>p{color:red}</style></head><body>"
            "<script>alert(1)</script><p>One</p><div>Two &amp; three</div><ul><li>a</li><li>b</li></ul></body></html>")
    text = html_to_text(html)
    assert "color" not in text and "alert" not in text and "T\n" not in text
    assert text.splitlines()[0] == "One"
    assert "Two & three" in text
    assert "a\n" in text and "b" in text


def test_html_to_text_collapses_blank_lines():
    text = html_to_text("<p>a</p>" + "<br>" * 10 + "<p>b</p>")
    assert "\n\n\n" not in text
    assert text == "a\n\nb\n"


def test_link_without_href_has_no_brackets():
    assert html_to_text("<p><a>anchor</a></p>") == "anchor\n"


# every link is tracked unless marked


LINKS = HEAD + """{% block content %}
<p><a href="https://example.com/plain?a=1&amp;b=2">literal</a>
<a class="x" href="{{ lead.company_url }}">expression</a>
<a href='https://example.com/{{ lead.slug }}/page'>mixed</a>
<a href="{% if lead.vip %}https://example.com/vip{% else %}https://example.com/all{% endif %}">statement</a>
<a href="{{ track('https://example.com/tagged', tag='high-intent') }}">explicit</a>
<a notrack href="https://example.com/private">marked</a>
<a href="https://example.com/marked-after" notrack="">marked after</a>
<a href="mailto:sales@example.com">mail</a> <a href="#top">anchor</a> <a name="plain">no href</a>
<a href="{{ unsubscribe_url }}">unsubscribe</a> <a href="{{ preferences_url }}">preferences</a></p>
{% endblock %}
"""


@pytest.fixture
def linked(tmp_path):
    lead = {"company_url": "https://example.com/co?x=<1>", "slug": "ada lovelace", "vip": True, "locale": "en"}
    variables = {**make_context(), "lead": lead}
    return Renderer(template_dir(tmp_path, {"links.html": LINKS})).render(
        "links", "en", variables, url_for=url_for, pixel_url=PIXEL)


def test_every_link_is_tracked_unless_marked(linked):
    assert [link.url for link in linked.links] == [
        "https://example.com/", "https://example.com/plain?a=1&b=2", "https://example.com/co?x=<1>",
        "https://example.com/ada lovelace/page", "https://example.com/vip", "https://example.com/tagged"]
    assert linked.links[0].action == "honeypot" and linked.links[5].tag == "high-intent"
    found = {label: href for href, label in re.findall(r'href="([^"]*)"[^>]*>([^<]*)</a>', linked.html)}
    assert found == {
        "\u200b": url_for(0), "literal": url_for(1), "expression": url_for(2), "mixed": url_for(3),
        "statement": url_for(4), "explicit": url_for(5), "marked": "https://example.com/private", "marked after": "https://example.com/marked-after",
        "mail": "mailto:sales@example.com", "anchor": "#top", "unsubscribe": UNSUBSCRIBE, "preferences": PREFERENCES,
        "Choose your topics": PREFERENCES, "Unsubscribe": UNSUBSCRIBE}
    assert "notrack" not in linked.html


def test_tracking_a_link_keeps_the_lines_of_the_template(tmp_path):
    source = HEAD + '{% block content %}\n<a href="https://example.com/a\n">x</a>\n<p>{{ lead.first_name( }}</p>\n' \
        "{% endblock %}\n"
    assert source.splitlines()[6] == "<p>{{ lead.first_name( }}</p>"  # line 7
    with pytest.raises(TemplateProblem, match=r"broken\.html:7: "):
        Renderer(template_dir(tmp_path, {"broken.html": source})).render("broken", "en", make_context())


def test_links_inside_feed_summaries_are_tracked_in_html_and_text(digest):
    index = digest.links.index(TrackedLink(RECIPES))
    assert f'<a href="{url_for(index)}" rel="noopener noreferrer">the recipes</a>' in digest.html
    assert f"Read the recipes ({url_for(index)})." in digest.text
    assert "recipes?x" not in digest.html + digest.text


def test_handoff_profile_link_is_never_tracked(renderer):
    variables = {"lead": sample_lead(), "score": 12, "threshold": 12, "clicks": [], "profile_url": "https://t.example/sales/P",
                 "company": "Acme", "sales": Settings().sales, "handoff": None, "events": [],
                 "why": why([], 0, 12, Settings().scoring), "follow_up": None}
    rendered = renderer.render("handoff", "en", variables, url_for=url_for)
    assert rendered.links == ()
    assert 'href="https://t.example/sales/P"' in rendered.html


# compiled once per version


def test_premailer_runs_once_per_template_not_per_email(tmp_path, monkeypatch):
    calls = []
    real = inline.premailer
    monkeypatch.setattr(inline, "premailer", lambda *args: calls.append(1) or real(*args))
    renderer = Renderer(TEMPLATES)
    for number in range(20):
        renderer.render("digest", "en", make_context(lead=sample_lead(f"l{number}@example.com")),
                        url_for=url_for, pixel_url=PIXEL)
    assert 0 < len(calls) <= 4  # layout, content block, footer


@pytest.mark.parametrize("kept", [False, True], ids=["no cache", "cache"])
def test_an_edited_template_is_compiled_again(tmp_path, kept):
    folder = template_dir(tmp_path, {"plain.html": PLAIN})
    renderer = Renderer(folder, recheck_seconds=0, cache=TemplateCache.under(tmp_path / "cache" if kept else None))
    assert "<p><a" in renderer.render("plain", "en", make_context()).html
    path = folder / "en" / "plain.html"
    path.write_text(PLAIN.replace("<p>", '<p class="edited">'), encoding="utf-8")
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert '<p class="edited">' in renderer.render("plain", "en", make_context()).html
    layout = folder / "en" / "layout.html"
    layout.write_text(layout.read_text(encoding="utf-8").replace(".quiet {", ".edited { color: #123456; } .quiet {"))
    os.utime(layout, ns=(layout.stat().st_mtime_ns + 10**9,) * 2)
    assert re.search(r'<p class="edited" style="color:#123456">', renderer.render("plain", "en", make_context()).html)


def test_edits_are_looked_for_at_most_every_recheck_interval(tmp_path):
    folder = template_dir(tmp_path, {"plain.html": PLAIN})
    renderer = Renderer(folder, recheck_seconds=3600)
    renderer.render("plain", "en", make_context())
    (folder / "en" / "plain.html").write_text(PLAIN.replace("<p>", '<p class="edited">'), encoding="utf-8")
    assert "edited" not in renderer.render("plain", "en", make_context()).html


# the compiled path gives the same HTML as premailer run on every rendered email


def normalized(document: str) -> list[tuple[str, str, tuple[tuple[str, str], ...], str]]:
    """An HTML document as (path, tag, attributes, text) per element, forgiving what renders the same:
    whitespace runs in text (collapsed; none of these templates uses <pre>), whitespace-only text between
    elements, attribute order, and the spacing and final semicolon of style declarations."""
    tree = lxml.html.document_fromstring(document)
    rows = []
    for element in tree.iter():
        attributes = tuple(sorted((name, _style(value) if name == "style" else value)
                                  for name, value in element.attrib.items()))
        text = " ".join(f"{element.text or ''} {element.tail or ''}".split())
        rows.append((tree.getroottree().getpath(element), str(element.tag), attributes, text))
    return rows


def _style(value: str) -> str:
    declarations = (declaration.split(":", 1) for declaration in value.split(";") if declaration.strip())
    return ";".join(f"{name.strip().lower()}:{' '.join(rest.split())}" for name, rest in declarations)


def leads() -> list:
    plain = sample_lead("plain@example.com")
    plain.first_name, plain.interests = "", []
    dutch = sample_lead("nl@example.com")
    dutch.first_name, dutch.locale, dutch.interests = "Joost", "nl", ["security"]
    odd = sample_lead("odd@example.com")
    odd.first_name, odd.company = '<i>"Zoë" & Co</i>', "Ünïcode GmbH"
    return [sample_lead(), plain, dutch, odd]


@pytest.mark.parametrize("name", ["digest", "confirmation"])
@pytest.mark.parametrize("locale", ["en", "nl"])
@pytest.mark.parametrize("lead", range(4))
@pytest.mark.parametrize("items", ["three", "none"])
def test_compiled_html_equals_premailer_on_each_email(renderer, name, locale, lead, items):
    variables = make_context(lead=leads()[lead], items=feed_items() if items == "three" else [])
    compiled = renderer.render(name, locale, variables, url_for=url_for, pixel_url=PIXEL).html
    per_email = Renderer(TEMPLATES, inline_css=False).render(name, locale, variables, url_for=url_for,
                                                             pixel_url=PIXEL).html
    naive = inline.premailer(per_email)
    for html in (compiled, naive):
        assert re.search(r'<div class="header" style="[^"]*background', html)
    assert normalized(compiled) == normalized(naive)


def test_the_normalization_still_sees_a_missing_style(renderer):
    compiled = renderer.render("digest", "en", make_context(), url_for=url_for, pixel_url=PIXEL).html
    assert normalized(compiled) != normalized(compiled.replace("border:1px solid #e5e7eb", "border:0", 1))
    assert normalized(compiled) != normalized(compiled.replace("see pricing", "see prices", 1))


def test_the_render_bench_runs_and_prints_its_figures():
    bench = TEMPLATES.parent / "scripts" / "bench_render.py"
    result = subprocess.run([sys.executable, str(bench), "--leads", "20", "--runs", "2", "--naive", "2"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert re.search(r"full \(render \+ CSS \+ MIME bytes\) [\d.]+ us: [\d.]+x bare", result.stdout)
    assert re.search(r"naive, premailer on each email \(2 emails\): [\d.]+ ms per email", result.stdout)


def test_a_locale_with_some_files_borrows_the_rest_from_the_default(tmp_path):
    folder = template_dir(tmp_path, {"digest.html": (TEMPLATES / "en" / "digest.html").read_text(encoding="utf-8"),
                                     "confirmation.html": (TEMPLATES / "en" / "confirmation.html").read_text()})
    german = folder / "de"
    german.mkdir()
    (german / "digest.html").write_text(HEAD.replace("Hi", "Neu für Sie") + "{% block content %}<p>Hallo</p>"
                                        "{% endblock %}\n", encoding="utf-8")
    (german / "footer.html").write_text('<div class="footer"><a href="{{ unsubscribe_url }}">Abmelden</a></div>\n',
                                        encoding="utf-8")
    renderer = Renderer(folder)
    digest = renderer.render("digest", "de", make_context(), url_for=url_for, pixel_url=PIXEL)
    assert digest.subject == "Neu für Sie"
    assert "<p>Hallo</p>" in digest.html and "Abmelden" in digest.html  # its own footer, the English layout
    assert re.search(r'<div class="header" style="[^"]*background', digest.html)
    confirmation = renderer.render("confirmation", "de", make_context(), url_for=url_for, pixel_url=PIXEL)
    assert confirmation.subject == "Welcome to Acme Software, Sam"  # no German file: the English one
    assert "Abmelden" in confirmation.html  # ... inside the German footer
    assert renderer.render("digest", "fr", make_context()).subject == EVIL_TITLE  # no folder at all: English


# compiled templates kept between processes (nurture.render.cache)


def test_a_second_process_renders_from_the_kept_templates_without_inlining(tmp_path, monkeypatch):
    first = Renderer(TEMPLATES, cache=TemplateCache.under(tmp_path))
    made = first.render("digest", "en", make_context(), url_for=url_for, pixel_url=PIXEL)
    kept = list(tmp_path.glob("templates-*/*.source"))
    assert len(kept) == 1 + len(LAYOUT_PARTS) + 1  # the layout, what it includes, the digest

    def no_premailer(*args):
        raise AssertionError("inlined again")

    monkeypatch.setattr(inline, "premailer", no_premailer)
    again = Renderer(TEMPLATES, cache=TemplateCache.under(tmp_path)).render("digest", "en", make_context(),
                                                                            url_for=url_for, pixel_url=PIXEL)
    assert again == made
    with pytest.raises(AssertionError, match="inlined again"):  # without the cache it would be
        Renderer(TEMPLATES).render("digest", "en", make_context(), url_for=url_for, pixel_url=PIXEL)


def test_templates_render_where_the_cache_cannot_be_made(tmp_path, caplog):
    (tmp_path / "taken").write_text("a file where the folder would go", encoding="utf-8")
    renderer = Renderer(TEMPLATES, cache=TemplateCache.under(tmp_path / "taken"))
    assert renderer.cache.folder is None
    assert "compiled templates are not kept" in caplog.text
    assert renderer.render("confirmation", "en", make_context()).subject


def test_an_entry_is_made_once_and_written_whole(tmp_path):
    """Written beside it, then renamed: a reader in another process never sees half of one."""
    cache = TemplateCache.under(tmp_path)
    assert cache.source(("part",), lambda: "made") == "made"
    assert cache.folder is not None and [path.suffix for path in cache.folder.iterdir()] == [".source"]
    assert cache.source(("part",), lambda: "made again") == "made"


def test_an_entry_cut_short_is_made_again(tmp_path):
    """A crash or a full disk left it short: its checksum no longer matches, and it is never served."""
    cache = TemplateCache.under(tmp_path)
    cache.source(("part",), lambda: "<p>the whole template</p>")
    assert cache.folder is not None
    [entry] = cache.folder.iterdir()
    entry.write_bytes(entry.read_bytes()[:-12])
    assert cache.source(("part",), lambda: "<p>made again</p>") == "<p>made again</p>"
    assert TemplateCache.under(tmp_path).source(("part",), lambda: "never") == "<p>made again</p>"


@pytest.mark.parametrize("case", ["open to others", "a link"])
def test_a_folder_others_could_write_to_is_not_used(tmp_path, case, caplog):
    """What is kept runs as template code: a folder another user could fill is left alone."""
    version = TemplateCache.under(tmp_path / "probe").folder.name  # the name the folder would have
    planted = tmp_path / "planted"
    planted.mkdir()
    planted.chmod(0o777)
    (tmp_path / "root").mkdir()
    if case == "a link":
        (tmp_path / "root" / version).symlink_to(planted)
    else:
        (tmp_path / "root" / version).mkdir(mode=0o700)
        (tmp_path / "root" / version).chmod(0o777)
    assert TemplateCache.under(tmp_path / "root").folder is None
    assert "not a folder of this user's alone" in caplog.text


def test_a_cache_that_cannot_be_written_costs_no_message(tmp_path, monkeypatch, caplog):
    """The disk is full (or the folder read-only): templates compile and render as without a cache."""
    import tempfile

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    cache = TemplateCache.under(tmp_path)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", full)  # what nurture and Jinja write through
    rendered = Renderer(TEMPLATES, cache=cache).render("digest", "en", make_context(), url_for=url_for,
                                                        pixel_url=PIXEL)
    assert rendered.subject and "not kept" in caplog.text
    assert cache.folder is not None and list(cache.folder.iterdir()) == []


# links found with a tokenizer


def test_a_link_after_a_closing_bracket_inside_an_attribute_is_tracked(tmp_path):
    folder = template_dir(tmp_path, {"faq.html": HEAD + '{% block content %}<p><a title="Q&amp;A > FAQ" '
                                     'href="https://example.com/faq">FAQ</a></p>{% endblock %}\n'
                                     '{% block text %}x{% endblock %}\n'})
    rendered = Renderer(folder).render("faq", "en", make_context(), url_for=url_for, pixel_url=PIXEL)
    index = rendered.links.index(TrackedLink("https://example.com/faq"))
    assert f'href="{url_for(index)}">FAQ</a>' in rendered.html and "https://example.com/faq" not in rendered.html


def test_a_feed_summary_link_after_a_closing_bracket_is_tracked_and_its_text_left_alone():
    summary = ('<p>Say <code>href="https://example.com/raw"</code> or read '
               '<a title="a > b" href="https://example.com/read?x=1&amp;y=2">this</a>.</p>')
    item = FeedItem(feed="cloud", guid="gx", title="T", link="https://example.com/t", summary=summary,
                    published=NOW, fetched_at=NOW)
    view = item_view(item)
    tracked = str(view.summary.tracked(lambda url: f"https://t.example/c/{url}"))
    assert 'href="https://t.example/c/https://example.com/read?x=1&amp;y=2"' in tracked
    assert '<code>href="https://example.com/raw"</code>' in tracked  # text, not a link
