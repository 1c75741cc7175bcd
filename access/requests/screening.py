"""Screening on submission: the flags reviewers see (free-mail domain, embargoed country, possible
duplicate, previously revoked, short use case), never shown to the applicant.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q

from access.grants.models import Grant, GrantStatus
from access.requests.models import AccessRequest, RequestStatus, ScreeningFlag, ScreeningFlagCode
from portal.validators import name_normalise


def access_request_screen(*, access_request: AccessRequest) -> list[ScreeningFlag]:
    """Raise the screening flags: shown to reviewers, never to the applicant."""
    applicant = access_request.applicant
    flags: list[tuple[str, str]] = []
    domain = applicant.email.rsplit("@", 1)[-1].lower()
    if domain in {d.lower() for d in settings.SCREENING_FREE_MAIL_DOMAINS}:
        flags.append((ScreeningFlagCode.FREE_MAIL_DOMAIN, f"Applies with a free-mail address (@{domain})."))
    if access_request.country.code in settings.SCREENING_EMBARGOED_COUNTRIES:
        flags.append(
            (ScreeningFlagCode.EMBARGOED_COUNTRY, f"Country {access_request.country.name} is on the embargo list.")
        )
    same_person = _same_name_and_affiliation(access_request)
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
    # The form's own minimum, so an application the form accepts is never flagged: this catches
    # only a use case accepted under a lower minimum and resubmitted after it was raised.
    if len(access_request.use_case) < settings.REQUEST_USE_CASE_MIN_CHARS:
        flags.append(
            (
                ScreeningFlagCode.SHORT_USE_CASE,
                f"The use case has {len(access_request.use_case)} characters, "
                f"below the form's minimum of {settings.REQUEST_USE_CASE_MIN_CHARS}.",
            )
        )
    created = ScreeningFlag.objects.bulk_create(
        ScreeningFlag(request=access_request, code=code, reason=reason, review_round=access_request.review_round)
        for code, reason in flags
    )
    # No audit event of its own: the submit or resubmit that screened records the flags.
    return created


def _same_name_and_affiliation(access_request: AccessRequest) -> AccessRequest | None:
    """The first request (in queue order) of another applicant with the same name and
    affiliation as ``name_normalise`` sees them, so fullwidth letters, invisible characters or
    another case do not hide an alternate account. The comparison is Unicode's, which no
    database shares, so the names are read and compared here (two short strings a row)."""
    name = name_normalise(access_request.full_name)
    affiliation = name_normalise(access_request.affiliation)
    others = AccessRequest.objects.exclude(applicant_id=access_request.applicant_id).values_list(
        "id", "full_name", "affiliation"
    )
    for pk, other_name, other_affiliation in others.iterator(chunk_size=2000):
        if name_normalise(other_name) == name and name_normalise(other_affiliation) == affiliation:
            return AccessRequest.objects.select_related("applicant").get(pk=pk)
    return None
