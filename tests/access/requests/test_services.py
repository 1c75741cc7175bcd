"""The applicant's side of the workflow, through its services: submit (validation,
one open request per variant, screening flags), edit, resubmit (with the policies run
again on the edited application), withdraw, and the queue position and estimated
decision date. The policies run on submission are tested in tests/access/review/test_policies.py.

``submit``, ``application``, ``new_audit_actions`` and the other helpers shared by the
workflow's tests are fixtures of tests/access/conftest.py."""

from __future__ import annotations

import datetime as dt
import re
import threading

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone

from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.catalog.services import license_publish
from access.grants.models import Grant, GrantStatus
from access.grants.services import grant_create, grant_expire, grant_revoke
from access.requests.models import (
    AccessRequest,
    MessageKind,
    RequestedVariant,
    RequestStatus,
    ScreeningFlag,
    ScreeningFlagCode,
    VariantDecision,
)
from access.requests.selectors import decisions_in_window, decisions_per_day, estimated_decision_at, queue_position
from access.requests.services import (
    access_request_edit,
    access_request_resubmit,
    access_request_submit,
    access_request_withdraw,
)
from access.review.models import DecisionKind
from access.review.services import (
    EMBARGO_REASON,
    POLICY_EMBARGO_REJECT,
    access_request_approve,
    access_request_reject,
    access_request_request_info,
)
from portal.errors import StateConflict
from tests.factories import ModelFamilyFactory, ModelVariantFactory, UserFactory


def flag_codes(access_request) -> list[str]:
    return sorted(access_request.flags.values_list("code", flat=True))


# --- Submit: validation ---------------------------------------------------------------------------


def _refused(callable_, field: str) -> list[str]:
    with pytest.raises(ValidationError) as excinfo:
        callable_()
    assert field in excinfo.value.message_dict, excinfo.value.message_dict
    return excinfo.value.message_dict[field]


def test_a_use_case_below_the_minimum_length_is_refused_and_says_how_long_it_is(
    researcher, llama_catalog, settings, submit
):
    settings.REQUEST_USE_CASE_MIN_CHARS = 150

    messages = _refused(lambda: submit(researcher, use_case="Research."), "use_case")

    assert "at least 150 characters" in messages[0]
    assert "you wrote 9" in messages[0]


def test_the_use_case_length_is_counted_without_surrounding_spaces(researcher, llama_catalog, settings, submit):
    settings.REQUEST_USE_CASE_MIN_CHARS = 20

    _refused(lambda: submit(researcher, use_case="   " + "x" * 19 + "   \n"), "use_case")


def test_publications_that_are_not_web_addresses_are_refused_each_by_name(researcher, llama_catalog, submit):
    messages = _refused(
        lambda: submit(
            researcher,
            publications=[
                "https://ok.example.org/paper",
                "not a link",
                "ftp://files.example.org/x",
                "javascript:alert(1)",
            ],
        ),
        "publications",
    )

    assert len(messages) == 3
    assert "“not a link” is not a web address" in messages[0]
    assert "ftp://files.example.org/x" in messages[1]
    assert "javascript:alert(1)" in messages[2]


def test_blank_publication_lines_are_dropped_and_links_kept_trimmed(researcher, llama_catalog, submit):
    access_request = submit(researcher, publications=["", "  https://arxiv.org/abs/2302.13971  ", "   "])

    assert access_request.publications == ["https://arxiv.org/abs/2302.13971"]


def test_more_publications_than_the_limit_are_refused(researcher, llama_catalog, settings, submit):
    settings.REQUEST_PUBLICATIONS_MAX = 2

    messages = _refused(
        lambda: submit(researcher, publications=[f"https://example.org/{n}" for n in range(3)]), "publications"
    )

    assert messages == ["Give at most 2 links."]


def test_a_request_without_variants_is_refused(researcher, llama_catalog, application):
    license_version = license_current(llama_catalog)

    messages = _refused(
        lambda: access_request_submit(
            applicant=researcher, variants=[], data=application(), license_version=license_version
        ),
        "variants",
    )

    assert messages == ["Choose at least one model."]


def test_variants_of_two_families_cannot_be_requested_together(researcher, llama_catalog, llama, application):
    other = ModelVariantFactory(family=ModelFamilyFactory(slug="other", name="Other"))
    license_publish(family=other.family, version="1.0", title="Other license", text="Research only.")
    variants = [*llama("llama-7b"), other]

    messages = _refused(
        lambda: access_request_submit(
            applicant=researcher,
            variants=variants,
            data=application(),
            license_version=license_current(llama_catalog),
        ),
        "variants",
    )

    assert messages == ["Request models of one family at a time."]


def test_agreeing_to_an_outdated_license_is_refused_and_names_the_current_version(researcher, llama_catalog, submit):
    old = license_current(llama_catalog)
    new = license_publish(family=llama_catalog, version="2.0", title="License", text="New terms.")

    messages = _refused(lambda: submit(researcher, license_version=old), "license_id")

    assert f"the current version is 2.0 (id {new.pk})" in messages[0]


def test_agreeing_to_a_license_not_yet_in_force_is_refused(researcher, llama_catalog, submit):
    future = license_publish(
        family=llama_catalog,
        version="2.0",
        title="License",
        text="New terms.",
        effective_at=timezone.now() + dt.timedelta(days=7),
    )

    messages = _refused(lambda: submit(researcher, license_version=future), "license_id")

    assert "the current version is 1.0" in messages[0]


def test_a_family_without_a_license_cannot_be_requested(researcher, db, application):
    variant = ModelVariantFactory()

    messages = _refused(
        lambda: access_request_submit(
            applicant=researcher, variants=[variant], data=application(), license_version=None
        ),
        "variants",
    )

    assert "has no license yet" in messages[0]


@pytest.mark.parametrize(
    ("field", "value"),
    [("country", "XX"), ("organization_type", "company"), ("full_name", ""), ("affiliation", "   ")],
)
def test_an_invalid_field_is_refused_with_an_error_on_that_field(researcher, llama_catalog, field, value, submit):
    _refused(lambda: submit(researcher, **{field: value}), field)


def test_a_refused_submit_leaves_no_request_and_no_audit_event(researcher, llama_catalog, new_audit_actions, submit):
    with new_audit_actions() as actions, pytest.raises(ValidationError):
        submit(researcher, publications=["nope"])

    assert actions == []
    assert not AccessRequest.objects.exists()
    assert not RequestedVariant.objects.exists()


def test_the_country_code_is_stored_in_upper_case(researcher, llama_catalog, submit):
    assert submit(researcher, country="gb").country.code == "GB"


# --- Submit: what it stores -----------------------------------------------------------------------


def test_a_submitted_request_has_a_short_readable_reference(researcher, outsider, llama_catalog, submit):
    first = submit(researcher)
    second = submit(outsider, full_name="Eve Example", affiliation="Elsewhere Inc")

    for access_request in (first, second):
        # Crockford's alphabet: no I, L, O or U to misread on the phone.
        assert re.fullmatch(r"AR-[0-9A-HJKMNP-TV-Z]{6}", access_request.reference)
    assert first.reference != second.reference


def test_submitting_stores_the_application_the_variants_the_license_and_the_ip(
    researcher, llama_catalog, submit, applicant_ip, decisions_by_slug
):
    access_request = submit(researcher, "llama-7b", "llama-13b")

    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.SUBMITTED
    assert access_request.applicant == researcher
    assert access_request.full_name == "Ada Lovelace"
    assert access_request.license == license_current(llama_catalog)
    assert access_request.submit_ip == applicant_ip
    assert access_request.review_round == 1
    assert decisions_by_slug(access_request) == {"llama-7b": "pending", "llama-13b": "pending"}


def test_a_request_submitted_outside_a_web_request_has_no_ip(researcher, llama_catalog, submit):
    assert submit(researcher, ip=None).submit_ip is None


def test_a_variant_listed_twice_is_requested_once(researcher, llama_catalog, llama, application):
    variant = llama("llama-7b")[0]

    access_request = access_request_submit(
        applicant=researcher,
        variants=[variant, variant],
        data=application(),
        license_version=license_current(llama_catalog),
    )

    assert access_request.requested_variants.count() == 1


def test_a_clean_submit_leaves_exactly_one_submitted_audit_event(
    researcher, llama_catalog, new_audit_actions, submit, audit_event_for, applicant_ip, applicant_user_agent
):
    with new_audit_actions() as actions:
        access_request = submit(researcher, "llama-7b", "llama-13b")

    assert actions == ["access_request.submitted"]
    event = audit_event_for(access_request, "access_request.submitted")
    assert event.actor == researcher
    assert event.ip_address == applicant_ip
    assert event.user_agent == applicant_user_agent
    assert event.details == {"variants": ["llama-7b", "llama-13b"], "license": "1.0", "flags": []}


# --- Submit: one open request per user and variant ------------------------------------------------


def test_a_second_request_for_a_variant_with_an_open_request_is_refused_and_names_the_first(
    researcher, llama_catalog, submit, new_audit_actions
):
    first = submit(researcher, "llama-7b")

    with new_audit_actions() as actions:
        messages = _refused(lambda: submit(researcher, "llama-13b", "llama-7b"), "variants")

    assert first.reference in messages[0]
    assert "LLaMA 7B" in messages[0]
    assert actions == []
    assert AccessRequest.objects.filter(applicant=researcher).count() == 1


@pytest.mark.parametrize("status", [RequestStatus.IN_REVIEW, RequestStatus.INFO_REQUESTED])
def test_a_request_in_review_or_waiting_for_information_is_still_open(researcher, llama_catalog, status, submit):
    first = submit(researcher, "llama-7b")
    AccessRequest.objects.filter(pk=first.pk).update(status=status)

    _refused(lambda: submit(researcher, "llama-7b"), "variants")


def test_another_variant_may_be_requested_while_one_request_is_open(researcher, llama_catalog, submit):
    submit(researcher, "llama-7b")

    assert submit(researcher, "llama-13b").status == RequestStatus.SUBMITTED


def test_another_applicant_may_request_the_same_variant(researcher, outsider, llama_catalog, submit):
    submit(researcher, "llama-7b")

    assert submit(outsider, "llama-7b", full_name="Eve Example", affiliation="Elsewhere").pk


def test_after_withdrawing_the_same_variant_may_be_requested_again(researcher, llama_catalog, submit):
    first = submit(researcher, "llama-7b")
    access_request_withdraw(access_request=first, applicant=researcher)

    assert submit(researcher, "llama-7b").status == RequestStatus.SUBMITTED


def test_after_a_rejection_the_same_variant_may_be_requested_again(researcher, reviewer, llama_catalog, submit):
    first = submit(researcher, "llama-7b")
    access_request_reject(access_request=first, reviewer=reviewer, reason="Tell us more about the project.")

    assert submit(researcher, "llama-7b").status == RequestStatus.SUBMITTED


@pytest.mark.parametrize("status", [GrantStatus.LICENSE_REQUIRED, GrantStatus.ACTIVE, GrantStatus.SUSPENDED])
def test_a_user_with_a_live_grant_cannot_request_that_variant_again(
    researcher, reviewer, llama_catalog, status, llama, submit
):
    grant = grant_create(user=researcher, variant=llama("llama-7b")[0], actor=reviewer, reason="Collaborator.")
    Grant.objects.filter(pk=grant.pk).update(status=status)

    messages = _refused(lambda: submit(researcher, "llama-7b"), "variants")

    assert messages == ["You already have access to LLaMA 7B."]


def test_a_user_whose_grant_expired_may_apply_again(researcher, reviewer, llama_catalog, llama, submit):
    grant = grant_create(user=researcher, variant=llama("llama-7b")[0], actor=reviewer, reason="Collaborator.")
    grant_expire(grant=grant)

    assert submit(researcher, "llama-7b").status == RequestStatus.SUBMITTED


def test_revocation_that_blocks_new_requests_refuses_every_later_request(
    researcher, reviewer, llama_catalog, llama, submit
):
    grant = grant_create(user=researcher, variant=llama("llama-7b")[0], actor=reviewer, reason="Collaborator.")
    grant_revoke(grant=grant, actor=reviewer, reason="Shared the weights.", block_new_requests=True)

    for slug in ("llama-7b", "llama-13b"):
        messages = _refused(lambda slug=slug: submit(researcher, slug), "variants")
        assert "new requests are blocked" in messages[0]
    assert not AccessRequest.objects.filter(applicant=researcher).exists()


def test_revocation_without_blocking_lets_the_user_apply_again_with_a_flag(
    researcher, reviewer, llama_catalog, llama, submit
):
    grant = grant_create(user=researcher, variant=llama("llama-7b")[0], actor=reviewer, reason="Collaborator.")
    grant_revoke(grant=grant, actor=reviewer, reason="Left the university.")

    access_request = submit(researcher, "llama-7b")

    assert access_request.status == RequestStatus.SUBMITTED
    assert flag_codes(access_request) == [ScreeningFlagCode.PREVIOUSLY_REVOKED]


def test_submitting_the_same_application_twice_creates_one_request(researcher, llama_catalog, submit):
    submit(researcher, "llama-7b")

    with pytest.raises(ValidationError):
        submit(researcher, "llama-7b")

    assert RequestedVariant.objects.filter(request__applicant=researcher, variant__slug="llama-7b").count() == 1


@pytest.mark.postgres
def test_two_concurrent_submits_for_the_same_variant_create_one_request(
    transactional_db, researcher, llama_catalog, submit
):
    """The service locks the applicant's row, so the second submit sees the first one's request."""
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt():
        try:
            barrier.wait(timeout=10)
            with transaction.atomic():
                submit(researcher, "llama-7b")
            outcomes.append("created")
        except ValidationError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["created", "refused"]
    assert AccessRequest.objects.filter(applicant=researcher).count() == 1


# --- Screening ------------------------------------------------------------------------------------


def test_a_clean_academic_applicant_raises_no_flag(researcher, llama_catalog, new_audit_actions, submit):
    with new_audit_actions() as actions:
        access_request = submit(researcher)

    assert flag_codes(access_request) == []
    assert "access_request.flagged" not in actions


def test_a_free_mail_address_is_flagged_with_its_domain(llama_catalog, submit):
    applicant = UserFactory(email="ada.lovelace@Gmail.com")

    access_request = submit(applicant)

    flag = access_request.flags.get()
    assert flag.code == ScreeningFlagCode.FREE_MAIL_DOMAIN
    assert flag.reason == "Applies with a free-mail address (@gmail.com)."


def test_the_free_mail_list_is_a_setting(researcher, llama_catalog, settings, submit):
    settings.SCREENING_FREE_MAIL_DOMAINS = ["uni.example.edu"]

    assert flag_codes(submit(researcher)) == [ScreeningFlagCode.FREE_MAIL_DOMAIN]


def test_an_embargoed_country_is_flagged_with_its_name(researcher, llama_catalog, submit):
    # The demo variant has no embargo policy, so the request stays for a reviewer.
    access_request = submit(researcher, "llama-demo-tiny", country="IR")

    flag = access_request.flags.get()
    assert flag.code == ScreeningFlagCode.EMBARGOED_COUNTRY
    assert "Iran" in flag.reason
    assert access_request.status == RequestStatus.SUBMITTED


def test_the_embargo_list_is_a_setting(researcher, llama_catalog, settings, submit):
    settings.SCREENING_EMBARGOED_COUNTRIES = ["FR"]

    assert flag_codes(submit(researcher, "llama-demo-tiny", country="FR")) == [ScreeningFlagCode.EMBARGOED_COUNTRY]
    assert flag_codes(submit(UserFactory(), "llama-demo-tiny", country="IR", full_name="Other")) == []


def test_the_same_name_and_affiliation_from_another_account_is_a_possible_duplicate(researcher, llama_catalog, submit):
    first = submit(researcher)
    alternate = UserFactory(email="ada.alt@uni.example.edu")

    access_request = submit(alternate, full_name="ADA LOVELACE", affiliation="university of example", ip=None)

    flag = access_request.flags.get()
    assert flag.code == ScreeningFlagCode.POSSIBLE_DUPLICATE
    assert researcher.email in flag.reason
    assert first.reference in flag.reason


def test_the_same_name_at_another_institution_is_not_a_duplicate(researcher, llama_catalog, submit):
    submit(researcher)

    access_request = submit(UserFactory(), affiliation="Another University", ip=None)

    assert flag_codes(access_request) == []


def test_the_applicants_own_earlier_request_is_not_a_duplicate(researcher, llama_catalog, submit):
    submit(researcher, "llama-7b")

    assert flag_codes(submit(researcher, "llama-13b")) == []


def test_the_same_ip_as_a_rejected_applicant_is_a_possible_duplicate(researcher, reviewer, llama_catalog, submit):
    rejected = submit(researcher, ip="203.0.113.9")
    access_request_reject(access_request=rejected, reviewer=reviewer, reason="Not research.")

    access_request = submit(UserFactory(), full_name="Someone Else", affiliation="Elsewhere", ip="203.0.113.9")

    flag = access_request.flags.get()
    assert flag.code == ScreeningFlagCode.POSSIBLE_DUPLICATE
    assert rejected.reference in flag.reason
    assert "rejected or had access revoked" in flag.reason


def test_the_same_ip_as_a_revoked_grant_holder_is_a_possible_duplicate(researcher, reviewer, llama_catalog, submit):
    earlier = submit(researcher, ip="203.0.113.9")
    access_request_approve(access_request=earlier, reviewer=reviewer)
    grant_revoke(grant=Grant.objects.get(user=researcher), actor=reviewer, reason="Shared the weights.")

    access_request = submit(UserFactory(), full_name="Someone Else", affiliation="Elsewhere", ip="203.0.113.9")

    assert flag_codes(access_request) == [ScreeningFlagCode.POSSIBLE_DUPLICATE]
    assert earlier.reference in access_request.flags.get().reason


def test_the_same_ip_as_an_applicant_in_good_standing_is_not_flagged(researcher, llama_catalog, submit):
    submit(researcher, ip="203.0.113.9")  # colleagues behind one university NAT

    access_request = submit(UserFactory(), full_name="Someone Else", affiliation="Elsewhere", ip="203.0.113.9")

    assert flag_codes(access_request) == []


def test_a_previously_revoked_applicant_is_flagged_with_the_variant(researcher, reviewer, llama_catalog, llama, submit):
    grant = grant_create(user=researcher, variant=llama("llama-13b")[0], actor=reviewer, reason="Collaborator.")
    grant_revoke(grant=grant, actor=reviewer, reason="Left the university.")

    access_request = submit(researcher, "llama-7b")

    flag = access_request.flags.get()
    assert flag.code == ScreeningFlagCode.PREVIOUSLY_REVOKED
    assert flag.reason == "Access to LLaMA 13B was revoked before."


def test_a_use_case_the_form_accepts_is_never_flagged_short(researcher, llama_catalog, settings, submit):
    settings.REQUEST_USE_CASE_MIN_CHARS = 150

    access_request = submit(researcher, use_case="x" * 150)

    assert not access_request.flags.exists()


def test_a_use_case_below_a_raised_minimum_is_flagged_short_on_resubmission(
    researcher, reviewer, llama_catalog, settings, submit
):
    settings.REQUEST_USE_CASE_MIN_CHARS = 150
    access_request = submit(researcher, use_case="x" * 200)
    access_request_request_info(access_request=access_request, reviewer=reviewer, message="Which cluster?")
    settings.REQUEST_USE_CASE_MIN_CHARS = 300  # raised while the applicant was answering

    access_request_resubmit(access_request=access_request, applicant=researcher)

    flag = access_request.flags.get()
    assert (flag.code, flag.review_round) == (ScreeningFlagCode.SHORT_USE_CASE, 2)
    assert flag.reason == "The use case has 200 characters, below the form's minimum of 300."


def test_flags_are_raised_together_and_audited_in_one_event(llama_catalog, new_audit_actions, submit, audit_event_for):
    applicant = UserFactory(email="someone@gmail.com")

    with new_audit_actions() as actions:
        access_request = submit(applicant, "llama-demo-tiny", country="KP")

    assert flag_codes(access_request) == sorted(
        [ScreeningFlagCode.FREE_MAIL_DOMAIN, ScreeningFlagCode.EMBARGOED_COUNTRY]
    )
    assert all(flag.reason for flag in access_request.flags.all())
    assert actions == ["access_request.submitted"]  # the flags are part of the submit's one event
    event = audit_event_for(access_request, "access_request.submitted")
    assert sorted(event.details["flags"]) == flag_codes(access_request)


def test_screening_flags_are_stored_per_round(llama_catalog, submit):
    access_request = submit(UserFactory(email="someone@gmail.com"))

    assert list(ScreeningFlag.objects.values_list("request_id", "review_round")) == [(access_request.pk, 1)]


# --- Edit, resubmit, withdraw ---------------------------------------------------------------------


@pytest.fixture
def info_requested(researcher, reviewer, llama_catalog, submit):
    access_request = submit(researcher, "llama-7b")
    return access_request_request_info(
        access_request=access_request, reviewer=reviewer, message="Which cluster will hold the weights?"
    )


def test_the_applicant_edits_while_more_information_is_requested(
    researcher, info_requested, new_audit_actions, application, web_request, use_case_text, audit_event_for
):
    with new_audit_actions() as actions:
        access_request_edit(
            access_request=info_requested,
            applicant=researcher,
            data=application(position="Research fellow", use_case=use_case_text + " The cluster is ours alone."),
            request=web_request(),
        )

    info_requested.refresh_from_db()
    assert info_requested.position == "Research fellow"
    assert info_requested.use_case.endswith("The cluster is ours alone.")
    assert info_requested.status == RequestStatus.INFO_REQUESTED
    assert actions == ["access_request.edited"]
    assert audit_event_for(info_requested, "access_request.edited").details == {"fields": ["position", "use_case"]}


@pytest.mark.parametrize("status", [RequestStatus.SUBMITTED, RequestStatus.IN_REVIEW, RequestStatus.APPROVED])
def test_editing_is_refused_unless_more_information_is_requested(
    researcher, llama_catalog, status, submit, new_audit_actions, application
):
    access_request = submit(researcher)
    AccessRequest.objects.filter(pk=access_request.pk).update(status=status)

    with new_audit_actions() as actions, pytest.raises(StateConflict) as excinfo:
        access_request_edit(access_request=access_request, applicant=researcher, data=application(position="Other"))

    assert excinfo.value.code == "not_editable"
    assert actions == []
    access_request.refresh_from_db()
    assert access_request.position == "Postdoctoral researcher"


def test_only_the_applicant_can_edit_resubmit_or_withdraw(outsider, info_requested, application):
    with pytest.raises(PermissionDenied):
        access_request_edit(access_request=info_requested, applicant=outsider, data=application())
    with pytest.raises(PermissionDenied):
        access_request_resubmit(access_request=info_requested, applicant=outsider)
    with pytest.raises(PermissionDenied):
        access_request_withdraw(access_request=info_requested, applicant=outsider)


def test_an_invalid_edit_changes_nothing(researcher, info_requested, application):
    with pytest.raises(ValidationError) as excinfo:
        access_request_edit(
            access_request=info_requested, applicant=researcher, data=application(position="X", use_case="short")
        )

    assert "use_case" in excinfo.value.message_dict
    info_requested.refresh_from_db()
    assert info_requested.position == "Postdoctoral researcher"


def test_resubmitting_starts_a_new_round_and_keeps_the_place_in_the_queue(
    researcher, info_requested, new_audit_actions, audit_event_for
):
    submitted_at = info_requested.submitted_at

    with new_audit_actions() as actions:
        access_request_resubmit(
            access_request=info_requested, applicant=researcher, message="  The weights stay on our cluster.  "
        )

    info_requested.refresh_from_db()
    assert info_requested.status == RequestStatus.SUBMITTED
    assert info_requested.review_round == 2
    assert info_requested.submitted_at == submitted_at
    reply = info_requested.messages.get(kind=MessageKind.APPLICANT_REPLY)
    assert (reply.author, reply.text) == (researcher, "The weights stay on our cluster.")
    assert actions == ["access_request.resubmitted"]
    assert audit_event_for(info_requested, "access_request.resubmitted").details == {"round": 2, "flags": []}


def test_resubmitting_screens_the_edited_application_again(
    researcher, info_requested, settings, application, new_audit_actions, audit_event_for, submit
):
    submit(UserFactory(), full_name="Grace Hopper", affiliation="Navy Lab")  # someone else's request
    access_request_edit(
        access_request=info_requested,
        applicant=researcher,
        data=application(full_name="Grace Hopper", affiliation="Navy Lab"),
    )

    with new_audit_actions() as actions:
        access_request_resubmit(access_request=info_requested, applicant=researcher)

    flag = info_requested.flags.get()
    assert (flag.code, flag.review_round) == (ScreeningFlagCode.POSSIBLE_DUPLICATE, 2)
    assert actions == ["access_request.resubmitted"]
    assert audit_event_for(info_requested, "access_request.resubmitted").details["flags"] == ["possible_duplicate"]


def test_a_resubmission_that_puts_the_applicant_in_an_embargoed_country_is_rejected_by_policy(
    researcher, info_requested, application, new_audit_actions
):
    access_request_edit(access_request=info_requested, applicant=researcher, data=application(country="SY"))

    with new_audit_actions() as actions:
        returned = access_request_resubmit(access_request=info_requested, applicant=researcher)

    assert returned.status == RequestStatus.REJECTED
    info_requested.refresh_from_db()
    assert (info_requested.status, info_requested.rejection_reason) == (RequestStatus.REJECTED, EMBARGO_REASON)
    decision = info_requested.decisions.get(kind=DecisionKind.REJECT)
    assert (decision.reviewer, decision.policy_rule) == (None, POLICY_EMBARGO_REJECT)
    assert actions == ["access_request.resubmitted", "access_request.rejected"]
    assert not Grant.objects.exists()


def test_a_resubmission_from_an_allow_listed_domain_waits_for_the_reviewer_who_asked(
    researcher, info_requested, allow_list
):
    # At submit the domain rule would approve it; after a reviewer's question, the reviewer decides.
    allow_list("llama-7b", "uni.example.edu")

    returned = access_request_resubmit(access_request=info_requested, applicant=researcher, message="Our own.")

    assert returned.status == RequestStatus.SUBMITTED
    assert not info_requested.decisions.filter(kind=DecisionKind.APPROVE).exists()
    assert not Grant.objects.exists()


def test_an_applicant_who_corrects_an_embargoed_country_is_not_rejected_for_the_old_answer(
    researcher, reviewer, llama_catalog, submit, application
):
    # The demo variant only flags an embargoed country; turn its rule on after the first round,
    # so that only the first round's flag could trip it.
    access_request = submit(researcher, "llama-demo-tiny", country="CU")
    access_request_request_info(access_request=access_request, reviewer=reviewer, message="Where do you work?")
    access_request_edit(access_request=access_request, applicant=researcher, data=application(country="FR"))
    ModelVariant.objects.filter(slug="llama-demo-tiny").update(auto_reject_embargoed=True)

    returned = access_request_resubmit(access_request=access_request, applicant=researcher)

    assert returned.status == RequestStatus.SUBMITTED
    assert not access_request.decisions.filter(kind=DecisionKind.REJECT).exists()


def test_resubmitting_with_the_edits_records_both_in_one_go(
    researcher, info_requested, application, use_case_text, new_audit_actions, audit_event_for
):
    edited = application(position="Research fellow", use_case=use_case_text + " The cluster is ours alone.")

    with new_audit_actions() as actions:
        returned = access_request_resubmit(
            access_request=info_requested, applicant=researcher, message="See the use case.", data=edited
        )

    assert returned.status == RequestStatus.SUBMITTED
    info_requested.refresh_from_db()
    assert (info_requested.status, info_requested.review_round) == (RequestStatus.SUBMITTED, 2)
    assert info_requested.position == "Research fellow"
    assert info_requested.use_case.endswith("The cluster is ours alone.")
    assert info_requested.messages.get(kind=MessageKind.APPLICANT_REPLY).text == "See the use case."
    assert actions == ["access_request.edited", "access_request.resubmitted"]
    assert audit_event_for(info_requested, "access_request.edited").details == {"fields": ["position", "use_case"]}
    assert audit_event_for(info_requested, "access_request.resubmitted").details == {"round": 2, "flags": []}


def test_resubmitting_with_an_invalid_edit_changes_nothing(
    researcher, info_requested, application, use_case_text, new_audit_actions
):
    with new_audit_actions() as actions, pytest.raises(ValidationError) as excinfo:
        access_request_resubmit(
            access_request=info_requested,
            applicant=researcher,
            message="Fixed it.",
            data=application(position="Research fellow", use_case="Too short to judge."),
        )

    assert "use_case" in excinfo.value.message_dict
    assert actions == []
    info_requested.refresh_from_db()
    assert (info_requested.status, info_requested.review_round) == (RequestStatus.INFO_REQUESTED, 1)
    assert (info_requested.position, info_requested.use_case) == ("Postdoctoral researcher", use_case_text)
    assert not info_requested.messages.filter(kind=MessageKind.APPLICANT_REPLY).exists()


def test_a_valid_edit_is_undone_when_the_resubmission_itself_is_refused(
    researcher, info_requested, application, new_audit_actions, settings
):
    # The reply is checked after the edit is saved: the one transaction takes the edit back too.
    settings.REVIEW_TEXT_MAX_CHARS = 50

    with new_audit_actions() as actions, pytest.raises(ValidationError) as excinfo:
        access_request_resubmit(
            access_request=info_requested,
            applicant=researcher,
            message="x" * 51,
            data=application(position="Research fellow"),
        )

    assert "message" in excinfo.value.message_dict
    assert actions == []
    info_requested.refresh_from_db()
    assert (info_requested.status, info_requested.review_round) == (RequestStatus.INFO_REQUESTED, 1)
    assert info_requested.position == "Postdoctoral researcher"


def test_resubmitting_is_refused_unless_more_information_was_requested(researcher, llama_catalog, submit):
    access_request = submit(researcher)

    with pytest.raises(StateConflict):
        access_request_resubmit(access_request=access_request, applicant=researcher)


def test_the_information_loop_can_repeat(researcher, reviewer, info_requested):
    access_request_resubmit(access_request=info_requested, applicant=researcher)
    access_request_request_info(access_request=info_requested, reviewer=reviewer, message="And the GPU count?")
    access_request_resubmit(access_request=info_requested, applicant=researcher, message="Eight.")

    info_requested.refresh_from_db()
    assert (info_requested.status, info_requested.review_round) == (RequestStatus.SUBMITTED, 3)
    assert list(info_requested.messages.values_list("kind", flat=True)) == [
        "info_request",
        "info_request",
        "applicant_reply",
    ]


@pytest.mark.parametrize("status", [RequestStatus.SUBMITTED, RequestStatus.IN_REVIEW, RequestStatus.INFO_REQUESTED])
def test_an_open_request_can_be_withdrawn(
    researcher, llama_catalog, status, submit, new_audit_actions, web_request, decisions_by_slug
):
    access_request = submit(researcher, "llama-7b", "llama-13b")
    AccessRequest.objects.filter(pk=access_request.pk).update(status=status)

    with new_audit_actions() as actions:
        access_request_withdraw(access_request=access_request, applicant=researcher, request=web_request())

    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.WITHDRAWN
    assert access_request.decided_at is not None
    assert set(decisions_by_slug(access_request).values()) == {VariantDecision.DECLINED}
    assert actions == ["access_request.withdrawn"]


def test_a_decided_request_cannot_be_withdrawn(researcher, reviewer, llama_catalog, submit, new_audit_actions):
    access_request = submit(researcher)
    access_request_approve(access_request=access_request, reviewer=reviewer)

    with new_audit_actions() as actions, pytest.raises(StateConflict) as excinfo:
        access_request_withdraw(access_request=access_request, applicant=researcher)

    assert excinfo.value.code == "not_open"
    assert actions == []


# --- Queue position and estimated decision date ---------------------------------------------------


def _applicants(count: int) -> list:
    return [UserFactory() for _ in range(count)]


@pytest.fixture
def queue_of(submit):
    """queue_of(count): requests of that many new applicants, submitted in this order."""

    def queue(count: int) -> list[AccessRequest]:
        return [submit(user, full_name=f"Applicant {n}", ip=None) for n, user in enumerate(_applicants(count))]

    return queue


@pytest.fixture
def decided_history(use_case_text):
    """decided_history(count, days_ago=, status=approved, now=None): requests decided in the past, the
    throughput the estimate reads."""

    def history(count: int, *, days_ago: float, status=RequestStatus.APPROVED, now=None) -> None:
        now = now or timezone.now()
        license_version = license_current(ModelVariant.objects.get(slug="llama-7b").family)
        applicant = UserFactory()
        AccessRequest.objects.bulk_create(
            AccessRequest(
                applicant=applicant,
                status=status,
                full_name=f"Past {n}",
                affiliation="Past University",
                organization_type="academic",
                position="Researcher",
                country="DE",
                use_case=use_case_text,
                license=license_version,
                submitted_at=now - dt.timedelta(days=days_ago + 1),
                decided_at=now - dt.timedelta(days=days_ago),
            )
            for n in range(count)
        )

    return history


def test_queue_positions_follow_submission_order(llama_catalog, queue_of):
    first, second, third = queue_of(3)

    assert [queue_position(r) for r in (first, second, third)] == [1, 2, 3]


def test_requests_leave_the_queue_when_decided_withdrawn_or_waiting_for_the_applicant(
    reviewer, llama_catalog, queue_of
):
    first, second, third, fourth = queue_of(4)
    access_request_approve(access_request=first, reviewer=reviewer)
    access_request_withdraw(access_request=second, applicant=second.applicant)
    access_request_request_info(access_request=third, reviewer=reviewer, message="Which cluster?")
    for access_request in (first, second, third):
        access_request.refresh_from_db()

    assert [queue_position(r) for r in (first, second, third)] == [None, None, None]
    assert queue_position(fourth) == 1
    assert estimated_decision_at(third) is None


def test_a_request_being_reviewed_keeps_its_place(reviewer, llama_catalog, queue_of):
    from access.review.services import access_request_claim

    first, second = queue_of(2)
    access_request_claim(access_request=first, reviewer=reviewer)

    assert [queue_position(first), queue_position(second)] == [1, 2]


def test_a_resubmitted_request_returns_to_its_original_place(reviewer, llama_catalog, queue_of):
    first, second = queue_of(2)
    access_request_request_info(access_request=first, reviewer=reviewer, message="Which cluster?")
    assert queue_position(second) == 1

    access_request_resubmit(access_request=first, applicant=first.applicant)

    first.refresh_from_db()
    assert [queue_position(first), queue_position(second)] == [1, 2]


def test_without_recent_decisions_the_estimate_uses_the_default_throughput(llama_catalog, settings, queue_of):
    settings.REVIEW_DEFAULT_DECISIONS_PER_DAY = 2.0
    now = timezone.now()
    requests = queue_of(3)

    assert decisions_per_day(now=now) == 2.0
    # Position / 2 per day, rounded up to whole days.
    assert [estimated_decision_at(r, now=now) - now for r in requests] == [
        dt.timedelta(days=1),
        dt.timedelta(days=1),
        dt.timedelta(days=2),
    ]


def test_the_estimate_follows_recent_review_throughput(llama_catalog, settings, decided_history, queue_of):
    settings.REVIEW_THROUGHPUT_WINDOW_DAYS = 7
    # The default pace equals the observed one, so the blend of the two is exactly 1 a day.
    settings.REVIEW_DEFAULT_DECISIONS_PER_DAY = 1.0
    now = timezone.now()
    decided_history(5, days_ago=2, now=now)
    decided_history(2, days_ago=3, status=RequestStatus.REJECTED, now=now)
    decided_history(50, days_ago=30, now=now)  # outside the window
    decided_history(50, days_ago=1, status=RequestStatus.WITHDRAWN, now=now)  # not a review decision
    first, _second, third = queue_of(3)

    assert decisions_in_window(now=now) == 7
    assert decisions_per_day(now=now) == 1.0  # 7 decisions in 7 days
    assert estimated_decision_at(first, now=now) == now + dt.timedelta(days=1)
    assert estimated_decision_at(third, now=now) == now + dt.timedelta(days=3)


def test_the_estimate_reads_the_clock_when_no_time_is_given(llama_catalog, settings, queue_of):
    from unittest import mock

    settings.REVIEW_DEFAULT_DECISIONS_PER_DAY = 1.0
    (access_request,) = queue_of(1)
    frozen = timezone.now() + dt.timedelta(days=3)

    with mock.patch("django.utils.timezone.now", return_value=frozen):
        assert estimated_decision_at(access_request) == frozen + dt.timedelta(days=1)
