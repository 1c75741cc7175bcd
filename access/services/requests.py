"""The applicant's side of an access request: submit (with screening and
policies), edit while more information is requested, resubmit, withdraw."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from access.models import (
    OPEN_REQUEST_STATUSES,
    AccessRequest,
    Grant,
    GrantStatus,
    LicenseVersion,
    MessageKind,
    ModelVariant,
    RequestedVariant,
    RequestMessage,
    RequestStatus,
    ScreeningFlag,
    ScreeningFlagCode,
    VariantDecision,
)
from access.models.grants import LIVE_GRANT_STATUSES
from access.models.requests import new_request_reference
from access.selectors import license_current
from access.services.audit import audit_event_record, request_client_ip
from portal.errors import StateConflict
from portal.models import User

EDITABLE_FIELDS = ("full_name", "affiliation", "organization_type", "position", "country", "use_case", "publications")


@dataclass
class ApplicationData:
    """What the applicant fills in; the same for the web form and the API."""

    full_name: str
    affiliation: str
    organization_type: str
    position: str
    country: str
    use_case: str
    publications: list[str]


def _publications_clean(publications: list[str]) -> list[str]:
    validate = URLValidator(schemes=["http", "https"])
    cleaned, errors = [], []
    for raw in publications:
        url = (raw or "").strip()
        if not url:
            continue
        try:
            validate(url)
        except ValidationError:
            errors.append(f"“{url[:100]}” is not a web address; give links that start with https://.")
        else:
            cleaned.append(url)
    if len(cleaned) > settings.REQUEST_PUBLICATIONS_MAX:
        errors.append(f"Give at most {settings.REQUEST_PUBLICATIONS_MAX} links.")
    if errors:
        raise ValidationError({"publications": errors})
    return cleaned


def _one_line(text: str) -> str:
    # Names end up in email subjects and CSV rows: no line breaks, single spaces.
    return " ".join((text or "").split())


def text_length_check(*, field: str, text: str, limit: int | None = None) -> None:
    limit = limit or settings.REVIEW_TEXT_MAX_CHARS
    if text and len(text) > limit:
        raise ValidationError({field: [f"Keep this under {limit:,} characters (it has {len(text):,})."]})


def _application_apply(access_request: AccessRequest, data: ApplicationData) -> None:
    access_request.full_name = _one_line(data.full_name)
    access_request.affiliation = _one_line(data.affiliation)
    access_request.organization_type = data.organization_type
    access_request.position = _one_line(data.position)
    text_length_check(field="use_case", text=data.use_case, limit=settings.REQUEST_USE_CASE_MAX_CHARS)
    access_request.country = (data.country or "").upper()
    access_request.use_case = data.use_case.strip()
    access_request.publications = _publications_clean(data.publications or [])
    if len(access_request.use_case) < settings.REQUEST_USE_CASE_MIN_CHARS:
        raise ValidationError(
            {
                "use_case": [
                    f"Describe your research in at least {settings.REQUEST_USE_CASE_MIN_CHARS} characters "
                    f"(you wrote {len(access_request.use_case)}): what you will study, and why it needs the weights."
                ]
            }
        )


def _variants_check(*, applicant: User, variants: list[ModelVariant], license_version: LicenseVersion) -> None:
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
    _variants_check(applicant=applicant, variants=variants, license_version=license_version)
    access_request = AccessRequest(applicant=applicant, license=license_version, submit_ip=request_client_ip(request))
    _application_apply(access_request, data)
    access_request.full_clean(exclude=["reference"])
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
    from access import tasks

    # Enqueued before the policies run: the "received" email must precede a policy's decision email.
    request_id = access_request.pk
    transaction.on_commit(lambda: tasks.notify_request_submitted.delay(request_id))
    from access.services.review import access_request_apply_policies

    # A policy may decide at once; return the request as it now is, not as it was submitted.
    return access_request_apply_policies(access_request=access_request)


def access_request_screen(*, access_request: AccessRequest) -> list[ScreeningFlag]:
    """Raise the screening flags of API.md/issue: shown to reviewers, never to the applicant."""
    applicant = access_request.applicant
    flags: list[tuple[str, str]] = []
    domain = applicant.email.rsplit("@", 1)[-1].lower()
    if domain in {d.lower() for d in settings.SCREENING_FREE_MAIL_DOMAINS}:
        flags.append((ScreeningFlagCode.FREE_MAIL_DOMAIN, f"Applies with a free-mail address (@{domain})."))
    if access_request.country.code in settings.SCREENING_EMBARGOED_COUNTRIES:
        flags.append(
            (ScreeningFlagCode.EMBARGOED_COUNTRY, f"Country {access_request.country.name} is on the embargo list.")
        )
    same_person = (
        AccessRequest.objects.filter(
            full_name__iexact=access_request.full_name, affiliation__iexact=access_request.affiliation
        )
        .exclude(applicant=applicant)
        .select_related("applicant")
        .first()
    )
    if same_person is not None:
        flags.append(
            (
                ScreeningFlagCode.POSSIBLE_DUPLICATE,
                f"Same name and affiliation as {same_person.applicant.email} ({same_person.reference}).",
            )
        )
    if access_request.submit_ip:
        revoked_users = Grant.objects.filter(status=GrantStatus.REVOKED).values("user_id")
        same_ip = (
            AccessRequest.objects.filter(submit_ip=access_request.submit_ip)
            .filter(Q(status=RequestStatus.REJECTED) | Q(applicant_id__in=revoked_users))
            .exclude(applicant=applicant)
            .select_related("applicant")
            .first()
        )
        if same_ip is not None:
            flags.append(
                (
                    ScreeningFlagCode.POSSIBLE_DUPLICATE,
                    f"Same IP address as {same_ip.applicant.email} ({same_ip.reference}), "
                    "who was rejected or had access revoked.",
                )
            )
    revoked = Grant.objects.filter(user=applicant, status=GrantStatus.REVOKED).select_related("variant").first()
    if revoked is not None:
        flags.append(
            (ScreeningFlagCode.PREVIOUSLY_REVOKED, f"Access to {revoked.variant.name} was revoked before.")
        )
    if len(access_request.use_case) < settings.SCREENING_SHORT_USE_CASE_CHARS:
        flags.append(
            (
                ScreeningFlagCode.SHORT_USE_CASE,
                f"The use case has {len(access_request.use_case)} characters "
                f"(flagged below {settings.SCREENING_SHORT_USE_CASE_CHARS}).",
            )
        )
    created = ScreeningFlag.objects.bulk_create(
        ScreeningFlag(request=access_request, code=code, reason=reason, review_round=access_request.review_round)
        for code, reason in flags
    )
    # No audit event of its own: the submit or resubmit that screened records the flags.
    return created


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
    _application_apply(access_request, data)
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
def access_request_resubmit(*, access_request: AccessRequest, applicant: User, message: str = "", request=None):
    """Back into the queue after more information was given; a new review round starts, screened
    afresh, and the embargo rule runs on the edited application (see access_request_apply_policies)."""
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
    from access import tasks
    from access.services.review import access_request_apply_policies

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
    access_request.status = RequestStatus.WITHDRAWN
    access_request.decided_at = timezone.now()
    access_request.save(update_fields=["status", "decided_at", "updated_at"])
    access_request.requested_variants.filter(decision=VariantDecision.PENDING).update(
        decision=VariantDecision.DECLINED
    )
    audit_event_record(action="access_request.withdrawn", actor=applicant, target=access_request, request=request)
    return access_request
