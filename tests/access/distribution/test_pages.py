"""The download pages: the researcher's page per grant (create and re-issue links, what
each state says), the reviewers' view of a grant's downloads, the leak alerts panel on
the queue and the reviewers' email when the leak rule suspends links.

Personas: the researcher who holds the grant, an outsider, a reviewer (TOTP) and a
reviewer without a second factor. Downloads go through the real gateway."""

from __future__ import annotations

import datetime as dt
import re

import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.distribution.bundles import bundle_create, bundle_current, bundle_suspend
from access.distribution.models import DownloadBundle, DownloadEvent
from access.distribution.tokens import bundle_manifest_path, bundle_script_path, bundle_wildcard_path, link_path
from access.grants.services import grant_create, grant_revoke
from tests.access.distribution.served import served_sha256

ENROL_URL = "/accounts/2fa/required/"  # why an authenticator app is required, then its set-up


def page_url(grant) -> str:
    return reverse("grant-downloads", args=[grant.pk])


def create_url(grant) -> str:
    return reverse("grant-downloads-create", args=[grant.pk])


def review_url(grant) -> str:
    return reverse("review-grant-downloads", args=[grant.pk])


def _text(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _links_on(page: str) -> list[str]:
    return re.findall(r'href="http://testserver(/dl/[^"]+)"', page)


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- The researcher's page ------------------------------------------------------------------


def test_the_grants_page_leads_an_active_grant_to_its_downloads(researcher_client, grant):
    page = _text(researcher_client.get(reverse("grants")))

    assert f'href="{page_url(grant)}"' in page


def test_the_page_offers_links_then_shows_each_file_with_checksum_expiry_and_downloads_left(
    researcher_client, grant, published_demo_weights, sha256_of, body_of
):
    _, _, weight_files = published_demo_weights
    before = _text(researcher_client.get(page_url(grant)))
    assert "Create download links" in before
    assert _links_on(before) == []

    response = researcher_client.post(create_url(grant), follow=True)

    page = _text(response)
    assert response.redirect_chain == [(page_url(grant), 302)]
    assert any(message.startswith("New download links for") for message in _messages(response))
    bundle = bundle_current(grant)
    for weight_file in weight_files:
        row = re.search(rf'data-file="{re.escape(weight_file.name)}".*?</tr>', page, re.S).group(0)
        link = bundle.links.select_related("file", "copy").get(file=weight_file)
        assert served_sha256(link) in row  # the researcher's own copy's
        assert "5 of 5" in row
    assert f"http://testserver{bundle_script_path(bundle)}" in page
    assert f"http://testserver{bundle_manifest_path(bundle)}" in page
    assert "sh download.sh" in page
    assert f"http://testserver{bundle_wildcard_path(bundle)}" in page and 'MODEL_SIZE="tiny"' in page
    assert bundle.expires_at.strftime("%-d %b %Y, %H:%M") in page
    assert "Create new links" in page
    # Every link on the page downloads its file.
    links = _links_on(page)
    file_links = [link for link in links if not link.startswith("/dl/b/")]
    assert len(file_links) == len(weight_files)
    for link in file_links:
        name = link.rsplit("/", 1)[1]
        expected = bundle.links.select_related("file", "copy").get(file__name=name)
        assert sha256_of(body_of(Client().get(link))) == served_sha256(expected)


def test_the_page_counts_down_the_downloads_left(researcher_client, researcher, grant):
    bundle = bundle_create(grant=grant, user=researcher)
    link = bundle.links.select_related("file").get(file__name="tokenizer.model")
    for _ in range(2):
        assert Client().get(link_path(link)).status_code == 200

    page = _text(researcher_client.get(page_url(grant)))

    row = re.search(r'data-file="tokenizer.model".*?</tr>', page, re.S).group(0)
    assert "3 of 5" in row


def test_creating_new_links_retires_the_old_ones_without_a_new_request(researcher_client, researcher, grant):
    old = bundle_create(grant=grant, user=researcher)
    old_link = old.links.select_related("file").get(file__name="params.json")

    response = researcher_client.post(create_url(grant), follow=True)

    assert any("The previous links no longer work." in message for message in _messages(response))
    new = bundle_current(grant)
    assert new.pk != old.pk
    page = _text(response)
    assert link_path(old_link) not in page
    assert link_path(new.links.select_related("file").get(file__name="params.json")) in page
    assert Client().get(link_path(old_link)).status_code == 410


def test_expired_links_are_not_shown_and_new_ones_can_be_made(researcher_client, researcher, grant):
    bundle_create(grant=grant, user=researcher)

    with time_machine.travel(timezone.now() + dt.timedelta(hours=25)):
        page = _text(researcher_client.get(page_url(grant)))
        assert "Your links expired" in page
        assert _links_on(page) == []
        assert "Create new links" in page
        assert researcher_client.post(create_url(grant)).status_code == 302
        assert len(_links_on(_text(researcher_client.get(page_url(grant))))) > 0


def test_a_grant_waiting_for_the_license_is_sent_to_accept_it(
    researcher_client, researcher, reviewer, published_demo_weights
):
    variant, _, _ = published_demo_weights
    grant = grant_create(user=researcher, variant=variant, actor=reviewer, reason="Collaborator.")

    page = _text(researcher_client.get(page_url(grant)))
    response = researcher_client.post(create_url(grant), follow=True)

    assert "Accept the license first" in page
    assert f'href="{reverse("grant-license", args=[grant.pk])}"' in page
    assert 'data-testid="create-links"' not in page
    assert any("license" in message for message in _messages(response))
    assert not DownloadBundle.objects.exists()


def test_a_revoked_grant_shows_no_links_and_offers_none(researcher_client, researcher, reviewer, grant):
    bundle_create(grant=grant, user=researcher)
    grant_revoke(grant=grant, actor=reviewer, reason="Shared the weights.")

    page = _text(researcher_client.get(page_url(grant)))
    researcher_client.post(create_url(grant))

    assert "was revoked" in page
    assert "Shared the weights." in page
    assert _links_on(page) == []
    assert 'data-testid="create-links"' not in page
    assert DownloadBundle.objects.filter(grant=grant).count() == 1


def test_suspended_links_are_explained_and_not_replaced_from_the_page(researcher_client, researcher, grant):
    bundle = bundle_create(grant=grant, user=researcher)
    bundle_suspend(bundle=bundle, reason="Leak rule: links used from 4 networks.")

    page = _text(researcher_client.get(page_url(grant)))

    assert "Your download links were suspended" in page
    assert _links_on(page) == []
    assert 'data-testid="create-links"' not in page


def test_unpublished_weights_say_to_come_back_later(
    researcher_client, researcher, reviewer, llama_catalog, active_grant_make
):
    variant = ModelVariant.objects.get(slug="llama-demo-tiny")
    grant = active_grant_make(user=researcher, variant=variant, reviewer=reviewer)

    page = _text(researcher_client.get(page_url(grant)))
    response = researcher_client.post(create_url(grant), follow=True)

    assert "are not published yet" in page
    assert 'data-testid="create-links"' not in page
    assert any("not need a new request" in message for message in _messages(response))
    assert not DownloadBundle.objects.exists()


def test_an_outsider_cannot_see_or_create_someone_elses_links(client, outsider, researcher, grant, login_with_password):
    bundle = bundle_create(grant=grant, user=researcher)
    login_with_password(client, outsider)

    assert client.get(page_url(grant)).status_code == 404
    assert client.post(create_url(grant)).status_code == 404
    assert list(DownloadBundle.objects.values_list("pk", flat=True)) == [bundle.pk]


def test_the_download_pages_need_a_login(client, grant):
    for response in (client.get(page_url(grant)), client.post(create_url(grant))):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    assert not DownloadBundle.objects.exists()


def test_the_download_pages_answer_only_their_methods(researcher_client, grant):
    assert researcher_client.post(page_url(grant)).status_code == 405
    assert researcher_client.get(create_url(grant)).status_code == 405
    assert not DownloadBundle.objects.exists()


def test_creating_links_needs_the_csrf_token(researcher, grant):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(researcher)  # a password login would need the token too

    assert browser.post(create_url(grant)).status_code == 403
    assert not DownloadBundle.objects.exists()


# --- The reviewers' view ---------------------------------------------------------------------


def test_reviewers_see_every_request_made_with_a_grants_links(reviewer_client, researcher, grant, body_of):
    bundle = bundle_create(grant=grant, user=researcher)
    link = bundle.links.select_related("file").get(file__name="consolidated.00.pth")
    downloader = Client(REMOTE_ADDR="203.0.113.45", HTTP_USER_AGENT="Wget/1.21.4")
    body_of(downloader.get(link_path(link), HTTP_RANGE="bytes=0-99"))
    body_of(downloader.get(link_path(link), HTTP_RANGE="bytes=100-"))
    body_of(downloader.get(bundle_script_path(bundle)))
    replaced = bundle_create(grant=grant, user=researcher)
    body_of(downloader.get(link_path(link)))  # the replaced link: refused

    grants_page = _text(reviewer_client.get(reverse("review-grants")))
    page = _text(reviewer_client.get(review_url(grant)))

    assert f'href="{review_url(grant)}"' in grants_page
    rows = re.findall(r'<tr data-testid="event-row".*?</tr>', page, re.S)
    assert len(rows) == DownloadEvent.objects.filter(grant=grant).count() == 4
    newest, script, resume, first = rows
    assert "consolidated.00.pth" in first and "bytes=0-99" in first and ">206<" in first and "counted" in first
    assert "100 bytes" in first
    assert "bytes=100-" in resume and "counted" in resume  # a resume uses the bytes it asks for
    assert "203.0.113.45" in first and "203.0.113.0/24" in first and "Wget/1.21.4" in first
    assert "script or manifest" in script
    assert ">410<" in newest and "retired" in newest
    bundle_rows = re.findall(r'<tr data-testid="bundle-row".*?</tr>', page, re.S)
    assert [re.search(r'data-state="(\w+)"', row).group(1) for row in bundle_rows] == ["live", "replaced"]
    assert replaced.public_id in bundle_rows[0] and bundle.public_id in bundle_rows[1]


def test_researchers_and_outsiders_cannot_open_the_reviewers_downloads_view(
    client, researcher, outsider, grant, login_with_password
):
    login_with_password(client, researcher)
    assert client.get(review_url(grant)).status_code == 403
    client.logout()
    login_with_password(client, outsider)
    assert client.get(review_url(grant)).status_code == 403


def test_a_reviewer_without_a_second_factor_is_sent_to_enrol(client, reviewer_without_mfa, grant, login_with_password):
    login_with_password(client, reviewer_without_mfa)

    response = client.get(review_url(grant))

    assert response.status_code == 302
    assert response["Location"].startswith(ENROL_URL)


def test_the_reviewers_downloads_view_is_read_only(reviewer_client, grant):
    assert reviewer_client.post(review_url(grant)).status_code == 405


# --- The leak rule: email and panel -------------------------------------------------------------


def _use_from_many_networks(bundle, networks=("203.0.113.5", "198.51.100.1", "192.0.2.10", "100.64.0.1")):
    link = bundle.links.select_related("file").get(file__name="params.json")
    return [Client(REMOTE_ADDR=address).get(link_path(link)).status_code for address in networks]


def test_links_used_from_too_many_networks_alert_the_reviewers_by_email_and_on_the_queue(
    client, settings, researcher, reviewer, grant, mailoutbox, django_capture_on_commit_callbacks, login_with_totp
):
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 3
    bundle = bundle_create(grant=grant, user=researcher)

    with django_capture_on_commit_callbacks(execute=True):
        statuses = _use_from_many_networks(bundle)

    assert statuses == [200, 200, 200, 403]
    (email,) = mailoutbox
    assert email.to == [] and email.bcc == [reviewer.email]  # never the researcher
    assert researcher.email in email.subject and grant.variant.name in email.subject
    assert f"{settings.PORTAL_BASE_URL.rstrip('/')}{review_url(grant)}" in email.body
    assert "4 networks" in email.body and "100.64.0.0/24" in email.body
    assert bundle.public_id in email.alternatives[0][0]

    login_with_totp(client, reviewer)
    queue = _text(client.get(reverse("review-queue")))
    panel = re.search(r'data-testid="leak-alerts".*?</section>', queue, re.S).group(0)
    (alert,) = re.findall(r'<tr data-testid="leak-alert".*?</tr>', panel, re.S)
    assert researcher.email in alert and grant.variant.name in alert
    assert f'href="{review_url(grant)}"' in alert
    page = _text(client.get(review_url(grant)))
    assert 'data-state="suspended"' in page and "Leak rule" in page


def test_the_leak_panel_shows_only_the_leak_rules_suspensions_of_the_last_30_days(
    reviewer_client, researcher, reviewer, grant
):
    assert 'data-testid="leak-alerts"' not in _text(reviewer_client.get(reverse("review-queue")))
    # Made first: once the latest links are suspended, no new ones can be made.
    old = bundle_create(grant=grant, user=researcher)
    by_hand = bundle_create(grant=grant, user=researcher)
    recent = bundle_create(grant=grant, user=researcher)
    with time_machine.travel(timezone.now() - dt.timedelta(days=31)):
        bundle_suspend(bundle=old, reason="Leak rule: long ago.")
    bundle_suspend(bundle=by_hand, reason="Suspended by a reviewer.", actor=reviewer)
    assert 'data-testid="leak-alerts"' not in _text(reviewer_client.get(reverse("review-queue")))

    bundle_suspend(bundle=recent, reason="Leak rule: links used from 4 networks.")
    queue = _text(reviewer_client.get(reverse("review-queue")))

    assert re.findall(r'data-testid="leak-alert" data-bundle="([^"]+)"', queue) == [recent.public_id]


# --- After a leak suspension: no new links until a reviewer lifts it --------------------------------


def test_new_links_are_refused_while_the_latest_links_are_suspended(researcher, grant, settings, bearer_client):
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 3
    bundle = bundle_create(grant=grant, user=researcher)
    assert _use_from_many_networks(bundle) == [200, 200, 200, 403]

    api = bearer_client(researcher)
    response = api.post(f"/api/v1/grants/{grant.pk}/download-links")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "links_suspended"
    assert DownloadBundle.objects.filter(grant=grant).count() == 1  # the leak rule was not undone


def unsuspend_url(grant, bundle) -> str:
    return reverse("review-bundle-unsuspend", args=[grant.pk, bundle.pk])


def test_a_reviewer_lifts_a_suspension_with_a_reason_and_the_links_work_again(
    reviewer_client, researcher, reviewer, grant
):
    bundle = bundle_create(grant=grant, user=researcher)
    bundle_suspend(bundle=bundle, reason="Leak rule: links used from 4 networks.")
    link = bundle.links.select_related("file").get(file__name="params.json")
    assert Client().get(link_path(link)).status_code == 403
    page = _text(reviewer_client.get(review_url(grant)))
    assert 'data-testid="unsuspend-form"' in page

    refused = reviewer_client.post(unsuspend_url(grant, bundle), {"reason": "  "}, follow=True)
    assert any("Say why" in m for m in _messages(refused))
    bundle.refresh_from_db()
    assert bundle.suspended_at is not None

    reviewer_client.post(unsuspend_url(grant, bundle), {"reason": "Cluster with four NAT gateways, confirmed."})

    bundle.refresh_from_db()
    assert bundle.suspended_at is None
    assert Client().get(link_path(link)).status_code == 200
    event = AuditEvent.objects.get(action="download.bundle_unsuspended")
    assert event.actor_id == reviewer.pk and "NAT gateways" in event.details["reason"]
    assert bundle_create(grant=grant, user=researcher).pk != bundle.pk  # new links may be made again


def test_researchers_cannot_lift_a_suspension(researcher_client, researcher, grant):
    bundle = bundle_create(grant=grant, user=researcher)
    bundle_suspend(bundle=bundle, reason="Leak rule.")

    response = researcher_client.post(unsuspend_url(grant, bundle), {"reason": "it was me"})

    assert response.status_code in (302, 403, 404)
    bundle.refresh_from_db()
    assert bundle.suspended_at is not None
