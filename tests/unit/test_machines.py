"""Machines are not people: every signal alone, its near misses, real agents, and signals combined."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address, ip_network

import pytest

from nurture.score import machines, relays
from nurture.score.machines import Hit, Prior, Proxy, Signals, Verdict, classify, find_burst

DELIVERED = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/124.0.0.0 Safari/537.36")
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
OUTLOOK_DESKTOP = ("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; .NET4.0E; "
                   "Microsoft Outlook 16.0.5417; ms-office; MSOffice 16)")
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"

BROWSERS = {
    "chrome desktop": CHROME,
    "edge desktop": CHROME + " Edg/124.0.2478.80",
    "firefox desktop": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "safari desktop": ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                       "Version/17.4.1 Safari/605.1.15"),
    "safari iphone": ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
                      "(KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1"),
    "chrome android": ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
                       "Chrome/124.0.0.0 Mobile Safari/537.36"),
    "firefox android": "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
    "samsung internet": ("Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
                         "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36"),
    "cubot phone": ("Mozilla/5.0 (Linux; Android 11; CUBOT KINGKONG 5) AppleWebKit/537.36 (KHTML, like Gecko) "
                    "Chrome/112.0.0.0 Mobile Safari/537.36"),
    "android webview (gmail app)": ("Mozilla/5.0 (Linux; Android 13; Pixel 7; wv) AppleWebKit/537.36 "
                                    "(KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36"),
    "gmail app on iphone": ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
                            "(KHTML, like Gecko) Mobile/15E148 Gmail/6.0.240414"),
    "facebook in-app": ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
                        "(KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/460.0.0.38.109]"),
    "thunderbird": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.10.1",
}

SCANNERS = {
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)": "googlebot",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)": "slackbot",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)": "facebookexternalhit",
    "Twitterbot/1.0": "twitterbot",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)": "linkedinbot",
    "WhatsApp/2.23.20.0 A": "whatsapp",
    "TelegramBot (like TwitterBot)": "telegrambot",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)": "discordbot",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5": "skypeuripreview",
    CHROME.replace("Chrome/", "HeadlessChrome/"): "headlesschrome",
    CHROME + " BingPreview/1.0b": "bingpreview",
    "Microsoft Office Existence Discovery": "microsoft office existence discovery",
    "Mozilla/5.0 (compatible; Google-Safety; +http://www.google.com/bot.html)": "google-safety",
    CHROME + " Mimecast": "mimecast",
    "Mozilla/5.0 (compatible; Proofpoint URL Defense)": "proofpoint",
    "Barracuda Sentinel (EE)": "barracuda",
    "Cisco IronPort URL scanner": "cisco",
    "Trend Micro Email Security": "trend micro",
    "curl/8.4.0": "curl",
    "Wget/1.21.4": "wget",
    "python-requests/2.31.0": "python-requests",
    "Go-http-client/1.1": "go-http-client",
    "Java/17.0.2": "java",
    "okhttp/4.12.0": "okhttp",
    "axios/1.6.8": "axios",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)": "node-fetch",
    "libwww-perl/6.72": "libwww-perl",
}


def hit(after: float = 600.0, *, method: str = "GET", agent: str = CHROME, kind: str = "click",
        link: int | None = 0, client: str | None = "203.0.113.9", honeypot: bool = False) -> Hit:
    """A hit `after` seconds after delivery."""
    return Hit(method, agent, DELIVERED + timedelta(seconds=after), DELIVERED, kind=kind, client=client,
               link=link if kind == "click" else None, honeypot=honeypot)


def click(after: float, link: int, counted: bool = True, honeypot: bool = False, machine: bool = False) -> Prior:
    return Prior(DELIVERED + timedelta(seconds=after), "click", link, counted=counted, honeypot=honeypot,
                 machine=machine)


def opened(after: float, counted: bool = True) -> Prior:
    return Prior(DELIVERED + timedelta(seconds=after), "open", counted=counted)


# a person


@pytest.mark.parametrize("agent", BROWSERS.values(), ids=BROWSERS.keys())
@pytest.mark.parametrize("kind", ["open", "click"])
def test_real_browsers_are_people(agent, kind):
    assert classify(hit(agent=agent, kind=kind)) == Verdict(None, ())


def test_a_person_reading_slowly_is_not_a_burst():
    earlier = [opened(300), click(310, 0), click(330, 1)]
    verdict = classify(hit(340, link=2), earlier)
    assert verdict == Verdict(None, ())
    assert not verdict.machine


# non-GET prefetches


@pytest.mark.parametrize("method", ["HEAD", "head", "OPTIONS", "POST"])
def test_a_request_other_than_get_is_a_prefetch(method):
    verdict = classify(hit(method=method))
    assert verdict.reason == f"{method.upper()} request (prefetch)"
    assert verdict.machine


def test_a_lowercase_get_is_still_a_get():
    assert classify(hit(method="get")).reason is None


# scanner user agents


@pytest.mark.parametrize(("agent", "marker"), SCANNERS.items(), ids=SCANNERS.values())
@pytest.mark.parametrize("kind", ["open", "click"])
def test_scanner_agents_are_machines(agent, marker, kind):
    assert classify(hit(agent=agent, kind=kind)).reason == f"scanner user agent ({marker})"


def test_markers_are_specific_not_any_substring():
    assert machines.scanner_marker("Cisco IronPort", "click") == "cisco"
    assert machines.scanner_marker("Mozilla/5.0 SanFranciscoNews/2.1", "click") is None
    assert machines.scanner_marker(CHROME + " Preview", "click") is None  # "preview" alone names nothing
    assert machines.scanner_marker("Mozilla/5.0 (Linux; Android 11; CUBOT X30)", "click") is None
    assert machines.scanner_marker("Mozilla/5.0 (compatible; AhrefsBot/7.0)", "click") == "ahrefsbot"


def test_outlook_desktop_opens_are_people_but_its_own_link_fetches_are_not():
    assert classify(hit(agent=OUTLOOK_DESKTOP, kind="open")).reason is None
    assert classify(hit(agent=OUTLOOK_DESKTOP, kind="click")).reason == "scanner user agent (microsoft outlook)"
    office = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)"
    assert classify(hit(agent=office, kind="open")).reason is None
    assert classify(hit(agent=office, kind="click")).reason == "scanner user agent (microsoft office)"


def test_gmail_proxy_opens_when_the_person_opens_so_only_the_delivery_rule_applies():
    assert classify(hit(600, agent=GMAIL_PROXY, kind="open")).reason is None
    assert classify(hit(1, agent=GMAIL_PROXY, kind="open")).reason == "1 s after delivery"
    assert classify(hit(600, agent=GMAIL_PROXY, kind="click")).reason == "scanner user agent (googleimageproxy)"


def test_yahoo_proxy_opens_are_people_and_its_link_fetches_are_not():
    yahoo = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
    assert classify(hit(600, agent=yahoo, kind="open")).reason is None
    assert classify(hit(600, agent=yahoo, kind="click")).reason == "scanner user agent (yahoomailproxy)"


def test_the_agent_lists_can_be_replaced():
    signals = Signals(scanner_agents=(r"acmescan",), click_agents=())
    assert classify(hit(agent="AcmeScan/2"), signals=signals).reason == "scanner user agent (acmescan)"
    assert classify(hit(agent="curl/8.4.0"), signals=signals).reason is None
    assert classify(hit(agent=OUTLOOK_DESKTOP), signals=signals).reason is None


# no user agent


@pytest.mark.parametrize("agent", ["", "   "])
def test_no_user_agent_is_a_machine(agent):
    assert classify(hit(agent=agent)).reason == "no user agent"


# too soon after delivery


def test_a_hit_within_seconds_of_delivery_is_a_machine():
    assert classify(hit(1.94)).reason == "1.9 s after delivery"
    assert classify(hit(0, kind="open")).reason == "0 s after delivery"


def test_a_hit_at_the_threshold_may_be_a_person():
    assert classify(hit(2.0)).reason is None


def test_a_hit_before_delivery_was_recorded_is_a_machine():
    assert classify(hit(-0.5)).reason == "during delivery"


@pytest.mark.parametrize("kind", ["open", "click"])
def test_a_hit_on_a_message_still_being_delivered_is_a_machine(kind):
    """Its result not stored yet: no delivery time to measure from, and within a second or so of it."""
    during = Hit("GET", CHROME, DELIVERED, None, kind=kind, client="203.0.113.9", link=0 if kind == "click" else None,
                 delivering=True)
    assert classify(during).reason == "during delivery"
    assert classify(replace(during, delivering=False)).reason is None  # no delivery time: no verdict


def test_the_delivery_window_is_configurable():
    signals = Signals(min_seconds_after_delivery=10)
    assert classify(hit(9), signals=signals).reason == "9 s after delivery"
    assert classify(hit(10), signals=signals).reason is None


def test_no_delivery_time_no_delivery_rule():
    undelivered = replace(hit(0), delivered_at=None)
    assert classify(undelivered).reason is None


# privacy proxies


@pytest.mark.parametrize("client", ["17.58.101.12", "2620:149:a:b::1", "2a01:b740::5", "::ffff:17.1.2.3"])
def test_an_apple_proxy_open_at_delivery_is_a_machine(client):
    assert classify(hit(5, kind="open", client=client)).reason == "privacy proxy open (Apple)"


def test_the_same_network_opening_an_hour_later_may_be_a_person():
    assert classify(hit(3600, kind="open", client="17.58.101.12")).reason is None


def test_the_proxy_window_ends_at_proxy_open_seconds():
    assert classify(hit(60, kind="open", client="17.58.101.12")).reason == "privacy proxy open (Apple)"
    assert classify(hit(60.5, kind="open", client="17.58.101.12")).reason is None
    signals = Signals(proxy_open_seconds=120)
    assert classify(hit(90, kind="open", client="17.58.101.12"), signals=signals).machine


@pytest.mark.parametrize("client", ["203.0.113.9", "16.255.255.255", "18.0.0.1", "testclient", None, ""])
def test_other_clients_opening_at_delivery_may_be_people(client):
    assert classify(hit(5, kind="open", client=client)).reason is None


def test_a_click_from_a_proxy_network_is_not_a_proxy_open():
    assert classify(hit(5, kind="click", client="17.58.101.12")).reason is None


def test_proxies_can_be_added():
    relay = Proxy("Private Relay", (ip_network("172.224.224.0/27"),))
    signals = Signals(proxies=(machines.APPLE, relay))
    assert classify(hit(5, kind="open", client="172.224.224.7"), signals=signals).reason == \
        "privacy proxy open (Private Relay)"
    assert classify(hit(5, kind="open", client="172.224.224.7")).reason is None


# click bursts


def test_three_links_within_two_seconds_are_a_burst():
    earlier = [click(40.0, 0), click(40.5, 1)]
    verdict = classify(hit(41.2, link=2), earlier)
    assert verdict == Verdict("click burst: 3 links in 1.2 s", (0, 1))


def test_three_links_in_2_1_seconds_are_not_a_burst():
    earlier = [click(40.0, 0), click(41.0, 1)]
    assert classify(hit(42.1, link=2), earlier).reason is None


def test_three_links_in_exactly_burst_seconds_are_a_burst():
    earlier = [click(40.0, 0), click(41.0, 1)]
    assert classify(hit(42.0, link=2), earlier).reason == "click burst: 3 links in 2 s"


def test_two_distinct_links_are_not_a_burst():
    earlier = [click(40.0, 0), click(40.2, 1), click(40.4, 0)]
    assert classify(hit(40.6, link=1), earlier).reason is None


def test_the_same_link_clicked_five_times_is_not_a_burst_of_links():
    earlier = [click(40.0 + n / 10, 3) for n in range(4)]
    assert classify(hit(40.5, link=3), earlier).reason is None


def test_opens_are_not_links_of_a_burst():
    earlier = [opened(40.0), click(40.2, 0), opened(40.3)]
    assert classify(hit(40.5, link=1), earlier).reason is None
    assert classify(hit(40.5, kind="open"), [click(40.0, 0), click(40.2, 1), click(40.3, 2)]).reason is None


def test_the_burst_size_is_configurable():
    earlier = [click(40.0, 0), click(40.3, 1), click(40.6, 2)]
    signals = Signals(burst_links=4)
    assert classify(hit(40.9, link=2), earlier, signals).reason is None
    assert classify(hit(40.9, link=3), earlier, signals) == Verdict("click burst: 4 links in 0.9 s", (0, 1, 2))


def test_retroactive_names_the_earlier_clicks_of_the_burst_not_yet_judged_a_machines():
    """Counted or not: a click that earned nothing (already credited, the lead with sales) is a machine's
    all the same, and no report may count it as a person's."""
    earlier = [opened(39.9), click(40.0, 0, counted=False), click(40.4, 1), click(10.0, 2), click(40.8, 3),
               click(40.9, 5, counted=False, machine=True)]
    verdict = classify(hit(41.0, link=4), earlier)
    assert verdict == Verdict("click burst: 5 links in 1 s", (1, 2, 4))


def test_a_burst_already_judged_names_nothing_more_to_re_judge():
    earlier = [click(at, link, counted=False, machine=True) for at, link in ((40.0, 0), (40.3, 1), (40.6, 2))]
    assert classify(hit(40.9, link=3), earlier) == Verdict("click burst: 4 links in 0.9 s", ())


def test_a_scanner_burst_40_seconds_after_delivery_is_caught_by_the_burst_not_the_clock():
    earlier = [click(40.0, 0), click(40.1, 1), click(40.2, 2), click(40.3, 3)]
    scanner = hit(40.4, link=4)  # a browser's agent from a Safe Links-style sandbox
    assert classify(scanner).reason is None  # alone, without the burst, it looks like a person
    assert classify(scanner, earlier) == Verdict("click burst: 5 links in 0.4 s", (0, 1, 2, 3))


def test_find_burst_returns_the_largest_window_around_the_click():
    earlier = [click(37.0, 5), click(38.5, 6), click(40.0, 0), click(40.9, 1), click(41.5, 7)]
    burst = find_burst(hit(40.5, link=2), earlier)
    assert burst == machines.Burst(links=4, span=1.5, members=(2, 3, 4))


def test_find_burst_sees_a_click_recorded_out_of_order():
    earlier = [click(40.0, 0), click(41.0, 1)]  # a second server stamped link 1 after this click
    assert find_burst(hit(40.5, link=2), earlier) == machines.Burst(links=3, span=1.0, members=(0, 1))


def test_find_burst_needs_a_click_on_a_known_link():
    earlier = [click(40.0, 0), click(40.1, 1)]
    assert find_burst(hit(40.2, link=None), earlier) is None
    assert find_burst(hit(40.2, kind="open"), earlier) is None


# honeypot


def test_a_honeypot_hit_is_a_machine_and_so_is_the_message_around_it():
    earlier = [opened(10.0), opened(38.5), click(39.0, 0), click(39.9, 1, counted=False), click(37.9, 2)]
    verdict = classify(hit(40.0, link=9, honeypot=True), earlier)
    assert verdict == Verdict("honeypot link", (1, 2, 3))  # the uncounted click too: a machine's all the same


def test_a_hit_shortly_after_a_honeypot_hit_is_a_machine():
    earlier = [click(40.0, 9, counted=False, honeypot=True)]
    assert classify(hit(42.0, link=0), earlier).reason == "honeypot link"
    assert classify(hit(41.0, kind="open"), earlier).reason == "honeypot link"
    assert classify(hit(42.1, link=0), earlier).reason is None


def test_a_honeypot_hit_outranks_a_scanner_agent_so_its_neighbours_are_re_judged():
    earlier = [click(40.0, 0)]
    verdict = classify(hit(40.5, agent="Mimecast", link=9, honeypot=True), earlier)
    assert verdict == Verdict("honeypot link", (0,))


# combined signals and their order


def test_a_head_request_is_named_before_anything_else():
    earlier = [click(1.0, 0), click(1.1, 1)]
    verdict = classify(hit(1.2, method="HEAD", agent="", link=9, honeypot=True), earlier)
    assert verdict == Verdict("HEAD request (prefetch)", ())


def test_a_scanner_agent_is_named_before_the_delivery_window_and_the_burst():
    earlier = [click(1.0, 0), click(1.1, 1)]
    assert classify(hit(1.2, agent="curl/8.4.0", link=2), earlier) == Verdict("scanner user agent (curl)", ())


def test_a_proxy_open_is_named_before_the_delivery_window():
    assert classify(hit(1, kind="open", client="17.1.2.3")).reason == "privacy proxy open (Apple)"


def test_the_delivery_window_is_named_before_a_burst():
    earlier = [click(0.5, 0), click(1.0, 1)]
    assert classify(hit(1.5, link=2), earlier) == Verdict("1.5 s after delivery", ())


# settings and the single-hit shortcut


def test_a_burst_of_one_link_is_refused():
    with pytest.raises(ValueError, match="burst_links must be at least 2"):
        Signals(burst_links=1)




# iCloud Private Relay: Mail Privacy Protection's loads leave through the same egress as people's browsing

RELAY_CSV = """172.224.224.0/27,GB,GB-EN,London
172.224.224.32/27,GB,GB-EN,London
104.28.0.0/16,US,US-CA,Los Angeles
2a02:26f7:b3c0:4000::/64,NL,NL-NH,Amsterdam
not-a-network,XX,,
"""
RELAY_NETWORKS, RELAY_BAD = relays.parse(RELAY_CSV)
RELAY = Signals(relays=machines.Ranges(RELAY_NETWORKS))
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/17.5 Mobile/15E148 Safari/604.1")


def test_the_egress_list_is_read_with_its_bad_lines_counted_and_asked_in_log_time() -> None:
    assert len(RELAY_NETWORKS) == 4 and RELAY_BAD == 1
    ranges = RELAY.relays
    assert ip_address("172.224.224.40") in ranges  # the two /27 merged into one span
    assert ip_address("172.224.224.64") not in ranges and ip_address("104.28.255.255") in ranges
    assert ip_address("2a02:26f7:b3c0:4000::1") in ranges and ip_address("2a02:26f7:b3c0:4001::1") not in ranges
    assert None not in ranges and not machines.Ranges()


@pytest.mark.parametrize(("agent", "client", "after", "kind", "expected"), [
    ("Mozilla/5.0", "104.28.7.7", 180, "open", "privacy proxy open (iCloud Private Relay)"),  # MPP's load
    ("Mozilla/5.0", "2a02:26f7:b3c0:4000::9", 30, "open", "privacy proxy open (iCloud Private Relay)"),
    (SAFARI_IPHONE, "104.28.7.7", 180, "open", None),  # a person browsing through Private Relay
    ("Mozilla/5.0", "104.28.7.7", 7200, "open", None),  # hours later: a reader (or a sync, which looks like one)
    ("Mozilla/5.0", "198.51.100.7", 180, "open", None),  # not the relay's egress
    (GMAIL_PROXY, "66.249.84.1", 180, "open", None),  # Gmail's proxy loads when the person opens
    (GMAIL_PROXY, "66.249.84.1", 180, "click", "scanner user agent (googleimageproxy)"),
    (OUTLOOK_DESKTOP, "104.28.7.7", 180, "open", None),  # Outlook behind the same network: a person
])
def test_a_private_relay_load_is_a_machine_only_when_every_signal_agrees(agent: str, client: str, after: float,
                                                                       kind: str, expected: str | None) -> None:
    assert classify(hit(after, agent=agent, kind=kind, client=client), signals=RELAY).reason == expected


def test_without_the_egress_list_no_relay_rule_applies() -> None:
    assert classify(hit(180, agent="Mozilla/5.0", kind="open", client="104.28.7.7")).reason is None
