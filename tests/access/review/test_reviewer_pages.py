"""What reviewers read and do on their pages (issue 15): a bulk action with no default decision, a
history in words, the "Applicant replied" mark and filter, each screening flag once, revoke,
suspend and reinstate from the request's page, the researcher's name on the grants page, and
whole-number ticks on the statistics chart."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse

from access.catalog.models import ModelVariant
from access.grants.models import Grant, GrantStatus
from access.grants.services import grant_create, grant_revoke, grant_suspend
from access.requests.models import AccessRequest, RequestStatus, ScreeningFlag
from access.requests.services import access_request_resubmit
from access.review.charts import weekly_outcomes_chart
from access.review.services import access_request_approve, access_request_claim, access_request_request_info
from access.review.stats import WeekOutcomes
from tests.factories import UserFactory


def _text(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _messages(response) -> list[str]:
    """The messages the page shows, less the one about signing in."""
    return [str(message) for message in response.context["messages"] if "signed in" not in str(message)]


def _section(page: str, testid: str) -> str:
    match = re.search(rf'<section class="card[^"]*"[^>]*data-testid="{testid}".*?</section>', page, re.S)
    assert match, testid
    return match.group(0)


def _row(page: str, reference: str) -> str:
    return page.split(f'data-reference="{reference}"')[1].split("</tr>")[0]


# --- Bulk decisions ------------------------------------------------------------------------------


def test_the_bulk_decision_starts_on_choose_with_no_decision_preselected(reviewer_client, pending):
    page = _text(reviewer_client.get(reverse("review-queue")))

    select = re.search(r'<select name="decision" id="id_bulk_decision" required>(.*?)</select>', page, re.S).group(1)
    options = re.findall(r'<option value="(\w*)"( selected)?>([^<]+)</option>', select)
    assert options == [
        ("", " selected", "Choose…"),
        ("approve", "", "Approve every requested model"),
        ("reject", "", "Reject"),
    ]


@pytest.mark.parametrize("decision", ["", "maybe"], ids=["none chosen", "unknown"])
def test_a_bulk_submit_without_a_decision_changes_nothing_and_says_to_choose(reviewer_client, pending, decision):
    response = reviewer_client.post(
        reverse("review-bulk"), {"requests": [pending.pk], "decision": decision, "query": "country=GB"}, follow=True
    )

    assert response.redirect_chain[-1][0] == reverse("review-queue") + "?country=GB"
    assert _messages(response) == [
        "Choose a decision, approve or reject, for the ticked requests. Nothing was changed."
    ]
    assert AccessRequest.objects.get(pk=pending.pk).status == RequestStatus.SUBMITTED
    assert not Grant.objects.exists()


# --- History in words ----------------------------------------------------------------------------


def test_the_history_reads_as_sentences_with_the_details_in_words(
    reviewer_client, reviewer, second_reviewer, llama_catalog, submit
):
    applicant = UserFactory(email="gus@gmail.com")
    access_request = submit(applicant, "llama-7b", "llama-13b", full_name="Gus Gmail")
    access_request_claim(access_request=access_request, reviewer=second_reviewer, assignee=reviewer)
    access_request_approve(
        access_request=access_request, reviewer=second_reviewer, variants=[ModelVariant.objects.get(slug="llama-7b")]
    )
    grant = Grant.objects.get(request=access_request)
    grant_revoke(grant=grant, actor=second_reviewer, reason="Shared the weights.", block_new_requests=True)

    history = _section(_text(reviewer_client.get(reverse("review-detail", args=[access_request.pk]))), "history")

    events = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", item)).strip()
              for item in re.findall(r'<li data-testid="history-event">(.*?)</li>', history, re.S)]  # fmt: skip
    sentences = [re.sub(r"^\d+ \w+ \d{4}, \d\d:\d\d UTC ", "", event) for event in events]
    assert sentences == [
        "Submitted by gus@gmail.com for LLaMA 7B, LLaMA 13B License version 1.0 Screening flag: Free-mail email domain",
        "Assigned to rita.reviewer@lab.example.org by sam.second@lab.example.org",
        "Approved LLaMA 7B by sam.second@lab.example.org Declined: LLaMA 13B",
        "Access to LLaMA 7B granted; the researcher accepts the license next",
        "Access to LLaMA 7B revoked by sam.second@lab.example.org Reason: Shared the weights. "
        "New requests from the researcher are blocked",
    ]
    for raw in ("access_request.", "grant.", "[&#x27;", "{&#x27;", "free_mail_domain", "None", "True"):
        assert raw not in history, raw


def test_a_reviewer_taking_a_request_reads_as_claimed_not_assigned_to_themselves(
    reviewer_client, reviewer, researcher, llama_catalog, submit
):
    access_request = submit(researcher, "llama-7b")
    access_request_claim(access_request=access_request, reviewer=reviewer)

    history = _section(_text(reviewer_client.get(reverse("review-detail", args=[access_request.pk]))), "history")

    assert f"Claimed by {reviewer.email}" in history
    assert "Assigned to" not in history


def test_a_first_approval_under_the_two_person_rule_reads_as_waiting_for_a_second_reviewer(
    reviewer_client, second_reviewer, researcher, llama_catalog, submit
):
    access_request = submit(researcher, "llama-65b")
    access_request_approve(access_request=access_request, reviewer=second_reviewer)

    history = _section(_text(reviewer_client.get(reverse("review-detail", args=[access_request.pk]))), "history")

    assert "Approval of LLaMA 65B recorded by sam.second@lab.example.org" in history
    assert "Waiting for a second reviewer: LLaMA 65B" in history


def test_an_event_the_history_has_no_sentence_for_still_reads_as_words(reviewer_client, reviewer, pending):
    from access.audit.services import audit_event_record

    audit_event_record(
        action="access_request.partially_granted",
        actor=reviewer,
        target=pending,
        details={"granted": ["llama-7b"], "waiting": {"llama-65b": 1}, "notified": False},
    )

    history = _section(_text(reviewer_client.get(reverse("review-detail", args=[pending.pk]))), "history")

    assert "Partially granted by rita.reviewer@lab.example.org" in history
    assert "Granted: LLaMA 7B" in history and "Waiting: llama-65b: 1" in history and "Notified: no" in history
    assert "[&#x27;" not in history and "{&#x27;" not in history


# --- Applicant replied ---------------------------------------------------------------------------


def test_a_request_the_applicant_answered_is_marked_in_the_queue_until_a_reviewer_decides(
    reviewer_client, reviewer, researcher, outsider, llama_catalog, submit
):
    answered = submit(researcher, "llama-7b")
    silent = submit(outsider, "llama-7b", full_name="Eve Example", affiliation="Elsewhere")
    access_request_request_info(access_request=answered, reviewer=reviewer, message="Which lab?")
    access_request_resubmit(access_request=answered, applicant=researcher, message="The NLP lab.")

    page = _text(reviewer_client.get(reverse("review-queue")))

    assert re.search(r'data-testid="applicant-replied"[^>]*>Applicant replied<', _row(page, answered.reference))
    assert "Applicant replied" not in _row(page, silent.reference)
    filtered = _text(reviewer_client.get(reverse("review-queue"), {"replied": "yes"}))
    assert re.findall(r'data-reference="([^"]+)"', filtered) == [answered.reference]
    assert '<option value="yes" selected>Replied to a question</option>' in filtered

    # A first approval in the new round is a reviewer's answer: the mark goes.
    access_request_approve(access_request=answered, reviewer=reviewer)
    assert AccessRequest.objects.get(pk=answered.pk).status == RequestStatus.APPROVED
    access_request_request_info(access_request=silent, reviewer=reviewer, message="Which lab?")
    access_request_resubmit(access_request=silent, applicant=outsider)  # no message: resubmitting answers too
    page = _text(reviewer_client.get(reverse("review-queue"), {"replied": "yes"}))
    assert re.findall(r'data-reference="([^"]+)"', page) == [silent.reference]


# --- Screening flags once ------------------------------------------------------------------------


def test_a_flag_raised_again_on_resubmission_is_listed_once_with_its_latest_reason(
    reviewer_client, reviewer, llama_catalog, submit
):
    applicant = UserFactory(email="gus@gmail.com")
    access_request = submit(applicant, "llama-7b", full_name="Gus Gmail")
    access_request_request_info(access_request=access_request, reviewer=reviewer, message="Institutional email?")
    access_request_resubmit(access_request=access_request, applicant=applicant, message="I have none.")
    ScreeningFlag.objects.filter(request=access_request, review_round=2).update(reason="Still a gmail.com address.")
    assert ScreeningFlag.objects.filter(request=access_request, code="free_mail_domain").count() == 2

    detail = _text(reviewer_client.get(reverse("review-detail", args=[access_request.pk])))
    queue = _text(reviewer_client.get(reverse("review-queue")))

    flags = _section(detail, "flags")
    assert flags.count("Free-mail email domain") == 1
    assert "Still a gmail.com address." in flags and "(round" not in flags
    assert _row(queue, access_request.reference).count("Free-mail email domain") == 1


# --- Grants: revoke, suspend, reinstate from the request's page ----------------------------------


@pytest.fixture
def approved(reviewer, second_reviewer, researcher, pending):
    """Ada's request, approved for both models by the second reviewer: two grants."""
    return access_request_approve(access_request=pending, reviewer=second_reviewer)


def _grant_action_url(access_request, grant, action):
    return reverse("review-request-grant-action", args=[access_request.pk, grant.pk, action])


def test_the_request_page_offers_suspend_and_revoke_for_each_live_grant(reviewer_client, approved):
    grants = _section(_text(reviewer_client.get(reverse("review-detail", args=[approved.pk]))), "applicant-grants")

    for grant in approved.grants.all():
        assert f'action="{_grant_action_url(approved, grant, "revoke")}"' in grants
        assert f'action="{_grant_action_url(approved, grant, "suspend")}"' in grants
    assert grants.count(">Revoke…</summary>") == 2 and grants.count(">Suspend…</summary>") == 2
    assert "Revoke access to LLaMA 7B</button>" in grants
    assert 'name="reason" id="detail-revoke-' in grants and "required" in grants


def test_revoking_from_the_request_page_revokes_emails_and_returns_there(
    reviewer_client, approved, mailoutbox, django_capture_on_commit_callbacks
):
    grant = approved.grants.get(variant__slug="llama-7b")
    mailoutbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = reviewer_client.post(
            _grant_action_url(approved, grant, "revoke"),
            {"reason": "Weights on a public share.", "block_new_requests": "on"},
            follow=True,
        )

    assert response.redirect_chain[-1][0] == reverse("review-detail", args=[approved.pk]) + "#grants"
    assert _messages(response) == [
        "Access to LLaMA 7B for ada@uni.example.edu is revoked. They are emailed about it."
    ]
    grant.refresh_from_db()
    assert (grant.status, grant.status_reason, grant.blocks_new_requests) == (
        GrantStatus.REVOKED, "Weights on a public share.", True,
    )  # fmt: skip
    (email,) = mailoutbox
    assert email.to == ["ada@uni.example.edu"] and "Weights on a public share." in email.body
    grants = _section(_text(response), "applicant-grants")
    assert grants.count(">Revoke…</summary>") == 1  # the revoked grant is final: no more actions


def test_suspend_without_a_reason_changes_nothing_and_says_why(reviewer_client, approved):
    grant = approved.grants.get(variant__slug="llama-13b")

    response = reviewer_client.post(_grant_action_url(approved, grant, "suspend"), {"reason": "  "}, follow=True)

    assert _messages(response) == [
        "LLaMA 13B for ada@uni.example.edu: Say why the access is suspended; the researcher reads the reason "
        "in an email. Nothing was changed."
    ]
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.LICENSE_REQUIRED


def test_a_suspended_grant_is_reinstated_from_the_request_page(reviewer_client, reviewer, approved):
    grant = approved.grants.get(variant__slug="llama-13b")
    grant_suspend(grant=grant, actor=reviewer, reason="Checking.")
    grants = _section(_text(reviewer_client.get(reverse("review-detail", args=[approved.pk]))), "applicant-grants")
    assert f'action="{_grant_action_url(approved, grant, "reinstate")}"' in grants
    assert f'action="{_grant_action_url(approved, grant, "suspend")}"' not in grants

    response = reviewer_client.post(_grant_action_url(approved, grant, "reinstate"), {"reason": ""}, follow=True)

    assert _messages(response) == [
        "Access to LLaMA 13B for ada@uni.example.edu is reinstated. They are emailed about it."
    ]
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.LICENSE_REQUIRED


def test_the_request_page_acts_only_on_its_applicants_grants(reviewer_client, reviewer, outsider, approved):
    others = grant_create(
        user=outsider, variant=ModelVariant.objects.get(slug="llama-7b"), actor=reviewer, reason="Co-author."
    )
    grant = approved.grants.first()

    assert reviewer_client.post(_grant_action_url(approved, others, "revoke"), {"reason": "x"}).status_code == 404
    assert reviewer_client.post(_grant_action_url(approved, grant, "delete"), {"reason": "x"}).status_code == 404
    assert reviewer_client.get(_grant_action_url(approved, grant, "revoke")).status_code == 405
    assert Grant.objects.get(pk=others.pk).status == GrantStatus.LICENSE_REQUIRED


def test_researchers_cannot_use_the_request_pages_grant_actions(researcher_client, approved):
    grant = approved.grants.first()

    response = researcher_client.post(_grant_action_url(approved, grant, "revoke"), {"reason": "Mine."})

    assert response.status_code == 403
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.LICENSE_REQUIRED


# --- The grants page -----------------------------------------------------------------------------


def test_the_grants_table_shows_the_researchers_name_and_the_actions_in_view(reviewer_client, reviewer, approved):
    by_hand = grant_create(
        user=UserFactory(email="grace@navy.example.mil", first_name="Grace", last_name="Hopper"),
        variant=ModelVariant.objects.get(slug="llama-7b"),
        actor=reviewer,
        reason="Co-author.",
    )

    page = _text(reviewer_client.get(reverse("review-grants")))

    rows = dict(re.findall(r'<tr data-testid="grant-row" data-grant="(\d+)">(.*?)</tr>', page, re.S))
    ada = rows[str(approved.grants.first().pk)]
    assert re.search(r'data-testid="grant-researcher">Ada Lovelace<span class="sub">ada@uni.example.edu</span>', ada)
    assert "Grace Hopper" in rows[str(by_hand.pk)]
    assert ">Suspend…</summary>" in ada and ">Revoke…</summary>" in ada


# --- Statistics ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("most", "ticks"),
    [
        (0, ["0", "1"]),
        (1, ["0", "1"]),
        (3, ["0", "1", "2", "3", "4", "5"]),
        (7, ["0", "5", "10"]),
        (30, ["0", "25", "50"]),
    ],
)
def test_the_weekly_chart_counts_requests_in_whole_numbers(most, ticks):
    weeks = [WeekOutcomes(week=dt.date(2026, 11, 2)), WeekOutcomes(week=dt.date(2026, 11, 9))]
    weeks[1].counts["approved"] = most

    chart = weekly_outcomes_chart(weeks)

    assert [tick["value"] for tick in chart["ticks"]] == ticks
    top, bottom = chart["ticks"][-1]["y"], chart["ticks"][0]["y"]
    assert bottom == chart["axis_y"] and top < bottom


def test_the_statistics_page_shows_no_fractional_request_ticks(reviewer_client, pending):
    page = _text(reviewer_client.get(reverse("review-stats")))

    ticks = re.findall(r'<text class="tick"[^>]*>([^<]*)</text>', page)
    weekly = [tick for tick in ticks if not tick.strip().endswith(("min", "h", "d"))]
    assert weekly == ["0", "1"]
