"""The applicant's side of an access request: submit (with screening and
policies), edit while more information is requested, resubmit, withdraw."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from access.audit.services import audit_event_record, request_client_ip
from access.catalog.models import LicenseVersion, ModelVariant
from access.catalog.selectors import license_current
from access.grants.models import LIVE_GRANT_STATUSES, Grant, GrantStatus
from access.requests import tasks
from access.requests.application import EDITABLE_FIELDS, ApplicationData, application_apply
from access.requests.models import (
    OPEN_REQUEST_STATUSES,
    AccessRequest,
    MessageKind,
    RequestedVariant,
    RequestMessage,
    RequestStatus,
    VariantDecision,
    new_request_reference,
)
from access.requests.screening import access_request_screen
from access.review.services import access_request_apply_policies
from portal.errors import StateConflict
from portal.models import User
from portal.validators import text_length_check


def _errors_merge(errors: dict[str, list[str]], exc: ValidationError) -> None:
    for field, messages in exc.message_dict.items():
        errors.setdefault(field, []).extend(m for m in messages if m not in errors.get(field, []))


def access_request_variants_check(
    *, applicant: User, variants: list[ModelVariant], license_version: LicenseVersion
) -> None:
    """The models and license of a new request: one family, its license in force, none blocked,
    already open or already held. The web form asks it too, so its errors come in the same round
    as the other fields'."""
    if not variants:
        raise ValidationError({"variants": ["Choose at least one model."]})
    families = {variant.family_id for variant in variants}
    if len(families) > 1:
        raise ValidationError({"variants": ["Request models of one family at a time."]})
    current = license_current(variants[0].family)
    if current is None:
        raise ValidationError({"variants": ["This model family has no license yet, so it cannot be requested."]})
    if license_version.pk != current.pk:
        raise ValidationError(
            {
                "license_id": [
                    f"The license has changed since you read it: the current version is {current.version} "
                    f"(id {current.pk}). Read it and agree to that version."
                ]
            }
        )
    blocked = Grant.objects.filter(user=applicant, status=GrantStatus.REVOKED, blocks_new_requests=True).first()
    if blocked is not None:
        raise ValidationError(
            {"variants": ["Your earlier access was revoked and new requests are blocked. Write to the portal team."]}
        )
    open_conflict = (
        RequestedVariant.objects.filter(
            request__applicant=applicant, request__status__in=OPEN_REQUEST_STATUSES, variant__in=variants
        )
        .select_related("request", "variant")
        .first()
    )
    if open_conflict is not None:
        raise ValidationError(
            {
                "variants": [
                    f"You already have an open request ({open_conflict.request.reference}) for "
                    f"{open_conflict.variant.name}. Follow it on its status page, or withdraw it first."
                ]
            }
        )
    live = Grant.objects.filter(user=applicant, variant__in=variants, status__in=LIVE_GRANT_STATUSES)
    live = live.select_related("variant").first()
    if live is not None:
        raise ValidationError({"variants": [f"You already have access to {live.variant.name}."]})


@transaction.atomic
def access_request_submit(
    *,
    applicant: User,
    variants: list[ModelVariant],
    data: ApplicationData,
    license_version: LicenseVersion,
    request=None,
) -> AccessRequest:
    """Create a request, screen it, and let variant policies decide what they may."""
    # One submission per applicant at a time, so "one open request per variant" holds under races.
    User.objects.select_for_update().filter(pk=applicant.pk).first()
    variants = list(dict.fromkeys(variants))
    # Every problem in one answer: the models, the application's fields and the model's own checks.
    errors: dict[str, list[str]] = {}
    try:
        access_request_variants_check(applicant=applicant, variants=variants, license_version=license_version)
    except ValidationError as exc:
        _errors_merge(errors, exc)
    access_request = AccessRequest(applicant=applicant, license=license_version, submit_ip=request_client_ip(request))
    try:
        application_apply(access_request, data)
    except ValidationError as exc:
        _errors_merge(errors, exc)
    try:
        access_request.full_clean(exclude=["reference", *errors])
    except ValidationError as exc:
        _errors_merge(errors, exc)
    if errors:
        raise ValidationError(errors)
    for attempt in range(5):
        try:
            with transaction.atomic():
                access_request.save()
            break
        except IntegrityError:
            # The short reference collided with an existing one (rare): draw another.
            if attempt == 4 or AccessRequest.objects.filter(reference=access_request.reference).count() == 0:
                raise
            access_request.reference = new_request_reference()
    RequestedVariant.objects.bulk_create(RequestedVariant(request=access_request, variant=v) for v in variants)
    flags = access_request_screen(access_request=access_request)
    # One event for the one state change; the screening result is part of it.
    audit_event_record(
        action="access_request.submitted",
        actor=applicant,
        target=access_request,
        request=request,
        details={
            "variants": [v.slug for v in variants],
            "license": license_version.version,
            "flags": [flag.code for flag in flags],
        },
    )
    # Enqueued before the policies run: the "received" email must precede a policy's decision email.
    request_id = access_request.pk
    transaction.on_commit(lambda: tasks.notify_request_submitted.delay(request_id))
    # A policy may decide at once; return the request as it now is, not as it was submitted.
    return access_request_apply_policies(access_request=access_request)


def _require_applicant(access_request: AccessRequest, applicant: User) -> None:
    if access_request.applicant_id != applicant.pk:
        # Views look requests up by owner first; this is the services' own guard.
        raise PermissionDenied("Only the applicant can change their request.")


@transaction.atomic
def access_request_edit(*, access_request: AccessRequest, applicant: User, data: ApplicationData, request=None):
    """Change the application while the reviewers are waiting for more information."""
    access_request = AccessRequest.objects.select_for_update().get(pk=access_request.pk)
    _require_applicant(access_request, applicant)
    if access_request.status != RequestStatus.INFO_REQUESTED:
        raise StateConflict(
            "You can edit a request only while the reviewers ask for more information. "
            f"This one is {access_request.get_status_display().lower()}.",
            code="not_editable",
        )
    before = {field: getattr(access_request, field) for field in EDITABLE_FIELDS}
    application_apply(access_request, data)
    access_request.full_clean()
    access_request.save()
    changed = sorted(field for field in EDITABLE_FIELDS if getattr(access_request, field) != before[field])
    if not changed:
        return access_request  # nothing changed, so nothing to record
    audit_event_record(
        action="access_request.edited",
        actor=applicant,
        target=access_request,
        request=request,
        details={"fields": changed},
    )
    return access_request


@transaction.atomic
def access_request_resubmit(
    *,
    access_request: AccessRequest,
    applicant: User,
    message: str = "",
    data: ApplicationData | None = None,
    request=None,
):
    """Back into the queue after more information was given; a new review round starts, screened
    afresh, and the embargo rule runs on the edited application (see access_request_apply_policies).
    With ``data`` the application is edited first, in the same transaction, so both happen or
    neither (the page's "save and resubmit"; API clients edit with PATCH, then resubmit)."""
    if data is not None:
        access_request_edit(access_request=access_request, applicant=applicant, data=data, request=request)
    access_request = AccessRequest.objects.select_for_update().get(pk=access_request.pk)
    _require_applicant(access_request, applicant)
    if access_request.status != RequestStatus.INFO_REQUESTED:
        raise StateConflict(
            "Only a request waiting for more information can be resubmitted.", code="not_resubmittable"
        )
    # A new round: approvals of the old application no longer count. The request
    # keeps its original submitted_at, and so its place in the queue.
    access_request.status = RequestStatus.SUBMITTED
    access_request.review_round += 1
    access_request.save(update_fields=["status", "review_round", "updated_at"])
    text_length_check(field="message", text=message)
    if message.strip():
        RequestMessage.objects.create(
            request=access_request, author=applicant, kind=MessageKind.APPLICANT_REPLY, text=message.strip()
        )
    flags = access_request_screen(access_request=access_request)
    audit_event_record(
        action="access_request.resubmitted",
        actor=applicant,
        target=access_request,
        request=request,
        details={"round": access_request.review_round, "flags": [flag.code for flag in flags]},
    )
    access_request = access_request_apply_policies(access_request=access_request, auto_approve=False)
    if access_request.status == RequestStatus.SUBMITTED:  # not declined by the embargo rule
        request_id = access_request.pk
        transaction.on_commit(lambda: tasks.notify_reviewers_request_resubmitted.delay(request_id))
    return access_request


@transaction.atomic
def access_request_withdraw(*, access_request: AccessRequest, applicant: User, request=None) -> AccessRequest:
    access_request = AccessRequest.objects.select_for_update().get(pk=access_request.pk)
    _require_applicant(access_request, applicant)
    if not access_request.is_open:
        raise StateConflict(
            f"This request is already {access_request.get_status_display().lower()}; there is nothing to withdraw.",
            code="not_open",
        )
    # Models this request already granted stay granted: withdrawing then gives up only those still
    # waiting, and the request ends approved, for fewer models than asked for.
    granted = list(
        access_request.requested_variants.filter(decision=VariantDecision.APPROVED).values_list(
            "variant__slug", flat=True
        )
    )
    access_request.status = RequestStatus.APPROVED if granted else RequestStatus.WITHDRAWN
    access_request.decided_at = timezone.now()
    access_request.save(update_fields=["status", "decided_at", "updated_at"])
    access_request.requested_variants.filter(decision=VariantDecision.PENDING).update(
        decision=VariantDecision.DECLINED
    )
    audit_event_record(
        action="access_request.withdrawn",
        actor=applicant,
        target=access_request,
        request=request,
        details={"granted_before": granted} if granted else None,
    )
    return access_request
