"""The automatic policies run on submission (``access.review.services``): the embargo rule rejects
(or declines the variants that have it), the allow-listed email domains approve, never for a
two-person variant or a flagged application; a policy's decision has no reviewer. The policies run
on a resubmission too: see tests/access/requests/test_services.py."""

from __future__ import annotations

import pytest

from access.catalog.models import ModelVariant
from access.grants.models import Grant, GrantStatus
from access.requests.models import MessageKind, RequestStatus
from access.review.models import DecisionKind, ReviewDecision
from access.review.services import EMBARGO_REASON, POLICY_DOMAIN_APPROVE, POLICY_EMBARGO_REJECT, access_request_approve
from tests.factories import UserFactory


def test_the_seed_rejects_embargoed_countries_for_the_four_llama_sizes_but_not_the_demo(llama_catalog):
    policy = dict(ModelVariant.objects.values_list("slug", "auto_reject_embargoed"))

    assert policy == {
        "llama-7b": True,
        "llama-13b": True,
        "llama-33b": True,
        "llama-65b": True,
        "llama-demo-tiny": False,
    }
    assert not ModelVariant.objects.exclude(auto_approve_email_domains=[]).exists()


def test_an_embargoed_applicant_is_rejected_by_policy_with_the_rule_named(
    researcher, llama_catalog, new_audit_actions, submit, decisions_by_slug, audit_event_for
):
    with new_audit_actions() as actions:
        access_request = submit(researcher, "llama-7b", "llama-65b", country="SY")

    assert access_request.status == RequestStatus.REJECTED  # the returned object is current
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.REJECTED
    assert access_request.rejection_reason == EMBARGO_REASON
    assert access_request.decided_at is not None
    assert decisions_by_slug(access_request) == {"llama-7b": "declined", "llama-65b": "declined"}
    decision = access_request.decisions.get()
    assert decision.kind == DecisionKind.REJECT
    assert decision.reviewer is None
    assert decision.policy_rule == POLICY_EMBARGO_REJECT
    # The applicant reads the reason in the thread.
    message = access_request.messages.get()
    assert (message.kind, message.text) == (MessageKind.DECISION, EMBARGO_REASON)
    assert actions == ["access_request.submitted", "access_request.rejected"]
    event = audit_event_for(access_request, "access_request.rejected")
    assert event.actor_label == "system"
    assert event.details == {"reason": EMBARGO_REASON, "policy": POLICY_EMBARGO_REJECT}
    assert not Grant.objects.exists()


def test_only_the_variants_with_the_embargo_policy_are_declined(
    researcher, reviewer, llama_catalog, new_audit_actions, submit, decisions_by_slug, audit_event_for
):
    with new_audit_actions() as actions:
        access_request = submit(researcher, "llama-7b", "llama-demo-tiny", country="CU")

    assert access_request.status == RequestStatus.SUBMITTED
    assert decisions_by_slug(access_request) == {"llama-7b": "declined", "llama-demo-tiny": "pending"}
    decision = access_request.decisions.get()
    assert (decision.kind, decision.policy_rule) == (DecisionKind.REJECT, POLICY_EMBARGO_REJECT)
    assert [v.slug for v in decision.variants.all()] == ["llama-7b"]
    assert access_request.messages.get().text == f"Not approved: LLaMA 7B. {EMBARGO_REASON}"
    assert actions == [
        "access_request.submitted",
        "access_request.variants_declined_by_policy",
    ]
    event = audit_event_for(access_request, "access_request.variants_declined_by_policy")
    assert event.details == {"policy": POLICY_EMBARGO_REJECT, "variants": ["llama-7b"]}

    # A reviewer decides the rest; the declined variant is not granted.
    access_request_approve(access_request=access_request, reviewer=reviewer)
    assert list(Grant.objects.values_list("variant__slug", flat=True)) == ["llama-demo-tiny"]


def test_a_variant_without_the_embargo_policy_only_flags_an_embargoed_applicant(researcher, llama_catalog, submit):
    ModelVariant.objects.filter(slug="llama-7b").update(auto_reject_embargoed=False)

    access_request = submit(researcher, "llama-7b", country="CU")

    assert access_request.status == RequestStatus.SUBMITTED
    assert not access_request.decisions.exists()


def test_an_allow_listed_institution_domain_is_approved_by_policy(
    researcher, llama_catalog, allow_list, new_audit_actions, submit, audit_event_for
):
    allow_list("llama-7b", "uni.example.edu")

    with new_audit_actions() as actions:
        access_request = submit(researcher, "llama-7b")

    assert access_request.status == RequestStatus.APPROVED
    decision = access_request.decisions.get()
    assert (decision.kind, decision.reviewer, decision.policy_rule) == (
        DecisionKind.APPROVE,
        None,
        POLICY_DOMAIN_APPROVE,
    )
    grant = Grant.objects.get(user=researcher)
    assert (grant.variant.slug, grant.status, grant.granted_by) == ("llama-7b", GrantStatus.LICENSE_REQUIRED, None)
    assert actions == ["access_request.submitted", "access_request.approved", "grant.created"]
    event = audit_event_for(access_request, "access_request.approved")
    assert event.actor_label == "system"
    assert event.details["policy"] == POLICY_DOMAIN_APPROVE


def test_subdomains_of_an_allow_listed_domain_are_approved_too(researcher, llama_catalog, allow_list, submit):
    allow_list("llama-7b", "Example.EDU")  # researcher is ada@uni.example.edu

    assert submit(researcher, "llama-7b").status == RequestStatus.APPROVED


def test_a_domain_that_only_ends_with_the_same_letters_is_not_approved(llama_catalog, allow_list, submit):
    allow_list("llama-7b", "example.edu")
    applicant = UserFactory(email="mallory@notexample.edu")

    assert submit(applicant, "llama-7b", full_name="Mallory").status == RequestStatus.SUBMITTED


def test_automatic_approval_is_off_by_default(researcher, llama_catalog, submit):
    access_request = submit(researcher, "llama-7b")

    assert access_request.status == RequestStatus.SUBMITTED
    assert not access_request.decisions.exists()


def test_automatic_approval_never_applies_to_a_variant_that_needs_two_approvals(
    researcher, llama_catalog, allow_list, submit
):
    allow_list("llama-65b", "uni.example.edu")

    access_request = submit(researcher, "llama-65b")

    assert access_request.status == RequestStatus.SUBMITTED
    assert not access_request.decisions.exists()
    assert not Grant.objects.exists()


def test_automatic_approval_needs_every_requested_variant_to_allow_it(
    researcher, llama_catalog, allow_list, submit, decisions_by_slug
):
    allow_list("llama-7b", "uni.example.edu")

    access_request = submit(researcher, "llama-7b", "llama-13b")

    assert access_request.status == RequestStatus.SUBMITTED
    assert decisions_by_slug(access_request) == {"llama-7b": "pending", "llama-13b": "pending"}


@pytest.mark.parametrize(
    ("email", "fields"),
    [
        ("ada@gmail.com", {}),  # free mail, even when allow-listed
        ("ada@uni.example.edu", {"full_name": "Grace Hopper", "affiliation": "Navy Lab"}),  # possible duplicate
        ("ada@uni.example.edu", {"country": "IR"}),  # embargoed country
    ],
)
def test_automatic_approval_never_applies_when_a_flag_is_raised(llama_catalog, email, fields, allow_list, submit):
    allow_list("llama-demo-tiny", "uni.example.edu", "gmail.com")
    submit(UserFactory(), "llama-7b", full_name="Grace Hopper", affiliation="Navy Lab")  # someone else's request

    access_request = submit(UserFactory(email=email), "llama-demo-tiny", **fields)

    assert access_request.flags.exists()
    assert access_request.status == RequestStatus.SUBMITTED
    assert not Grant.objects.exists()


def test_a_policy_decision_is_a_review_decision_without_a_reviewer(researcher, llama_catalog, submit):
    submit(researcher, "llama-7b", country="KP")

    assert ReviewDecision.objects.filter(reviewer__isnull=True).exclude(policy_rule="").count() == 1
