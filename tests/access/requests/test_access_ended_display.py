"""The applicant's pages after a grant was revoked, suspended or ended: the request page, "My
requests" and "My access" say so, with the reason and what the license requires now, and never
"Approved" for that model (issue 15, item 3)."""

from __future__ import annotations

import pytest

from access.catalog.selectors import license_current
from access.grants.models import Grant
from access.grants.services import grant_accept_license, grant_expire, grant_revoke, grant_suspend
from access.review.services import access_request_approve

REASON = "The weights were found on a public file server."


@pytest.fixture
def approved(researcher, reviewer, llama_catalog, submit):
    """Ada's request for 7B and 13B, approved: two grants."""
    return access_request_approve(access_request=submit(researcher, "llama-7b", "llama-13b"), reviewer=reviewer)


def _grant(slug: str) -> Grant:
    return Grant.objects.get(variant__slug=slug)


def _pages(client, access_request) -> dict[str, str]:
    return {
        "request": client.get(f"/requests/{access_request.pk}/").content.decode(),
        "requests": client.get("/requests/").content.decode(),
        "grants": client.get("/grants/").content.decode(),
    }


def test_a_revoked_model_reads_access_revoked_with_the_reason_and_the_duty_to_delete(
    approved, reviewer, researcher_client
):
    grant_revoke(grant=_grant("llama-7b"), actor=reviewer, reason=REASON)

    pages = _pages(researcher_client, approved)

    row = pages["request"].split('data-testid="outcome-llama-7b"')[1].split("</tr>")[0]
    assert "Access revoked" in row and REASON in row and "Approved" not in row
    assert 'data-testid="request-status">Access revoked for some models<' in pages["request"]
    ended = pages["request"].split('data-testid="access-ended-llama-7b"')[1].split("</p>")[0]
    assert "Your access to LLaMA 7B was revoked" in ended and REASON in ended
    assert "delete every copy of the LLaMA 7B weights" in ended
    # The other model is untouched.
    row = pages["request"].split('data-testid="outcome-llama-13b"')[1].split("</tr>")[0]
    assert "Approved: accept the license" in row
    assert 'data-testid="outcome-llama-7b">(access revoked)' in pages["requests"]
    grant_row = pages["grants"].split('data-testid="grant-llama-7b"')[1].split("</tr>")[0]
    assert 'data-testid="grant-status">Access revoked<' in grant_row
    assert f"Reason: {REASON}" in grant_row
    assert "delete every copy of these weights" in grant_row


def test_a_request_whose_every_grant_was_revoked_never_reads_approved(approved, reviewer, researcher_client):
    for slug in ("llama-7b", "llama-13b"):
        grant_revoke(grant=_grant(slug), actor=reviewer, reason=REASON)

    pages = _pages(researcher_client, approved)

    assert 'data-testid="request-status">Access revoked<' in pages["request"]
    assert "<strong>Approved" not in pages["request"]
    assert 'data-testid="request-status">Access revoked<' in pages["requests"]
    assert ">Approved<" not in pages["requests"] and ">Approved<" not in pages["grants"]


def test_a_suspended_model_reads_access_suspended_with_the_reason(approved, reviewer, researcher_client):
    grant = _grant("llama-13b")
    grant_accept_license(grant=grant, user=grant.user, license_version=license_current(grant.variant.family))
    grant_suspend(grant=_grant("llama-13b"), actor=reviewer, reason="We are checking a report of shared links.")

    pages = _pages(researcher_client, approved)

    row = pages["request"].split('data-testid="outcome-llama-13b"')[1].split("</tr>")[0]
    assert "Access suspended" in row and "checking a report of shared links" in row
    assert "must not be used until a reviewer reinstates your access" in pages["request"]
    assert 'data-testid="outcome-llama-13b">(access suspended)' in pages["requests"]
    grant_row = pages["grants"].split('data-testid="grant-llama-13b"')[1].split("</tr>")[0]
    assert 'data-testid="grant-status">Access suspended<' in grant_row


def test_an_expired_model_reads_access_ended(approved, researcher_client):
    grant_expire(grant=_grant("llama-7b"))
    grant_expire(grant=_grant("llama-13b"))

    pages = _pages(researcher_client, approved)

    assert 'data-testid="request-status">Access ended<' in pages["request"]
    assert "Your access to LLaMA 7B ended" in pages["request"] and "apply again" in pages["request"]
    grant_row = pages["grants"].split('data-testid="grant-llama-7b"')[1].split("</tr>")[0]
    assert 'data-testid="grant-status">Access ended<' in grant_row


def test_the_requests_page_reads_the_grants_in_a_fixed_number_of_queries(
    researcher, reviewer, llama_catalog, submit, researcher_client, django_assert_max_num_queries
):
    for slug in ("llama-7b", "llama-13b", "llama-33b"):
        access_approved = access_request_approve(access_request=submit(researcher, slug), reviewer=reviewer)
        grant_revoke(grant=Grant.objects.get(request=access_approved), actor=reviewer, reason=REASON)

    with django_assert_max_num_queries(15):
        page = researcher_client.get("/requests/").content.decode()
    assert page.count(">Access revoked<") == 3


def test_a_revoked_model_of_a_request_still_in_review_says_the_rest_is_in_review(
    researcher, reviewer, llama_catalog, submit, researcher_client
):
    # 7B granted at the first approval, 65B waiting for a second reviewer; then 7B revoked.
    access_request = submit(researcher, "llama-7b", "llama-65b")
    access_request_approve(access_request=access_request, reviewer=reviewer)
    grant_revoke(grant=_grant("llama-7b"), actor=reviewer, reason=REASON)

    pages = _pages(researcher_client, access_request)

    assert 'data-testid="request-status">Access revoked; the rest is in review<' in pages["request"]
    assert 'data-testid="request-status">Access revoked; the rest is in review<' in pages["requests"]
    row = pages["request"].split('data-testid="outcome-llama-65b"')[1].split("</tr>")[0]
    assert "Waits for a second reviewer" in row
