"""The grant pages: the holder's (``/grants/``: each grant with its effective status and end
date; the license page and accepting the license) and the reviewers' (``/review/grants/``: the
list and its filters, granting without a request, suspend, reinstate, revoke).

Every view gets its happy path, 405 for a wrong method, and the side effect it must leave (the
rows and audit events of its service). Who reaches the reviewers' pages at all (MFA, roles) is
tested with every other review URL in tests/access/review/test_pages.py."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.catalog.services import license_publish
from access.grants.models import Grant, GrantStatus, LicenseAcceptance
from access.grants.services import grant_accept_license, grant_create, grant_revoke, grant_suspend
from access.review.services import access_request_approve
from tests.factories import UserFactory


@pytest.fixture
def license_required_grant(submit):
    """license_required_grant(applicant, reviewer, **approve): the grant of the applicant's approved
    llama-7b request, waiting for the license to be accepted."""

    def make(applicant, reviewer, **approve) -> Grant:
        access_request = submit(applicant)
        access_request_approve(access_request=access_request, reviewer=reviewer, **approve)
        return Grant.objects.get(user=applicant, request=access_request)

    return make


def _page(response) -> str:
    return html.unescape(response.content.decode())


def _text(response) -> str:
    return response.content.decode()


def _messages(response) -> str:
    # All of them: the login's "Successfully signed in" may still be waiting to be shown.
    return "\n".join(str(message) for message in response.context["messages"])


def _reload(obj):
    return type(obj).objects.get(pk=obj.pk)


def _events(obj, action: str | None = None):
    events = AuditEvent.objects.filter(target_type=obj._meta.label_lower, target_id=str(obj.pk))
    return events.filter(action=action) if action else events


# --- The holder's grants page ---------------------------------------------------------------------


def test_grants_page_shows_effective_status_end_date_and_the_way_to_the_license(
    researcher, outsider, researcher_client, reviewer, license_v1, license_required_grant
):
    ends = timezone.now() + dt.timedelta(days=90)
    grant = license_required_grant(researcher, reviewer, expires_at=ends)
    license_required_grant(outsider, reviewer)

    response = researcher_client.get("/grants/")

    assert response.status_code == 200
    page = _page(response)
    assert [g.pk for g in response.context["grants"]] == [grant.pk]
    assert "Accept the license" in page
    assert f'href="/grants/{grant.pk}/license/"' in page
    assert ends.strftime("%-d %b %Y") in page
    assert grant.request.reference in page


def test_an_active_grant_counts_as_license_required_once_a_new_license_is_in_force(
    researcher, researcher_client, reviewer, llama_catalog, license_v1, license_required_grant
):
    grant = license_required_grant(researcher, reviewer)
    grant_accept_license(grant=grant, user=researcher, license_version=license_v1)
    assert 'data-testid="grant-status">Active' in _page(researcher_client.get("/grants/"))

    license_publish(family=llama_catalog, version="2.0", title="LLaMA License", text="# New terms\n")

    page = _page(researcher_client.get("/grants/"))
    assert 'data-testid="grant-status">Accept the license' in page
    assert "LLaMA License, version 2.0" in page


def test_grants_page_answers_405_to_post(researcher_client):
    assert researcher_client.post("/grants/").status_code == 405


def test_grants_page_needs_a_login(client):
    assert client.get("/grants/").status_code == 302


# --- The license page: accepting the license --------------------------------------------------


def test_license_page_shows_the_full_current_license_with_its_version_and_digest(
    researcher, researcher_client, reviewer, license_v1, license_required_grant
):
    grant = license_required_grant(researcher, reviewer)

    response = researcher_client.get(f"/grants/{grant.pk}/license/")

    assert response.status_code == 200
    page = _page(response)
    assert "<h2>1. What you may do</h2>" in page  # the Markdown is rendered
    assert license_v1.sha256 in page
    assert 'data-testid="license-version">1.0<' in page
    assert f'<input type="hidden" name="license_id" value="{license_v1.pk}">' in page
    assert "I accept the LLaMA Non-Commercial Research License, version 1.0." in page


def test_accepting_the_license_activates_the_grant_and_records_the_acceptance(
    researcher, researcher_client, reviewer, license_v1, license_required_grant
):
    grant = license_required_grant(researcher, reviewer)

    response = researcher_client.post(
        f"/grants/{grant.pk}/license/",
        {"license_id": license_v1.pk, "accept": "on"},
        HTTP_USER_AGENT="Mozilla/5.0 (pytest)",
        follow=True,
    )

    assert response.redirect_chain == [("/grants/", 302)]
    assert "Your access to LLaMA 7B is active." in _messages(response)
    assert 'data-testid="grant-status">Active' in _page(response)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    acceptance = LicenseAcceptance.objects.get(user=researcher)
    assert acceptance.license == license_v1
    assert acceptance.license_sha256 == license_v1.sha256
    assert acceptance.grant == grant
    assert acceptance.ip_address == "127.0.0.1"
    assert acceptance.user_agent == "Mozilla/5.0 (pytest)"
    assert AuditEvent.objects.filter(action="license.accepted", actor=researcher).count() == 1
    assert AuditEvent.objects.filter(action="grant.activated", target_id=str(grant.pk)).count() == 1


def test_the_license_is_accepted_only_with_the_box_ticked(
    researcher, researcher_client, reviewer, license_v1, license_required_grant
):
    grant = license_required_grant(researcher, reviewer)

    response = researcher_client.post(f"/grants/{grant.pk}/license/", {"license_id": license_v1.pk})

    assert response.status_code == 400
    assert "Tick the box to accept the license." in _page(response)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.LICENSE_REQUIRED
    assert not LicenseAcceptance.objects.exists()


def test_a_license_changed_before_accepting_shows_the_new_one_to_accept(
    researcher, researcher_client, reviewer, llama_catalog, license_v1, license_required_grant
):
    grant = license_required_grant(researcher, reviewer)
    license_v2 = license_publish(family=llama_catalog, version="2.0", title="LLaMA License", text="# New terms\n")

    response = researcher_client.post(f"/grants/{grant.pk}/license/", {"license_id": license_v1.pk, "accept": "on"})

    assert response.status_code == 400
    assert "Accept the current license, version 2.0" in response.context["form"].errors["license_id"][0]
    page = _page(response)
    assert f'<input type="hidden" name="license_id" value="{license_v2.pk}">' in page
    assert '<input type="checkbox" name="accept" id="id_accept">' in page
    assert not LicenseAcceptance.objects.exists()


def test_accepting_the_license_of_a_revoked_grant_changes_nothing(
    researcher, researcher_client, reviewer, admin_user, license_v1, license_required_grant
):
    grant = license_required_grant(researcher, reviewer)
    grant_revoke(grant=grant, actor=admin_user, reason="Broke the terms.")

    response = researcher_client.post(
        f"/grants/{grant.pk}/license/", {"license_id": license_v1.pk, "accept": "on"}, follow=True
    )

    assert response.redirect_chain == [("/grants/", 302)]
    assert "This grant is revoked" in _messages(response)
    assert not LicenseAcceptance.objects.exists()


def test_license_page_answers_405_to_put(researcher, researcher_client, reviewer, license_v1, license_required_grant):
    grant = license_required_grant(researcher, reviewer)

    assert researcher_client.put(f"/grants/{grant.pk}/license/").status_code == 405


# --- The reviewers' grants page: grants managed by hand --------------------------------------------


def test_grants_page_lists_grants_and_filters_them(reviewer_client, reviewer, researcher, outsider, live_grant):
    other = grant_create(
        user=outsider, variant=ModelVariant.objects.get(slug="llama-13b"), actor=reviewer, reason="Partner lab."
    )
    grant_suspend(grant=other, actor=reviewer, reason="Investigating a leak.")
    grants = reverse("review-grants")

    def shown(**params):
        return set(map(int, re.findall(r'data-grant="(\d+)"', _text(reviewer_client.get(grants, params)))))

    assert shown() == {live_grant.pk, other.pk}
    assert shown(status="suspended") == {other.pk}
    assert shown(email="ELSEWHERE") == {other.pk}
    assert shown(variant="llama-7b") == {live_grant.pk}
    assert "Investigating a leak." in _text(reviewer_client.get(grants))


def test_the_email_filter_finds_a_whole_address_exactly_and_part_of_one_as_a_substring(
    reviewer_client, grants_by_holder, email_filter_case
):
    query, holders = email_filter_case

    response = reviewer_client.get(reverse("review-grants"), {"email": query})

    assert response.status_code == 200
    shown = set(map(int, re.findall(r'data-grant="(\d+)"', _text(response))))
    assert shown == {grants_by_holder[email] for email in holders}, query


def test_grants_page_query_count_does_not_grow_with_the_number_of_holders(reviewer_client, reviewer, llama_catalog):
    variant = ModelVariant.objects.get(slug="llama-7b")
    grants = reverse("review-grants")

    def holders(count):
        for _ in range(count):
            grant_create(user=UserFactory(), variant=variant, actor=reviewer, reason="Vetted.")

    holders(2)
    reviewer_client.get(grants)
    with CaptureQueriesContext(connection) as few:
        reviewer_client.get(grants)
    holders(20)
    with CaptureQueriesContext(connection) as many:
        reviewer_client.get(grants)

    assert len(many) == len(few)


def test_granting_without_a_request_creates_a_grant_waiting_for_the_license(
    reviewer_client, reviewer, researcher, llama_catalog
):
    end = timezone.localdate() + dt.timedelta(days=30)

    response = reviewer_client.post(
        reverse("review-grants"),
        {
            "email": "ADA@uni.example.edu",
            "variant": "llama-33b",
            "reason": "Co-author, vetted by the PI.",
            "expires_on": end.isoformat(),
        },
    )

    assert response.status_code == 302
    grant = Grant.objects.get(user=researcher)
    assert (grant.variant.slug, grant.status, grant.request, grant.granted_by) == (
        "llama-33b", GrantStatus.LICENSE_REQUIRED, None, reviewer,
    )  # fmt: skip
    assert grant.reason == "Co-author, vetted by the PI."
    assert timezone.localtime(grant.expires_at).date() == end + dt.timedelta(days=1)
    assert _events(grant, "grant.created").count() == 1
    assert "now has a grant for LLaMA 33B" in _text(reviewer_client.get(response["Location"]))


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        ({"email": "nobody@nowhere.example", "variant": "llama-7b", "reason": "x"}, 400, "must sign up first"),
        ({"email": "ada@uni.example.edu", "variant": "llama-7b", "reason": ""}, 400, "This field is required"),
        ({"email": "ada@uni.example.edu", "variant": "llama-99b", "reason": "x"}, 400, "Select a valid choice"),
        ({"email": "ada@uni.example.edu", "variant": "llama-7b", "reason": "x"}, 409, "already has a grant"),
    ],
)
def test_granting_with_bad_input_changes_nothing(reviewer_client, researcher, live_grant, data, status, error):
    response = reviewer_client.post(reverse("review-grants"), data)

    assert response.status_code == status
    assert error in _text(response)
    assert Grant.objects.count() == 1


def test_suspending_and_reinstating_a_grant(reviewer_client, live_grant):
    suspend = reverse("review-grant-action", args=[live_grant.pk, "suspend"])
    reinstate = reverse("review-grant-action", args=[live_grant.pk, "reinstate"])

    response = reviewer_client.post(suspend, {"reason": "Investigating.", "query": "status=license_required"})

    assert response.status_code == 302
    assert response["Location"] == reverse("review-grants") + "?status=license_required"
    live_grant = _reload(live_grant)
    assert (live_grant.status, live_grant.status_reason) == (GrantStatus.SUSPENDED, "Investigating.")
    assert _events(live_grant, "grant.suspended").count() == 1

    reviewer_client.post(reinstate, {"reason": ""})

    assert _reload(live_grant).status == GrantStatus.LICENSE_REQUIRED  # the license was never accepted
    assert _events(live_grant, "grant.reinstated").count() == 1


def test_revoking_a_grant_can_block_new_requests(reviewer_client, live_grant):
    response = reviewer_client.post(
        reverse("review-grant-action", args=[live_grant.pk, "revoke"]),
        {"reason": "Shared the weights publicly.", "block_new_requests": "on"},
        follow=True,
    )

    live_grant = _reload(live_grant)
    assert (live_grant.status, live_grant.blocks_new_requests) == (GrantStatus.REVOKED, True)
    assert live_grant.status_reason == "Shared the weights publicly."
    assert _events(live_grant, "grant.revoked").get().details["block_new_requests"] is True
    assert "is revoked" in _text(response)


@pytest.mark.parametrize("action", ["revoke", "suspend"])
def test_revoking_or_suspending_without_a_reason_changes_nothing(reviewer_client, live_grant, action):
    response = reviewer_client.post(
        reverse("review-grant-action", args=[live_grant.pk, action]), {"reason": ""}, follow=True
    )

    assert _reload(live_grant).status == GrantStatus.LICENSE_REQUIRED
    assert "Say why" in _text(response)


def test_reinstating_a_revoked_grant_is_refused(reviewer_client, reviewer, live_grant):
    grant_revoke(grant=live_grant, actor=reviewer, reason="Breach.")

    response = reviewer_client.post(reverse("review-grant-action", args=[live_grant.pk, "reinstate"]), follow=True)

    assert _reload(live_grant).status == GrantStatus.REVOKED
    assert "it cannot be reinstated" in _text(response)


def test_unknown_grant_action_or_grant_is_404(reviewer_client, live_grant):
    assert reviewer_client.post(reverse("review-grant-action", args=[live_grant.pk, "delete"])).status_code == 404
    assert (
        reviewer_client.post(reverse("review-grant-action", args=[999_999, "revoke"]), {"reason": "x"}).status_code
        == 404
    )
