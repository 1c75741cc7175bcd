"""The applicant's pages: apply, the list and status page of their requests, edit and
resubmit, withdraw, and the links into the workflow from the catalog. (The grant and
license pages are tested in tests/access/grants/test_pages.py.)

Every view gets its happy path, 405 for a wrong method, 404 for an outsider and
the side effect it must leave (the rows and audit events of its service)."""

from __future__ import annotations

import html
import re

import pytest

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.catalog.services import license_publish
from access.grants.models import Grant, LicenseAcceptance
from access.requests.application import ApplicationData
from access.requests.models import AccessRequest, MessageKind, RequestStatus, ScreeningFlag, ScreeningFlagCode
from access.requests.selectors import estimated_decision_at
from access.requests.services import access_request_submit
from access.review.services import (
    access_request_approve,
    access_request_note_add,
    access_request_reject,
    access_request_request_info,
)
from tests.factories import UserFactory

USE_CASE = (
    "We study how instruction tuning changes factual recall in mid-sized language models. We will fine-tune "
    "the 7B model on public question-answering sets, measure recall on held-out entities, and compare with "
    "the base weights. The work needs the weights because it inspects intermediate activations layer by "
    "layer, which no hosted API exposes. Results will be published as an open-access paper with our code."
)
LINKS = ["https://arxiv.org/abs/2302.13971", "https://orcid.org/0000-0002-1825-0097"]


def _application(**overrides) -> ApplicationData:
    fields = {
        "full_name": "Ada Lovelace",
        "affiliation": "University of Example",
        "organization_type": "academic",
        "position": "Research fellow",
        "country": "FR",
        "use_case": USE_CASE,
        "publications": LINKS,
    }
    return ApplicationData(**{**fields, **overrides})


def _form(license_version, **overrides) -> dict:
    data = {
        "variants": ["llama-7b"],
        "full_name": "Ada Lovelace",
        "affiliation": "University of Example",
        "organization_type": "academic",
        "position": "Research fellow",
        "country": "FR",
        "use_case": USE_CASE,
        "publications": "\n".join(LINKS),
        "license_id": license_version.pk,
        "agree": "on",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def _submitted(applicant, slugs=("llama-7b",), **overrides) -> AccessRequest:
    variants = list(ModelVariant.objects.filter(slug__in=slugs))
    family = variants[0].family
    return access_request_submit(
        applicant=applicant,
        variants=variants,
        data=_application(**overrides),
        license_version=license_current(family),
    )


def _info_requested(applicant, reviewer, message="Please add a link to your lab's page.") -> AccessRequest:
    access_request = _submitted(applicant)
    return access_request_request_info(access_request=access_request, reviewer=reviewer, message=message)


def _page(response) -> str:
    return html.unescape(response.content.decode())


def _text(response) -> str:
    """What a reader sees: the page without tags, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", _page(response)).split()).replace(" .", ".")


def _messages(response) -> str:
    # All of them: the login's "Successfully signed in" may still be waiting to be shown.
    return "\n".join(str(message) for message in response.context["messages"])


@pytest.fixture
def outsider_client(client, outsider, login_with_password):
    login_with_password(client, outsider)
    return client


# --- apply ---------------------------------------------------------------------------


def test_apply_page_shows_the_form_with_the_current_license_and_the_model_asked_for(researcher_client, license_v1):
    response = researcher_client.get("/apply/?variant=llama-7b")

    assert response.status_code == 200
    page = _page(response)
    assert f'<input type="hidden" name="license_id" value="{license_v1.pk}">' in page
    assert "LLaMA Non-Commercial Research License, version 1.0, and agree to its terms" in page
    assert "1.1 You may download, store, run, study and modify the Materials" in page  # the text itself
    assert '<input type="checkbox" name="variants" value="llama-7b" checked>' in page
    assert '<input type="checkbox" name="variants" value="llama-13b">' in page
    assert "needs 2 reviewers" in page  # LLaMA 65B's two-person rule is shown before applying
    assert "At least 150 characters" in page
    assert '<option value="FR">France</option>' in page


def test_apply_page_starts_from_the_details_of_the_last_request(researcher, researcher_client, license_v1):
    _submitted(researcher, affiliation="Institute of Remembered Details")

    response = researcher_client.get("/apply/?variant=llama-13b")

    assert 'value="Institute of Remembered Details"' in _page(response)
    assert response.context["form"]["variants"].value() == ["llama-13b"]


def test_apply_page_marks_models_already_requested_and_does_not_offer_them(researcher, researcher_client, license_v1):
    _submitted(researcher)

    page = _page(researcher_client.get("/apply/"))

    assert '<input type="checkbox" name="variants" value="llama-7b" disabled>' in page
    assert "Request under review" in page


def test_apply_needs_a_login(client, license_v1):
    response = client.get("/apply/?variant=llama-7b")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_apply_answers_405_to_put(researcher_client, license_v1):
    assert researcher_client.put("/apply/").status_code == 405


def test_submitting_creates_the_request_and_shows_its_reference_on_the_status_page(
    researcher, researcher_client, license_v1
):
    response = researcher_client.post("/apply/", _form(license_v1), HTTP_USER_AGENT="pytest-browser/1.0")

    access_request = AccessRequest.objects.get(applicant=researcher)
    assert response.status_code == 302
    assert response["Location"] == f"/requests/{access_request.pk}/"
    assert access_request.status == RequestStatus.SUBMITTED
    assert [rv.variant.slug for rv in access_request.requested_variants.all()] == ["llama-7b"]
    assert access_request.publications == LINKS
    assert access_request.country.code == "FR"
    assert access_request.license == license_v1
    assert access_request.submit_ip == "127.0.0.1"
    event = AuditEvent.objects.get(action="access_request.submitted", target_id=str(access_request.pk))
    assert event.actor == researcher
    assert event.user_agent == "pytest-browser/1.0"

    status_page = researcher_client.get(response["Location"])
    assert f"Your request {access_request.reference} is submitted." in _messages(status_page)
    assert access_request.reference in _page(status_page)


def test_submitting_screens_the_request_but_the_applicant_never_sees_the_flags(client, license_v1, login_with_password):
    applicant = UserFactory(email="someone@gmail.com")
    login_with_password(client, applicant)
    short_use_case = USE_CASE[:200]

    response = client.post("/apply/", _form(license_v1, use_case=short_use_case), follow=True)

    access_request = AccessRequest.objects.get(applicant=applicant)
    codes = set(ScreeningFlag.objects.filter(request=access_request).values_list("code", flat=True))
    # The form accepted the 200 characters, so they are not flagged as short.
    assert codes == {ScreeningFlagCode.FREE_MAIL_DOMAIN}
    event = AuditEvent.objects.get(action="access_request.submitted", target_id=str(access_request.pk))
    assert sorted(event.details["flags"]) == sorted(codes)
    page = _page(response)
    for flag in ScreeningFlag.objects.filter(request=access_request):
        assert flag.reason not in page
    assert "free-mail" not in page.lower()


def test_a_failed_submit_keeps_everything_typed_and_marks_the_fields(researcher, researcher_client, license_v1):
    posted = _form(
        license_v1,
        variants=["llama-7b", "llama-13b"],
        country="",
        agree=None,
        use_case="A very short use case.",
        publications="https://example.org/paper\nnot a link",
    )

    response = researcher_client.post("/apply/", posted)

    assert response.status_code == 400
    form = response.context["form"]
    assert "country" in form.errors
    assert "agree" in form.errors
    page = _page(response)
    assert "Your request is not sent yet" in page
    assert 'value="Ada Lovelace"' in page
    assert 'value="University of Example"' in page
    assert '<option value="academic" selected>Academic</option>' in page
    assert "A very short use case." in page
    assert "https://example.org/paper\nnot a link" in page
    assert '<input type="checkbox" name="variants" value="llama-13b" checked>' in page
    assert not AccessRequest.objects.exists()


def test_the_services_rules_show_as_field_errors_with_the_input_kept(researcher_client, license_v1):
    response = researcher_client.post("/apply/", _form(license_v1, use_case="Too short to judge."))

    assert response.status_code == 400
    assert "Describe your research in at least 150 characters" in response.context["form"].errors["use_case"][0]
    page = _page(response)
    assert "Too short to judge." in page
    assert '<input type="checkbox" name="agree" id="id_agree" checked>' in page

    response = researcher_client.post("/apply/", _form(license_v1, publications="https://example.org/ok\nftp://nope"))

    assert response.status_code == 400
    assert "“ftp://nope” is not a web address" in response.context["form"].errors["publications"][0]
    assert "https://example.org/ok\nftp://nope" in _page(response)
    assert not AccessRequest.objects.exists()


def test_a_license_changed_between_reading_and_submitting_is_shown_and_must_be_agreed_again(
    researcher, researcher_client, llama_catalog, license_v1
):
    researcher_client.get("/apply/?variant=llama-7b")
    license_v2 = license_publish(family=llama_catalog, version="2.0", title="LLaMA License", text="# New terms\n")

    response = researcher_client.post("/apply/", _form(license_v1))

    assert response.status_code == 400
    assert "The license has changed since you read it" in response.context["form"].errors["license_id"][0]
    page = _page(response)
    assert f'<input type="hidden" name="license_id" value="{license_v2.pk}">' in page
    assert "I have read the LLaMA License, version 2.0, and agree to its terms." in page
    # Agreed to 1.0, not to 2.0: unticked, and marked with the license's error.
    unticked = (
        '<input type="checkbox" name="agree" id="id_agree" aria-invalid="true" aria-describedby="id_license_id_error">'
    )
    assert unticked in page
    assert 'value="Ada Lovelace"' in page
    assert not AccessRequest.objects.exists()

    # Agreeing to the version now shown goes through.
    assert researcher_client.post("/apply/", _form(license_v2)).status_code == 302
    assert AccessRequest.objects.get(applicant=researcher).license == license_v2


def test_a_second_open_request_for_the_same_model_is_refused_with_the_first_ones_reference(
    researcher, researcher_client, license_v1
):
    first = _submitted(researcher)

    response = researcher_client.post("/apply/", _form(license_v1, variants=["llama-13b", "llama-7b"]))

    assert response.status_code == 400
    error = response.context["form"].errors["variants"][0]
    assert f"You already have an open request ({first.reference}) for LLaMA 7B" in error
    assert AccessRequest.objects.filter(applicant=researcher).count() == 1


def test_unknown_models_are_a_field_error(researcher_client, license_v1):
    response = researcher_client.post("/apply/", _form(license_v1, variants=["llama-999b"]))

    assert response.status_code == 400
    assert "variants" in response.context["form"].errors


# --- the list of requests ------------------------------------------------------------


def test_requests_page_lists_the_users_own_requests_only(researcher, outsider, researcher_client, license_v1):
    mine = _submitted(researcher, slugs=("llama-7b", "llama-13b"))
    theirs = _submitted(outsider)

    response = researcher_client.get("/requests/")

    assert response.status_code == 200
    page = _page(response)
    assert mine.reference in page
    assert "LLaMA 7B, LLaMA 13B" in page
    assert 'class="status status-submitted"' in page
    assert theirs.reference not in page


def test_requests_page_invites_a_first_application(researcher_client, license_v1):
    assert "You have not applied for access yet." in _page(researcher_client.get("/requests/"))


def test_requests_page_answers_405_to_post(researcher_client):
    assert researcher_client.post("/requests/").status_code == 405


def test_requests_page_needs_a_login(client):
    assert client.get("/requests/").status_code == 302


# --- the status page -----------------------------------------------------------------


def test_status_page_shows_the_queue_position_and_when_a_decision_is_expected(
    researcher, outsider, researcher_client, license_v1
):
    _submitted(outsider)  # ahead in the queue
    access_request = _submitted(researcher)

    response = researcher_client.get(f"/requests/{access_request.pk}/")

    assert response.status_code == 200
    page = _page(response)
    expected = estimated_decision_at(access_request).strftime("%-d %B %Y")
    assert "Your request is number 2 in the queue." in page
    assert f"A reviewer will look at it; we expect a decision by {expected}." in _text(response)
    assert "Submitted" in [entry["label"] for entry in response.context["history"]]
    assert "Withdraw this request" in page
    assert "Edit &amp; resubmit" not in response.content.decode()


def test_status_page_shows_the_thread_and_history_but_never_notes_or_flags(
    client, reviewer, license_v1, login_with_password
):
    applicant = UserFactory(email="someone@gmail.com")
    access_request = _submitted(applicant)
    access_request_note_add(access_request=access_request, author=reviewer, text="PRIVATE: looks like a student")
    access_request_request_info(access_request=access_request, reviewer=reviewer, message="Which lab do you work in?")
    login_with_password(client, applicant)

    response = client.get(f"/requests/{access_request.pk}/")

    page = _page(response)
    assert "Which lab do you work in?" in page
    assert "The reviewers need more information from you." in page
    assert "More information requested" in [entry["label"] for entry in response.context["history"]]
    assert f'href="/requests/{access_request.pk}/edit/"' in page
    assert "PRIVATE" not in page
    assert "free-mail" not in page.lower()
    assert reviewer.email not in page  # reviewers sign as "Reviewer"


def test_status_page_of_a_rejected_request_gives_the_reason(researcher, researcher_client, reviewer, license_v1):
    access_request = _submitted(researcher)
    access_request_reject(
        access_request=access_request, reviewer=reviewer, reason="The use case is commercial; we cannot approve it."
    )

    page = _page(researcher_client.get(f"/requests/{access_request.pk}/"))

    assert "Not approved." in page
    assert 'data-testid="rejection-reason"' in page
    assert "The use case is commercial; we cannot approve it." in page
    assert 'class="outcome outcome-declined" data-testid="outcome">Not approved' in page
    assert "Withdraw this request" not in page


def test_status_page_says_when_a_second_reviewer_must_approve(researcher, researcher_client, reviewer, license_v1):
    access_request = _submitted(researcher, slugs=("llama-65b",))
    access_request_approve(access_request=access_request, reviewer=reviewer)

    page = _text(researcher_client.get(f"/requests/{access_request.pk}/"))

    assert "One reviewer has approved it." in page
    assert "LLaMA 65B needs 1 more approval by a different reviewer" in page


def test_status_page_of_an_approved_request_points_to_the_license(researcher, researcher_client, reviewer, license_v1):
    access_request = _submitted(researcher)
    access_request_approve(access_request=access_request, reviewer=reviewer)

    page = _page(researcher_client.get(f"/requests/{access_request.pk}/"))

    assert "Approved." in page
    assert 'class="outcome outcome-approved" data-testid="outcome">Approved: accept the license' in page
    assert 'href="/grants/"' in page


def test_status_page_answers_405_to_post(researcher, researcher_client, license_v1):
    access_request = _submitted(researcher)

    assert researcher_client.post(f"/requests/{access_request.pk}/").status_code == 405


# --- edit and resubmit ---------------------------------------------------------------


def test_edit_page_shows_the_question_and_the_application_to_change(
    researcher, researcher_client, reviewer, license_v1
):
    access_request = _info_requested(researcher, reviewer)

    response = researcher_client.get(f"/requests/{access_request.pk}/edit/")

    assert response.status_code == 200
    page = _page(response)
    assert "Please add a link to your lab's page." in page
    assert 'value="University of Example"' in page
    assert "https://arxiv.org/abs/2302.13971\nhttps://orcid.org/0000-0002-1825-0097" in page


def test_saving_the_edit_resubmits_with_the_reply_in_one_go(researcher, researcher_client, reviewer, license_v1):
    access_request = _info_requested(researcher, reviewer)
    posted = _form(license_v1, affiliation="Example Lab, University of Example", reply="Added the lab's page.")
    posted["publications"] += "\nhttps://lab.example.edu/"

    response = researcher_client.post(f"/requests/{access_request.pk}/edit/", posted, follow=True)

    assert response.redirect_chain == [(f"/requests/{access_request.pk}/", 302)]
    assert "back with the reviewers" in _messages(response)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.SUBMITTED
    assert access_request.review_round == 2
    assert access_request.affiliation == "Example Lab, University of Example"
    assert access_request.publications == [*LINKS, "https://lab.example.edu/"]
    reply = access_request.messages.get(kind=MessageKind.APPLICANT_REPLY)
    assert reply.text == "Added the lab's page." and reply.author == researcher
    edited = AuditEvent.objects.get(action="access_request.edited", target_id=str(access_request.pk))
    assert edited.details["fields"] == ["affiliation", "publications"]
    assert AuditEvent.objects.filter(action="access_request.resubmitted", target_id=str(access_request.pk)).count() == 1
    assert "Added the lab's page." in _page(response)


def test_an_edit_that_names_an_embargoed_country_says_the_request_was_not_approved(
    researcher, researcher_client, reviewer, license_v1
):
    access_request = _info_requested(researcher, reviewer)
    posted = _form(license_v1, country="SY", reply="We moved.")

    response = researcher_client.post(f"/requests/{access_request.pk}/edit/", posted, follow=True)

    assert response.redirect_chain == [(f"/requests/{access_request.pk}/", 302)]
    assert "was not approved" in _messages(response)
    assert "back with the reviewers" not in _messages(response)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.REJECTED


def test_a_failed_edit_keeps_the_input_and_changes_nothing(researcher, researcher_client, reviewer, license_v1):
    access_request = _info_requested(researcher, reviewer)
    posted = _form(license_v1, affiliation="New Affiliation", use_case="Short now.", reply="See above.")

    response = researcher_client.post(f"/requests/{access_request.pk}/edit/", posted)

    assert response.status_code == 400
    assert "use_case" in response.context["form"].errors
    page = _page(response)
    assert 'value="New Affiliation"' in page and "See above." in page
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.INFO_REQUESTED
    assert access_request.affiliation == "University of Example"
    assert not AuditEvent.objects.filter(action="access_request.edited").exists()


def test_edit_is_offered_only_while_more_information_is_requested(researcher, researcher_client, license_v1):
    access_request = _submitted(researcher)

    response = researcher_client.get(f"/requests/{access_request.pk}/edit/", follow=True)

    assert response.redirect_chain == [(f"/requests/{access_request.pk}/", 302)]
    assert "you can edit a request only while the reviewers ask for more information" in _messages(response)


def test_an_edit_posted_after_the_state_changed_is_refused_with_a_message(researcher, researcher_client, license_v1):
    access_request = _submitted(researcher)

    response = researcher_client.post(
        f"/requests/{access_request.pk}/edit/", _form(license_v1, affiliation="Changed"), follow=True
    )

    assert response.redirect_chain == [(f"/requests/{access_request.pk}/", 302)]
    assert "You can edit a request only while the reviewers ask for more information" in _messages(response)
    access_request.refresh_from_db()
    assert access_request.affiliation == "University of Example"
    assert not AuditEvent.objects.filter(action="access_request.edited").exists()


def test_edit_answers_405_to_put(researcher, researcher_client, reviewer, license_v1):
    access_request = _info_requested(researcher, reviewer)

    assert researcher_client.put(f"/requests/{access_request.pk}/edit/").status_code == 405


# --- withdraw ------------------------------------------------------------------------


def test_withdrawing_an_open_request(researcher, researcher_client, license_v1):
    access_request = _submitted(researcher)

    response = researcher_client.post(f"/requests/{access_request.pk}/withdraw/", {"confirm": "on"}, follow=True)

    assert response.redirect_chain == [(f"/requests/{access_request.pk}/", 302)]
    assert f"You withdrew {access_request.reference}" in _messages(response)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.WITHDRAWN
    assert AuditEvent.objects.filter(action="access_request.withdrawn", target_id=str(access_request.pk)).count() == 1
    assert "You withdrew this request." in _page(response)


def test_withdraw_without_confirmation_changes_nothing(researcher, researcher_client, license_v1):
    access_request = _submitted(researcher)

    response = researcher_client.post(f"/requests/{access_request.pk}/withdraw/", follow=True)

    assert "confirm that you want to withdraw" in _messages(response)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.SUBMITTED


def test_withdrawing_a_decided_request_says_why_not(researcher, researcher_client, reviewer, license_v1):
    access_request = _submitted(researcher)
    access_request_reject(access_request=access_request, reviewer=reviewer, reason="Not a research use.")

    response = researcher_client.post(f"/requests/{access_request.pk}/withdraw/", {"confirm": "on"}, follow=True)

    assert "already rejected; there is nothing to withdraw" in _messages(response)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.REJECTED


def test_withdraw_answers_405_to_get(researcher, researcher_client, license_v1):
    access_request = _submitted(researcher)

    assert researcher_client.get(f"/requests/{access_request.pk}/withdraw/").status_code == 405


# --- outsiders -----------------------------------------------------------------------


def test_an_outsider_gets_404_on_every_page_of_someone_elses_request_and_grant(
    researcher, outsider_client, reviewer, license_v1
):
    access_request = _info_requested(researcher, reviewer)
    other = _submitted(researcher, slugs=("llama-13b",))
    access_request_approve(access_request=other, reviewer=reviewer)
    grant = Grant.objects.get(request=other)

    attempts = [
        ("get", f"/requests/{access_request.pk}/", {}),
        ("get", f"/requests/{access_request.pk}/edit/", {}),
        ("post", f"/requests/{access_request.pk}/edit/", _form(license_v1, affiliation="Hijacked")),
        ("post", f"/requests/{access_request.pk}/withdraw/", {"confirm": "on"}),
        ("get", f"/grants/{grant.pk}/license/", {}),
        ("post", f"/grants/{grant.pk}/license/", {"license_id": license_v1.pk, "accept": "on"}),
    ]
    for method, url, data in attempts:
        response = getattr(outsider_client, method)(url, data)
        assert response.status_code == 404, (method, url)
        assert access_request.reference not in _page(response)

    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.INFO_REQUESTED
    assert access_request.affiliation == "University of Example"
    assert not LicenseAcceptance.objects.exists()
    assert access_request.reference not in _page(outsider_client.get("/requests/"))
    assert "LLaMA 13B" not in _page(outsider_client.get("/grants/"))


# --- links into the workflow from the catalog -----------------------------------------


def test_catalog_and_model_page_offer_to_apply_or_lead_to_the_request(researcher, researcher_client, license_v1):
    _submitted(researcher)

    catalog = _page(researcher_client.get("/"))
    assert 'href="/apply/?variant=llama-13b"' in catalog
    assert 'href="/apply/?variant=llama-7b"' not in catalog
    assert 'data-testid="nav-requests"' in catalog

    model_page = _page(researcher_client.get("/models/llama-7b/"))
    assert '<a href="/requests/">Your request</a>' in model_page
    assert 'href="/apply/?variant=llama-13b"' in _page(researcher_client.get("/models/llama-13b/"))


def test_apply_page_says_so_when_no_model_can_be_requested(researcher_client, db):
    from tests.factories import ModelVariantFactory

    variant = ModelVariantFactory(name="Unlicensed 1B")

    response = researcher_client.get(f"/apply/?variant={variant.slug}")

    assert response.status_code == 200
    assert f"{variant.family.name} has no license in force yet" in _text(response)
    assert 'name="agree"' not in _page(response)


@pytest.mark.parametrize(
    "url",
    ["/apply/", "/requests/", "/requests/1/", "/requests/1/edit/", "/grants/", "/grants/1/license/"],
)
def test_every_applicant_page_asks_an_anonymous_visitor_to_log_in(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
