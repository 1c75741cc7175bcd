"""Grants and license acceptance, through their services: create, accept the
current license, new and future-dated license versions, suspend, reinstate,
revoke, expiry; the append-only acceptance record; the read-only admin."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.catalog.services import license_publish
from access.grants.models import Grant, GrantStatus, LicenseAcceptance
from access.grants.selectors import (
    grant_effective_status,
    grant_is_usable,
    grants_annotate_effective_status,
    variant_access_for_user,
)
from access.grants.services import (
    grant_accept_license,
    grant_create,
    grant_expire,
    grant_reinstate,
    grant_revoke,
    grant_suspend,
    grants_expire_due,
)
from access.requests.models import RequestStatus
from access.review.services import access_request_approve
from portal.errors import StateConflict
from tests.factories import ModelFamilyFactory, ModelVariantFactory

ACCEPT_IP = "192.0.2.44"


def _grant(user, actor, slug="llama-7b", **kwargs) -> Grant:
    variant = ModelVariant.objects.get(slug=slug)
    return grant_create(user=user, variant=variant, actor=actor, reason="Collaborator on the project.", **kwargs)


@pytest.fixture
def accept(web_request):
    """accept(grant, user, license_version=None): the user accepts the license (default: the current
    one) from ACCEPT_IP, as the license page does."""

    def accept_license(grant, user, license_version=None):
        license_version = license_version or license_current(grant.variant.family)
        return grant_accept_license(
            grant=grant, user=user, license_version=license_version, request=web_request(ip=ACCEPT_IP)
        )

    return accept_license


def _status(grant) -> str:
    return Grant.objects.get(pk=grant.pk).status


def _effective(grant) -> str:
    return grant_effective_status(Grant.objects.select_related("variant__family", "user").get(pk=grant.pk))


@pytest.fixture
def waiting_grant(researcher, reviewer, llama_catalog, submit):
    """A grant from an approved request, waiting for the license."""
    access_request = submit(researcher, "llama-7b")
    access_request_approve(access_request=access_request, reviewer=reviewer)
    return Grant.objects.get(user=researcher, variant__slug="llama-7b")


@pytest.fixture
def active_grant(researcher, waiting_grant, accept):
    return accept(waiting_grant, researcher)


# --- Creating grants ------------------------------------------------------------------------------


def test_an_approval_creates_a_grant_that_waits_for_the_license(waiting_grant):
    assert waiting_grant.status == GrantStatus.LICENSE_REQUIRED
    assert waiting_grant.request.status == RequestStatus.APPROVED
    assert _effective(waiting_grant) == GrantStatus.LICENSE_REQUIRED
    assert not grant_is_usable(waiting_grant)


def test_a_grant_without_a_request_needs_a_reason_and_is_audited(
    researcher, reviewer, llama_catalog, llama, new_audit_actions, web_request
):
    with pytest.raises(ValidationError) as excinfo:
        grant_create(user=researcher, variant=llama("llama-7b")[0], actor=reviewer, reason="  ")
    assert "reason" in excinfo.value.message_dict

    with new_audit_actions() as actions:
        grant = grant_create(
            user=researcher,
            variant=llama("llama-7b")[0],
            actor=reviewer,
            reason=" Collaborator. ",
            request=web_request(),
        )

    assert (grant.status, grant.granted_by, grant.reason, grant.request) == (
        GrantStatus.LICENSE_REQUIRED,
        reviewer,
        "Collaborator.",
        None,
    )
    assert actions == ["grant.created"]
    event = AuditEvent.objects.get(action="grant.created")
    assert event.details == {"user": researcher.email, "variant": "llama-7b", "request": None, "expires_at": None}


def test_a_second_live_grant_for_the_same_variant_is_refused(researcher, reviewer, llama_catalog, new_audit_actions):
    _grant(researcher, reviewer)

    with new_audit_actions() as actions, pytest.raises(StateConflict) as excinfo:
        _grant(researcher, reviewer)

    assert excinfo.value.code == "grant_exists"
    assert actions == []


def test_a_new_grant_may_follow_a_revoked_one(researcher, reviewer, llama_catalog):
    grant_revoke(grant=_grant(researcher, reviewer), actor=reviewer, reason="Mistake.")

    assert _grant(researcher, reviewer).status == GrantStatus.LICENSE_REQUIRED


def test_a_grant_end_date_must_be_in_the_future(researcher, reviewer, llama_catalog):
    with pytest.raises(ValidationError) as excinfo:
        _grant(researcher, reviewer, expires_at=timezone.now() - dt.timedelta(seconds=1))

    assert "expires_at" in excinfo.value.message_dict


# --- Accepting the license ------------------------------------------------------------------------


def test_accepting_the_current_license_records_it_and_activates_the_grant(
    researcher, waiting_grant, new_audit_actions, applicant_user_agent, accept
):
    current = license_current(waiting_grant.variant.family)

    with new_audit_actions() as actions:
        grant = accept(waiting_grant, researcher)

    assert grant.status == GrantStatus.ACTIVE
    assert grant.activated_at is not None
    acceptance = LicenseAcceptance.objects.get()
    assert acceptance.user == researcher
    assert acceptance.license == current
    assert acceptance.license_sha256 == current.sha256
    assert len(acceptance.license_sha256) == 64
    assert acceptance.grant == waiting_grant
    assert acceptance.ip_address == ACCEPT_IP
    assert acceptance.user_agent == applicant_user_agent
    assert actions == ["license.accepted", "grant.activated"]
    event = AuditEvent.objects.get(action="license.accepted")
    assert (event.actor, event.target_id) == (researcher, str(current.pk))
    assert event.details["sha256"] == current.sha256
    assert _effective(grant) == GrantStatus.ACTIVE
    assert grant_is_usable(grant)


def test_accepting_activates_every_waiting_grant_of_the_family_and_no_other(
    researcher, reviewer, llama_catalog, submit, new_audit_actions, accept
):
    access_request = submit(researcher, "llama-7b", "llama-13b")
    access_request_approve(access_request=access_request, reviewer=reviewer)
    other = ModelVariantFactory(family=ModelFamilyFactory(slug="other", name="Other"))
    license_publish(family=other.family, version="1.0", title="Other", text="Other terms.")
    other_grant = grant_create(user=researcher, variant=other, actor=reviewer, reason="Collaborator.")
    seven = Grant.objects.get(variant__slug="llama-7b")

    with new_audit_actions() as actions:
        accept(seven, researcher)

    assert dict(Grant.objects.filter(user=researcher).values_list("variant__slug", "status")) == {
        "llama-7b": "active",
        "llama-13b": "active",
        other.slug: "license_required",
    }
    assert _status(other_grant) == GrantStatus.LICENSE_REQUIRED
    assert actions == ["license.accepted", "grant.activated", "grant.activated"]
    assert LicenseAcceptance.objects.count() == 1


def test_accepting_an_old_license_version_is_refused(researcher, waiting_grant, new_audit_actions, accept):
    old = license_current(waiting_grant.variant.family)
    new = license_publish(family=waiting_grant.variant.family, version="2.0", title="License", text="New terms.")

    with new_audit_actions() as actions, pytest.raises(ValidationError) as excinfo:
        accept(waiting_grant, researcher, license_version=old)

    assert f"version 2.0 (id {new.pk})" in excinfo.value.message_dict["license_id"][0]
    assert actions == []
    assert not LicenseAcceptance.objects.exists()
    assert _status(waiting_grant) == GrantStatus.LICENSE_REQUIRED


def test_only_the_holder_can_accept_the_license_of_a_grant(outsider, waiting_grant, accept):
    with pytest.raises(StateConflict) as excinfo:
        accept(waiting_grant, outsider)

    assert excinfo.value.code == "not_holder"
    assert not LicenseAcceptance.objects.exists()


@pytest.mark.parametrize("end", ["suspend", "revoke", "expire"])
def test_accepting_the_license_does_not_revive_a_grant_that_is_not_live(
    researcher, reviewer, active_grant, end, accept
):
    {
        "suspend": lambda: grant_suspend(grant=active_grant, actor=reviewer, reason="Investigating."),
        "revoke": lambda: grant_revoke(grant=active_grant, actor=reviewer, reason="Shared the weights."),
        "expire": lambda: grant_expire(grant=active_grant),
    }[end]()

    with pytest.raises(StateConflict) as excinfo:
        accept(active_grant, researcher)

    assert excinfo.value.code == "invalid_grant_state"
    assert LicenseAcceptance.objects.count() == 1


# --- New license versions -------------------------------------------------------------------------


def test_a_new_license_version_needs_a_new_acceptance_before_the_grant_is_usable(
    researcher, active_grant, llama, new_audit_actions, accept
):
    family = active_grant.variant.family

    new = license_publish(family=family, version="2.0", title="License", text="New terms.")

    # No sweep over grants: the stored status stays, the effective one changes at once.
    assert _status(active_grant) == GrantStatus.ACTIVE
    assert _effective(active_grant) == GrantStatus.LICENSE_REQUIRED
    assert not grant_is_usable(active_grant)
    annotated = grants_annotate_effective_status([Grant.objects.get(pk=active_grant.pk)])[0]
    assert annotated.license_required == new
    assert variant_access_for_user(researcher, llama("llama-7b")) == {"llama-7b": "license_required"}

    with new_audit_actions() as actions:
        accept(active_grant, researcher)

    assert actions == ["license.accepted"]  # the stored status was already active
    assert _effective(active_grant) == GrantStatus.ACTIVE
    assert LicenseAcceptance.objects.filter(license=new).get().license_sha256 == new.sha256
    assert variant_access_for_user(researcher, llama("llama-7b")) == {"llama-7b": "active"}


def test_a_future_dated_license_applies_only_from_its_effective_date(researcher, active_grant, accept):
    family = active_grant.variant.family
    effective_at = timezone.now() + dt.timedelta(days=30)
    future = license_publish(
        family=family, version="2.0", title="License", text="New terms.", effective_at=effective_at
    )

    assert _effective(active_grant) == GrantStatus.ACTIVE
    # It cannot be accepted before it is in force.
    with pytest.raises(ValidationError):
        accept(active_grant, researcher, license_version=future)

    with mock.patch("django.utils.timezone.now", return_value=effective_at + dt.timedelta(minutes=1)):
        assert license_current(family) == future
        assert _effective(active_grant) == GrantStatus.LICENSE_REQUIRED
        accept(active_grant, researcher, license_version=future)
        assert _effective(active_grant) == GrantStatus.ACTIVE


def test_a_grant_approved_after_the_new_license_needs_only_that_version(
    researcher, reviewer, llama_catalog, submit, accept
):
    license_publish(family=llama_catalog, version="2.0", title="License", text="New terms.")
    access_request = submit(researcher, "llama-13b")
    access_request_approve(access_request=access_request, reviewer=reviewer)
    grant = Grant.objects.get(user=researcher)

    accept(grant, researcher)

    assert _effective(grant) == GrantStatus.ACTIVE


# --- Suspend, reinstate, revoke -------------------------------------------------------------------


def test_suspending_needs_a_reason_and_is_audited(reviewer, active_grant, new_audit_actions, web_request):
    with pytest.raises(ValidationError) as excinfo:
        grant_suspend(grant=active_grant, actor=reviewer, reason=" ")
    assert "reason" in excinfo.value.message_dict

    with new_audit_actions() as actions:
        grant = grant_suspend(grant=active_grant, actor=reviewer, reason=" Unusual downloads. ", request=web_request())

    assert (grant.status, grant.status_reason) == (GrantStatus.SUSPENDED, "Unusual downloads.")
    assert _effective(grant) == GrantStatus.SUSPENDED
    assert not grant_is_usable(grant)
    assert actions == ["grant.suspended"]
    event = AuditEvent.objects.get(action="grant.suspended")
    assert event.actor == reviewer
    assert event.details["reason"] == "Unusual downloads."
    assert (event.details["from"], event.details["to"]) == ("active", "suspended")


def test_reinstating_returns_an_accepted_grant_to_active(reviewer, active_grant, new_audit_actions):
    grant_suspend(grant=active_grant, actor=reviewer, reason="Investigating.")

    with new_audit_actions() as actions:
        grant = grant_reinstate(grant=active_grant, actor=reviewer, reason="Cleared.")

    assert (grant.status, grant.status_reason) == (GrantStatus.ACTIVE, "")
    assert grant_is_usable(grant)
    assert actions == ["grant.reinstated"]


def test_reinstating_a_grant_never_accepted_returns_it_to_license_required(reviewer, waiting_grant):
    grant_suspend(grant=waiting_grant, actor=reviewer, reason="Investigating.")

    assert grant_reinstate(grant=waiting_grant, actor=reviewer).status == GrantStatus.LICENSE_REQUIRED


@pytest.mark.parametrize("call", ["reinstate_active", "suspend_suspended"])
def test_suspend_and_reinstate_refuse_the_wrong_state(reviewer, active_grant, call, new_audit_actions):
    if call == "suspend_suspended":
        grant_suspend(grant=active_grant, actor=reviewer, reason="Investigating.")

    with new_audit_actions() as actions, pytest.raises(StateConflict):
        if call == "reinstate_active":
            grant_reinstate(grant=active_grant, actor=reviewer)
        else:
            grant_suspend(grant=active_grant, actor=reviewer, reason="Again.")

    assert actions == []


@pytest.mark.parametrize("suspended_first", [False, True])
def test_revoking_needs_a_reason_ends_the_grant_and_is_audited(
    reviewer, active_grant, suspended_first, new_audit_actions
):
    if suspended_first:
        grant_suspend(grant=active_grant, actor=reviewer, reason="Investigating.")
    with pytest.raises(ValidationError) as excinfo:
        grant_revoke(grant=active_grant, actor=reviewer, reason="")
    assert "reason" in excinfo.value.message_dict

    with new_audit_actions() as actions:
        grant = grant_revoke(grant=active_grant, actor=reviewer, reason="Shared the weights.")

    assert grant.status == GrantStatus.REVOKED
    assert grant.ended_at is not None
    assert (grant.status_reason, grant.blocks_new_requests) == ("Shared the weights.", False)
    assert _effective(grant) == GrantStatus.REVOKED
    assert actions == ["grant.revoked"]
    assert AuditEvent.objects.get(action="grant.revoked").details["block_new_requests"] is False


def test_revocation_is_final(reviewer, researcher, active_grant):
    grant_revoke(grant=active_grant, actor=reviewer, reason="Shared the weights.")

    for call in (
        lambda: grant_reinstate(grant=active_grant, actor=reviewer),
        lambda: grant_suspend(grant=active_grant, actor=reviewer, reason="Again."),
        lambda: grant_revoke(grant=active_grant, actor=reviewer, reason="Again."),
        lambda: grant_expire(grant=active_grant),
    ):
        with pytest.raises(StateConflict):
            call()
    assert _status(active_grant) == GrantStatus.REVOKED


def test_revoking_with_a_block_stops_new_requests(researcher, reviewer, active_grant, submit):
    grant = grant_revoke(grant=active_grant, actor=reviewer, reason="Shared the weights.", block_new_requests=True)

    assert grant.blocks_new_requests is True
    assert AuditEvent.objects.get(action="grant.revoked").details["block_new_requests"] is True
    with pytest.raises(ValidationError) as excinfo:
        submit(researcher, "llama-13b")
    assert "new requests are blocked" in excinfo.value.message_dict["variants"][0]


# --- Expiry ---------------------------------------------------------------------------------------


def test_a_grant_past_its_end_date_counts_as_expired_before_the_sweep(
    researcher, reviewer, llama_catalog, llama, accept
):
    ends = timezone.now() + dt.timedelta(days=10)
    grant = _grant(researcher, reviewer, expires_at=ends)
    accept(grant, researcher)

    assert _effective(grant) == GrantStatus.ACTIVE
    with mock.patch("django.utils.timezone.now", return_value=ends + dt.timedelta(seconds=1)):
        assert _status(grant) == GrantStatus.ACTIVE
        assert _effective(grant) == GrantStatus.EXPIRED
        assert not grant_is_usable(grant)
        assert variant_access_for_user(researcher, llama("llama-7b")) == {"llama-7b": "expired"}


def test_the_sweep_expires_live_grants_whose_end_date_passed(
    researcher, outsider, reviewer, llama_catalog, new_audit_actions, accept
):
    ends = timezone.now() + dt.timedelta(days=10)
    due_active = _grant(researcher, reviewer, "llama-7b", expires_at=ends)
    accept(due_active, researcher)
    due_waiting = _grant(outsider, reviewer, "llama-7b", expires_at=ends)
    later = _grant(researcher, reviewer, "llama-13b", expires_at=ends + dt.timedelta(days=30))
    unlimited = _grant(researcher, reviewer, "llama-33b")
    revoked = _grant(outsider, reviewer, "llama-13b", expires_at=ends)
    grant_revoke(grant=revoked, actor=reviewer, reason="Left.")

    assert grants_expire_due() == 0
    with mock.patch("django.utils.timezone.now", return_value=ends + dt.timedelta(hours=1)):
        with new_audit_actions() as actions:
            assert grants_expire_due() == 2
        assert grants_expire_due() == 0  # a second run finds nothing more

    statuses = {g: _status(g) for g in (due_active, due_waiting, later, unlimited, revoked)}
    assert statuses == {
        due_active: GrantStatus.EXPIRED,
        due_waiting: GrantStatus.EXPIRED,
        later: GrantStatus.LICENSE_REQUIRED,
        unlimited: GrantStatus.LICENSE_REQUIRED,
        revoked: GrantStatus.REVOKED,
    }
    assert actions == ["grant.expired", "grant.expired"]
    event = AuditEvent.objects.filter(action="grant.expired").first()
    assert event.actor_label == "system"
    assert Grant.objects.get(pk=due_active.pk).ended_at == ends + dt.timedelta(hours=1)


def test_the_sweep_accepts_an_explicit_time(researcher, reviewer, llama_catalog):
    ends = timezone.now() + dt.timedelta(days=1)
    grant = _grant(researcher, reviewer, expires_at=ends)

    assert grants_expire_due(now=ends - dt.timedelta(seconds=1)) == 0
    assert grants_expire_due(now=ends) == 1
    assert _status(grant) == GrantStatus.EXPIRED


def test_an_expired_grant_is_final_and_the_user_may_apply_again(researcher, reviewer, llama_catalog, submit):
    grant = grant_expire(grant=_grant(researcher, reviewer))

    with pytest.raises(StateConflict):
        grant_reinstate(grant=grant, actor=reviewer)
    assert submit(researcher, "llama-7b").status == RequestStatus.SUBMITTED


# --- The acceptance record is append-only ---------------------------------------------------------


def _assert_refused(statement) -> None:
    # The savepoint keeps the test's transaction usable after the database error.
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        statement()


@pytest.mark.postgres
def test_the_database_refuses_to_change_or_delete_a_license_acceptance(active_grant):
    acceptance = LicenseAcceptance.objects.get()
    before = LicenseAcceptance.objects.filter(pk=acceptance.pk).values().get()

    _assert_refused(lambda: LicenseAcceptance.objects.filter(pk=acceptance.pk).update(license_sha256="0" * 64))
    acceptance.ip_address = "203.0.113.250"
    _assert_refused(acceptance.save)
    _assert_refused(lambda: LicenseAcceptance.objects.filter(pk=acceptance.pk).delete())
    _assert_refused(acceptance.delete)

    assert LicenseAcceptance.objects.filter(pk=acceptance.pk).values().get() == before


@pytest.mark.postgres
def test_new_acceptances_can_still_be_added_on_postgresql(researcher, active_grant, accept):
    license_publish(family=active_grant.variant.family, version="2.0", title="License", text="New terms.")

    accept(active_grant, researcher)

    assert LicenseAcceptance.objects.count() == 2


# --- Admin: grants and acceptances are read-only --------------------------------------------------


@pytest.mark.parametrize("model", ["grant", "licenseacceptance"])
def test_the_admin_shows_grants_and_acceptances_but_cannot_add_change_or_delete(admin_user_client, active_grant, model):
    obj = Grant.objects.get(pk=active_grant.pk) if model == "grant" else LicenseAcceptance.objects.get()
    base = f"/admin/access/{model}/"

    assert admin_user_client.get(base).status_code == 200
    assert admin_user_client.get(f"{base}{obj.pk}/change/").status_code == 200
    assert admin_user_client.get(f"{base}add/").status_code == 403
    assert admin_user_client.post(f"{base}{obj.pk}/change/", {"status": "revoked"}).status_code == 403
    assert admin_user_client.post(f"{base}{obj.pk}/delete/", {"post": "yes"}).status_code == 403
    assert _status(active_grant) == GrantStatus.ACTIVE
    assert LicenseAcceptance.objects.count() == 1


def test_the_grant_admin_offers_no_bulk_delete(admin_user_client, active_grant):
    response = admin_user_client.post(
        "/admin/access/grant/", {"action": "delete_selected", "_selected_action": [active_grant.pk], "post": "yes"}
    )

    assert response.status_code in (200, 302)
    assert Grant.objects.filter(pk=active_grant.pk).exists()
