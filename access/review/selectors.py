"""Reads for reviewers: the queue and its counts, one request if the reviewer may open it, the
reviewers themselves, and the two-person rule (which variants are pending, how many approvals
each still needs from distinct reviewers, who approved what in this round)."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import PermissionDenied
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.http import Http404

from access.catalog.models import ModelVariant
from access.requests.models import (
    QUEUE_STATUSES,
    AccessRequest,
    MessageKind,
    RequestedVariant,
    RequestMessage,
    RequestStatus,
    ScreeningFlag,
    VariantDecision,
)
from access.review.models import DecisionKind, ReviewDecision, ReviewNote
from portal.models import User


def applicant_replied() -> Q:
    """A request in the queue whose applicant answered since a reviewer last decided on it: resubmitted
    after "more information" and not decided on in the new round, or with an applicant's reply
    newer than the last reviewer's decision. For a queryset annotated by ``review_queue``."""
    by_reviewer = ReviewDecision.objects.filter(request=OuterRef("pk"), reviewer__isnull=False)
    last_decision_at = Subquery(by_reviewer.order_by("-created_at").values("created_at")[:1])
    reply_since = RequestMessage.objects.filter(
        request=OuterRef("pk"),
        kind=MessageKind.APPLICANT_REPLY,
        created_at__gt=Coalesce(last_decision_at, Value(dt.datetime.min.replace(tzinfo=dt.UTC))),
    )
    resubmitted_undecided = Q(review_round__gt=1) & ~Exists(by_reviewer.filter(review_round=OuterRef("review_round")))
    return Q(status__in=QUEUE_STATUSES) & (resubmitted_undecided | Exists(reply_since))


def review_queue(
    *,
    status: str | None = None,
    variant: str | None = None,
    organization_type: str | None = None,
    country: str | None = None,
    flag: str | None = None,
    assignee: str | None = None,
    replied: str | bool | None = None,
    reviewer=None,
) -> QuerySet[AccessRequest]:
    """Requests for reviewers, oldest first, with what a list row shows prefetched and
    ``applicant_replied`` annotated: the number of queries does not depend on the number of requests."""
    requests = AccessRequest.objects.select_related("applicant", "assignee").prefetch_related(
        Prefetch("requested_variants", queryset=RequestedVariant.objects.select_related("variant")),
        Prefetch("flags", queryset=ScreeningFlag.objects.order_by("code", "-review_round", "-id")),
    )
    requests = requests.annotate(
        applicant_replied=ExpressionWrapper(applicant_replied(), output_field=BooleanField())
    )
    if replied:
        requests = requests.filter(applicant_replied())
    if status:
        requests = requests.filter(status=status)
    else:
        requests = requests.filter(status__in=QUEUE_STATUSES)
    # EXISTS rather than joins: no duplicate rows, so no DISTINCT over every column,
    # which made SQLite sort the whole queue on each page (and its count).
    if variant:
        requests = requests.filter(
            Exists(RequestedVariant.objects.filter(request=OuterRef("pk"), variant__slug=variant))
        )
    if organization_type:
        requests = requests.filter(organization_type=organization_type)
    if country:
        requests = requests.filter(country=country.upper())
    if flag:
        requests = requests.filter(Exists(ScreeningFlag.objects.filter(request=OuterRef("pk"), code=flag)))
    if assignee == "me" and reviewer is not None:
        requests = requests.filter(assignee=reviewer)
    elif assignee == "none":
        requests = requests.filter(assignee__isnull=True)
    elif assignee:
        requests = requests.filter(assignee__email__iexact=assignee)
    return requests.order_by("submitted_at", "id")


def flags_once(flags) -> list[ScreeningFlag]:
    """Each screening flag code once, with its latest round's reason: a flag raised again on a
    resubmission is the same concern, not a new one."""
    latest: dict[str, ScreeningFlag] = {}
    for flag in flags:
        kept = latest.get(flag.code)
        newer = kept is None or (flag.review_round, flag.created_at, flag.pk) > (
            kept.review_round,
            kept.created_at,
            kept.pk,
        )
        if newer:
            latest[flag.code] = flag
    return sorted(latest.values(), key=lambda flag: flag.get_code_display())


def review_status_counts() -> dict[str, int]:
    counts = dict(AccessRequest.objects.values_list("status").annotate(n=Count("id")).order_by())
    return {status: counts.get(status, 0) for status in RequestStatus.values}


def review_requests_annotate_approvals(access_requests) -> list[AccessRequest]:
    """Set ``approvals_still_needed`` (what ``approvals_needed`` returns)
    and ``approvers_by_variant`` ({variant id: reviewer ids or policy rules of this
    round}) on each request, in one query whatever their number.

    Reads the pending variants from ``requested_variants`` (prefetched with their
    variant by ``review_queue``), so a list page does not query per row."""
    access_requests = list(access_requests)
    rounds = {access_request.pk: access_request.review_round for access_request in access_requests}
    approvers: dict[int, dict[int, set]] = {pk: {} for pk in rounds}
    if rounds:
        rows = ReviewDecision.variants.through.objects.filter(
            reviewdecision__request_id__in=rounds, reviewdecision__kind=DecisionKind.APPROVE
        ).values_list(
            "reviewdecision__request_id",
            "reviewdecision__review_round",
            "reviewdecision__reviewer_id",
            "reviewdecision__policy_rule",
            "modelvariant_id",
        )
        for request_id, review_round, reviewer_id, policy_rule, variant_id in rows:
            if review_round == rounds[request_id]:  # a resubmission starts a new round
                approvers[request_id].setdefault(variant_id, set()).add(reviewer_id or policy_rule)
    for access_request in access_requests:
        access_request.approvers_by_variant = approvers[access_request.pk]
        needed = [
            max(0, rv.variant.approvals_required - len(approvers[access_request.pk].get(rv.variant_id, ())))
            for rv in access_request.requested_variants.all()
            if rv.decision == VariantDecision.PENDING
        ]
        access_request.approvals_still_needed = max(needed, default=0) if access_request.is_open else 0
    return access_requests


def reviewers():
    """Accounts that may review: members of a group holding the permission, or superusers."""
    return (
        User.objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(groups__permissions__codename="review_access", groups__permissions__content_type__app_label="access")
            | Q(user_permissions__codename="review_access", user_permissions__content_type__app_label="access")
        )
        .distinct()
        .order_by("email")
    )


def access_request_get_for_reviewer(
    user, request_id: int, *, missing: str = "No such request.", queryset: QuerySet[AccessRequest] | None = None
) -> AccessRequest:
    """A request as a reviewer opens it, or 404 (``missing``); 403 for the reviewer's own request,
    which they see only as applicants do: no notes, no flags, no decisions. The first line of every
    reviewer view that takes a request id."""
    if queryset is None:
        queryset = AccessRequest.objects.select_related("applicant", "assignee", "license__family")
    access_request = queryset.filter(pk=request_id).first()
    if access_request is None:
        raise Http404(missing)
    if access_request.applicant_id == user.pk:
        raise PermissionDenied("This is your own request; another reviewer must decide it.")
    return access_request


def review_request_file(user, request_id: int, *, missing: str = "No such request.") -> AccessRequest:
    """A request with everything a reviewer reads on it prefetched (variants, flags, notes, messages,
    decisions) and its approvals counted; as access_request_get_for_reviewer otherwise."""
    queryset = AccessRequest.objects.select_related("applicant", "assignee", "license__family").prefetch_related(
        Prefetch("requested_variants", queryset=RequestedVariant.objects.select_related("variant")),
        "flags",
        Prefetch("notes", queryset=ReviewNote.objects.select_related("author")),
        Prefetch("messages", queryset=RequestMessage.objects.select_related("author")),
        Prefetch("decisions", queryset=ReviewDecision.objects.select_related("reviewer").prefetch_related("variants")),
    )
    access_request = access_request_get_for_reviewer(user, request_id, missing=missing, queryset=queryset)
    review_requests_annotate_approvals([access_request])
    return access_request


def pending_variants(access_request: AccessRequest) -> list[ModelVariant]:
    return [
        rv.variant
        for rv in access_request.requested_variants.select_related("variant").filter(
            decision=VariantDecision.PENDING
        )
    ]


def approvals_needed(access_request: AccessRequest) -> int:
    """How many more approvals (by distinct reviewers) the pending variants still need, at most."""
    if not access_request.is_open:
        return 0
    counts = approvals_by_variant(access_request)
    needed = [max(0, v.approvals_required - counts.get(v.pk, 0)) for v in pending_variants(access_request)]
    return max(needed, default=0)


def approvals_by_variant(access_request: AccessRequest) -> dict[int, int]:
    approvers: dict[int, set] = {}
    decisions = access_request.decisions.filter(
        kind=DecisionKind.APPROVE, review_round=access_request.review_round
    ).prefetch_related("variants")
    for decision in decisions:
        for variant in decision.variants.all():
            approvers.setdefault(variant.pk, set()).add(decision.reviewer_id or decision.policy_rule)
    return {variant_id: len(who) for variant_id, who in approvers.items()}


def approval_rows(access_request: AccessRequest, user) -> list[dict]:
    """Each requested model with its decision and who approved it in this round."""
    approvers: dict[int, list[str]] = {}
    for decision in (
        access_request.decisions.filter(kind=DecisionKind.APPROVE, review_round=access_request.review_round)
        .select_related("reviewer")
        .prefetch_related("variants")
    ):
        who = decision.reviewer.email if decision.reviewer else f"policy {decision.policy_rule}"
        for variant in decision.variants.all():
            approvers.setdefault(variant.pk, []).append(who)
    rows = []
    for rv in access_request.requested_variants.select_related("variant"):
        approved_by = approvers.get(rv.variant_id, [])
        rows.append(
            {
                "variant": rv.variant,
                "decision": rv.decision,
                "decision_label": rv.get_decision_display(),
                "pending": rv.decision == VariantDecision.PENDING,
                "required": rv.variant.approvals_required,
                "approved_by": approved_by,
                "still_needed": max(0, rv.variant.approvals_required - len(approved_by))
                if rv.decision == VariantDecision.PENDING
                else 0,
                "approved_by_you": user.email in approved_by,
            }
        )
    return rows


def approval_progress(access_request: AccessRequest) -> dict | None:
    """Where a request stands under the two-person rule, once someone has approved it."""
    if access_request.status != RequestStatus.IN_REVIEW:
        return None
    approved_this_round = access_request.decisions.filter(
        kind=DecisionKind.APPROVE, review_round=access_request.review_round
    ).exists()
    return {"more_needed": approvals_needed(access_request)} if approved_this_round else None
