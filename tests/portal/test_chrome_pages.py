"""What every page shares and the small pages around it: the skip link, the footer's status page,
the way back from the API reference, colour contrast, the token form's expiry, and the port
`make run` puts into email links."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from portal.management.commands.run_local import local_base_url
from tests.portal.test_health_and_api import UNREACHABLE_BROKER, _celery_broker

CSS = settings.BASE_DIR / "static" / "css" / "portal.css"


@pytest.fixture
def fresh_weight_storage():
    from access.distribution.storage import weight_storage

    weight_storage.cache_clear()
    yield
    weight_storage.cache_clear()


# --- Skip link and landmarks ------------------------------------------------------------------


def test_skip_link_is_the_first_link_and_targets_the_main_content(client, llama_catalog):
    page = client.get("/").content.decode()

    body = page[page.index("<body") :]
    first_link = re.search(r"<a\b[^>]*>(.*?)</a>", body, re.S)
    assert first_link.group(1) == "Skip to content"
    assert 'href="#content"' in first_link.group(0)
    assert re.search(r'<main id="content"', page)


# --- The status page --------------------------------------------------------------------------


def test_footer_links_to_the_status_page_not_to_the_json(client, llama_catalog):
    page = client.get("/").content.decode()

    footer = page[page.index('<footer class="footer">') :]
    assert 'href="/status/"' in footer
    assert 'href="/healthz"' not in footer


def test_status_page_says_in_words_that_everything_works(client, db, fresh_weight_storage):
    response = client.get("/status/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "All working" in page
    for part in ("Database", "Task queue", "Weight storage"):
        assert re.search(rf"<td>{part}</td>.*?Working</span>", page, re.S), part
    assert "Not working" not in page


def test_status_page_names_the_part_that_is_down(client, db, fresh_weight_storage):
    with _celery_broker(UNREACHABLE_BROKER):
        response = client.get("/status/")

    assert response.status_code == 503
    page = response.content.decode()
    assert "Part of the portal is not working" in page
    assert re.search(r"<td>Task queue</td>.*?Not working</span>", page, re.S)
    assert "redis://" not in page  # the detail goes to the operators' log only


def test_healthz_stays_json_for_machines(client, db, fresh_weight_storage):
    response = client.get("/healthz")

    assert response["Content-Type"] == "application/json"
    assert response.json()["status"] == "ok"


def test_status_page_refuses_posts(client, db):
    assert client.post("/status/").status_code == 405


# --- The API reference ------------------------------------------------------------------------


def test_api_reference_links_back_to_the_portal_and_keeps_its_strict_scripts(client, db):
    response = client.get("/api/docs/")

    page = response.content.decode()
    assert re.search(r'<a href="/"[^>]*>← Back to the portal</a>', page)
    assert 'href="/accounts/login/"' in page
    csp = response["Content-Security-Policy"]
    assert re.search(r"script-src 'self'(;|$)", csp), csp
    assert not re.search(r"<script>\s*\S", page)  # no inline script
    assert "<style" not in page


def test_api_reference_points_a_logged_in_user_to_their_tokens(researcher_client):
    page = researcher_client.get("/api/docs/").content.decode()

    assert 'href="/account/#api-tokens"' in page


# --- Colour contrast --------------------------------------------------------------------------


def _luminance(hex_colour: str) -> float:
    hex_colour = hex_colour.lstrip("#")
    if len(hex_colour) == 3:
        hex_colour = "".join(c * 2 for c in hex_colour)
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _colour_pairs() -> list[tuple[str, str, str]]:
    """(selector, text colour, background) of every rule in portal.css that sets both."""
    css = re.sub(r"/\*.*?\*/", "", CSS.read_text(), flags=re.S)
    variables = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{3,6})", css))
    pairs = []
    for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        background = re.search(r"background(?:-color)?:\s*(#[0-9a-fA-F]{3,6}|var\(--[\w-]+\))", body)
        colour = re.search(r"(?<![-\w])color:\s*(#[0-9a-fA-F]{3,6}|var\(--[\w-]+\))", body)
        if background and colour:
            resolve = lambda value: variables[value[6:-1]] if value.startswith("var(") else value  # noqa: E731
            pairs.append((selector.strip(), resolve(colour.group(1)), resolve(background.group(1))))
    return pairs


def test_every_badge_and_status_colour_pair_meets_aa_contrast():
    pairs = _colour_pairs()
    assert any(".badge.warn" in selector for selector, _, _ in pairs)  # the amber badge is among them

    too_faint = [
        f"{selector}: {colour} on {background} is {_contrast(colour, background):.2f}:1"
        for selector, colour, background in pairs
        if _contrast(colour, background) < 4.5
    ]
    assert not too_faint, "\n".join(too_faint)


def test_amber_warning_badge_meets_aa_contrast():
    warn = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", CSS.read_text()))["warn"]

    assert _contrast(warn, "#fdebd3") >= 4.5


# --- The API token form -----------------------------------------------------------------------


def test_token_form_says_its_date_is_the_default_and_how_to_have_none(researcher_client):
    page = researcher_client.get("/account/").content.decode()

    days = settings.API_TOKEN_DEFAULT_LIFETIME_DAYS
    default = (timezone.localdate() + dt.timedelta(days=days)).isoformat()
    assert f'value="{default}"' in page
    assert f"Filled in with the default, {days} days from today." in page
    assert "Clear the date for a token that lasts until you revoke it." in page
    assert "Leave empty" not in page


def test_token_created_with_the_date_cleared_never_expires(researcher_client, researcher):
    from portal.models import ApiToken

    researcher_client.post("/account/tokens/", {"name": "cluster", "expires_on": ""})

    assert ApiToken.objects.get(user=researcher, name="cluster").expires_at is None


# --- The port `make run` serves on ------------------------------------------------------------


def test_make_run_on_another_port_links_emails_to_that_port():
    assert local_base_url(host="127.0.0.1", port="8001", environ={}) == "http://127.0.0.1:8001"


def test_make_run_on_all_interfaces_links_emails_to_the_loopback_address():
    assert local_base_url(host="0.0.0.0", port="8123", environ={}) == "http://127.0.0.1:8123"


def test_make_run_keeps_a_portal_base_url_set_by_the_operator():
    environ = {"PORTAL_BASE_URL": "https://tunnel.example.org"}

    assert local_base_url(host="127.0.0.1", port="8001", environ=environ) == "https://tunnel.example.org"


def test_no_template_has_an_empty_table_header():
    # A header cell without words leaves a screen reader's column unnamed; a column of buttons or
    # checkboxes gets a visually hidden name instead.
    templates = Path(settings.BASE_DIR) / "templates"
    empty = []
    for path in templates.rglob("*.html"):
        for cell in re.findall(r"<th\b[^>]*>(.*?)</th>", path.read_text(encoding="utf-8"), re.S):
            if not re.sub(r"<[^>]+>", "", cell).strip():
                empty.append(f"{path.relative_to(templates)}: <th>{cell}</th>")
    assert not empty, "\n".join(empty)
