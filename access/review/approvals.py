"""The two-person rule: which variants are still pending, how many approvals each still needs from
distinct reviewers, and who approved what in the current review round.
"""

from __future__ import annotations

from access.catalog.models import ModelVariant
from access.requests.models import AccessRequest, RequestStatus, VariantDecision
from access.review.models import DecisionKind


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
