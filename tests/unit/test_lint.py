"""`nurture lint` over a copy of the bundled project with one thing broken at a time."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from nurture.cli import main
from nurture.lint import Finding, lint, lint_feeds
from nurture.settings import Settings, load_settings
from tests.conftest import ROOT

ENVIRON = {"NURTURE_SECRET_KEY": "lint-test", "NURTURE_DATABASE_URL": "sqlite:///lint.db"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the bundled templates and feeds.yaml (pointing at the bundled sample feeds)."""
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    feeds = (ROOT / "feeds.yaml").read_text(encoding="utf-8")
    (tmp_path / "feeds.yaml").write_text(feeds.replace("url: nurture/", f"url: {ROOT}/nurture/"), encoding="utf-8")
    (tmp_path / "nurture.yaml").write_text("program:\n  default_locale: en\n", encoding="utf-8")
    return tmp_path


def settings_of(project: Path) -> Settings:
    return load_settings(ENVIRON, project / "nurture.yaml")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


def found(project: Path) -> list[str]:
    return [finding.show(project) for finding in lint(settings_of(project))]


def test_the_bundled_project_lints_clean() -> None:
    assert lint(load_settings(ENVIRON, ROOT / "nurture.yaml")) == []


def test_a_copy_lints_clean(project: Path) -> None:
    assert found(project) == []


# templates


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("<p>Here is what is new", "<p>{{ no_such_thing }} Here is what is new", "undefined variable 'no_such_thing'"),
        ("<p>Here is what is new", "<p>{{ trak(company) }} Here is what is new", "unknown helper 'trak'"),
        ("<p>Here is what is new", "<p>{{ company|shout }} Here is what is new", "unknown filter 'shout'"),
        ("<p>Here is what is new", "<p>{% if lead is shiny %}x{% endif %} Here is what is new", "unknown test 'shiny'"),
        ("<p>Here is what is new", "<p>{{ lead.first_name( }}Here is what is new",
         "syntax error: unexpected '}', expected ')'"),
        ("<p>Here is what is new", "<p>{{ lead.nickname }} Here is what is new",
         "fails for a sample lead: 'nurture.models.Lead object' has no attribute 'nickname'"),
        ("<p>Here is what is new", "<p>{{ items[0].title }} Here is what is new",
         "fails for a sample lead: list object has no element 0"),
        ("<p>Here is what is new", "<p><a href=\"{{ track('https://example.com/x', acton='callback') }}\">x</a> Here "
         "is what is new", "track() has no argument 'acton' (it takes url, action, tag, points)"),
        ("<p>Here is what is new", "<p>{{ 1 // (items|length - items|length) }} Here is what is new",
         "fails for a sample lead: ZeroDivisionError: integer division or modulo by zero"),
        ("<p>Here is what is new", "<p><a href=\"{{ track('https://example.com/x', action='callme') }}\">x</a> Here "
         "is what is new", "track() action 'callme' is not one of callback, content, honeypot"),
        ("<p>Here is what is new", "<p><a href=\"{{ track('https://example.com/x', tag='hi-intent') }}\">x</a> Here "
         "is what is new", "track() tag 'hi-intent' is not in scoring.link_tags of nurture.yaml, so it scores nothing"),
    ],
    ids=["undefined", "unknown-helper", "unknown-filter", "unknown-test", "syntax", "bad-attribute", "empty-items",
         "track-argument", "python-error", "track-action", "track-tag"],
)
def test_a_template_problem_names_file_and_line(project: Path, old: str, new: str, message: str) -> None:
    digest = project / "templates" / "en" / "digest.html"
    edit(digest, old, new)
    line = line_of(digest, "Here is what is new")
    assert f"templates/en/digest.html:{line}: {message}" in found(project)


def test_every_problem_of_a_template_is_reported(project: Path) -> None:
    digest = project / "templates" / "en" / "digest.html"
    edit(digest, "<p>Here is what is new", "<p>{{ one }} {{ two|shout }}\nHere is what is new")
    lines = found(project)
    line = line_of(digest, "{{ one }}")
    assert f"templates/en/digest.html:{line}: undefined variable 'one'" in lines
    assert f"templates/en/digest.html:{line}: unknown filter 'shout'" in lines
    assert f"templates/en/digest.html:{line}: undefined variable 'two'" in lines


def test_a_problem_in_another_locale_names_its_file(project: Path) -> None:
    dutch = project / "templates" / "nl" / "confirmation.html"
    edit(dutch, "<p>Liever iemand spreken?", "<p>{{ lead.bijnaam }} Liever iemand spreken?")
    line = line_of(dutch, "bijnaam")
    assert found(project) == [
        f"templates/nl/confirmation.html:{line}: fails for a sample lead: "
        "'nurture.models.Lead object' has no attribute 'bijnaam'"]


def test_an_email_without_a_subject_block(project: Path) -> None:
    (project / "templates" / "en" / "welcome-back.html").write_text(
        '{% extends "layout.html" %}\n{% block content %}<p>Hi</p>{% endblock %}\n', encoding="utf-8")
    assert "templates/en/welcome-back.html:1: no subject block: every email needs {% block subject %}" in found(project)


def test_a_lead_email_without_an_unsubscribe_link(project: Path) -> None:
    digest = project / "templates" / "en" / "digest.html"
    edit(digest, "{% block text %}", '{% block footer %}<div class="footer">Bye</div>{% endblock %}\n{% block text %}')
    edit(digest, "Unsubscribe: {{ unsubscribe_url }}", "")
    assert found(project) == [
        f"templates/en/digest.html:{line_of(digest, '{% block footer %}')}: no unsubscribe link in the HTML",
        f"templates/en/digest.html:{line_of(digest, '{% block text %}')}: no unsubscribe URL in the text part"]


def test_the_handoff_needs_no_unsubscribe_link(project: Path) -> None:
    handoff = (project / "templates" / "en" / "handoff.html").read_text(encoding="utf-8")
    assert "unsubscribe" not in handoff.lower()
    assert found(project) == []


def test_the_layout_may_only_use_what_every_email_is_given(project: Path) -> None:
    layout = project / "templates" / "en" / "layout.html"
    edit(layout, '{{ company }}</div>', "{{ company }} {{ items|length }}</div>")
    assert found(project) == [
        f"templates/en/layout.html:{line_of(layout, 'items|length')}: fails for a sample lead: 'items' is undefined"]


def test_a_missing_template_that_nurture_sends(project: Path) -> None:
    (project / "templates" / "en" / "handoff.html").unlink()
    assert "templates/en:1: template 'handoff.html' is missing: nurture sends it" in found(project)


def test_a_render_failure_on_a_line_already_reported_is_not_repeated(project: Path) -> None:
    digest = project / "templates" / "en" / "digest.html"
    edit(digest, "<p>Here is what is new", "<p>{{ lead.nickname }} {{ oops }} Here is what is new")
    assert found(project) == [f"templates/en/digest.html:{line_of(digest, 'oops')}: undefined variable 'oops'"]


# feeds.yaml


def write_feeds(project: Path, text: str) -> Path:
    path = project / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    return path


SAMPLE = f"{ROOT}/nurture/samples/feeds/cloud.xml"


def test_a_feed_nobody_reads_and_interests_without_feeds(project: Path) -> None:
    path = write_feeds(project, f"feeds:\n  cloud:\n    url: {SAMPLE}\n  orphan:\n    url: {SAMPLE}\n"
                                "interests:\n  cloud: [cloud]\n  ai: []\nindustries:\n  retail: []\n")
    assert [finding.show(project) for finding in lint_feeds(path)] == [
        "feeds.yaml:4: feed 'orphan' is read by no interest or industry",
        "feeds.yaml:8: interest 'ai' has no feed",
        "feeds.yaml:10: industry 'retail' has no feed"]


def test_an_interest_naming_an_unknown_feed(project: Path) -> None:
    path = write_feeds(project, f"feeds:\n  cloud:\n    url: {SAMPLE}\ninterests:\n  cloud: [cloud]\n  ai: [robots]\n")
    assert lint_feeds(path) == [Finding(path, 6, "interests.ai names feed 'robots', which is not defined")]


@pytest.mark.parametrize(("text", "line", "message"), [
    ("feeds:\n  cloud:\n    url: x\n    max_items: 0\n", 4, "feeds.cloud.max_items: Input should be greater than"),
    ("feeds:\n  cloud: {url: x\ninterests: {}\n", 3, "not valid YAML"),
])
def test_invalid_feeds_yaml_names_the_line(project: Path, text: str, line: int, message: str) -> None:
    path = write_feeds(project, text)
    [finding] = lint_feeds(path)
    assert (finding.line, finding.message.startswith(message)) == (line, True), finding


def test_a_local_feed_file_that_is_missing_or_broken(project: Path) -> None:
    broken = project / "broken.xml"
    broken.write_text("<html><body>not a feed</body></html>", encoding="utf-8")
    path = write_feeds(project, f"feeds:\n  gone:\n    url: {project}/gone.xml\n  broken:\n    url: broken.xml\n"
                                "interests:\n  x: [gone, broken]\n")
    shown = [finding.show(project) for finding in lint_feeds(path)]
    assert shown[0].startswith("feeds.yaml:2: feed 'gone': cannot read ") and "gone.xml" in shown[0]
    assert re.fullmatch(r"feeds\.yaml:4: feed 'broken': not a usable feed: .+", shown[1])
    assert len(shown) == 2


# the command


def test_lint_command_prints_findings_and_exits_1(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    edit(project / "templates" / "en" / "confirmation.html", "<p>Thanks", "<p>{{ nope }}Thanks")
    result = CliRunner().invoke(main, ["--config", str(project / "nurture.yaml"), "lint"], env=ENVIRON)
    assert result.exit_code == 1
    assert re.fullmatch(r"templates/en/confirmation\.html:\d+: undefined variable 'nope'\n", result.stdout)
    assert "1 problem found" in result.stderr


def test_lint_command_exits_0_when_clean(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    result = CliRunner().invoke(main, ["--config", str(project / "nurture.yaml"), "lint"], env=ENVIRON)
    assert (result.exit_code, result.stdout) == (0, "no problems found\n")


def test_a_link_that_compiles_without_tracking_is_reported_at_its_line(project: Path) -> None:
    digest = project / "templates" / "en" / "digest.html"
    raw = "{{ '<a href=\"https://example.com/raw\">raw</a>'|safe }}"
    edit(digest, "see pricing</a>.</p>", f"see pricing</a>.</p>\n{raw}")
    line = line_of(digest, "example.com/raw")
    assert found(project) == [f"templates/en/digest.html:{line}: a link to https://example.com/raw is not tracked: "
                              "its clicks score nothing (write it as <a href> in the template, or mark it notrack "
                              "if that is meant)"]


def test_a_link_marked_notrack_is_not_reported(project: Path) -> None:
    digest = project / "templates" / "en" / "digest.html"
    edit(digest, "see pricing</a>.</p>", "see pricing</a>.</p>\n<p><a notrack href=\"https://example.com/private\">"
         "private</a> {{ '<a notrack href=\"https://example.com/raw\">raw</a>'|safe }}</p>")
    assert found(project) == []
