"""The policies that decide automatically on submission: the embargo rule and the allow-listed
email domains, each recorded as a decision naming its rule.
"""

from __future__ import annotations

from access.audit.services import audit_event_record
from access.catalog.models import ModelVariant
from access.requests.models import AccessRequest, MessageKind, RequestMessage, ScreeningFlagCode, VariantDecision
from access.review.approvals import pending_variants
from access.review.models import DecisionKind
from access.review.services import access_request_approve, access_request_reject, decision_record

POLICY_EMBARGO_REJECT = "embargoed_country_reject"
POLICY_DOMAIN_APPROVE = "allow_listed_domain_approve"
EMBARGO_REASON = (
    "We cannot offer access to applicants in your country because of export restrictions on these weights."
)


def access_request_apply_policies(*, access_request: AccessRequest, auto_approve: bool = True) -> AccessRequest:
    """Per-variant policies, each recorded as a decision naming its rule. On submit all of them
    run; on resubmit only the embargo rule (``auto_approve=False``): a reviewer asked for the new
    information, so a reviewer decides on it, unless the answer puts the applicant in an embargoed
    country. Only this round's screening flags count."""
    flags = set(access_request.flags.filter(review_round=access_request.review_round).values_list("code", flat=True))
    pending = pending_variants(access_request)
    if ScreeningFlagCode.EMBARGOED_COUNTRY in flags:
        embargoed = [v for v in pending if v.auto_reject_embargoed]
        if embargoed and len(embargoed) == len(pending):
            return access_request_reject(
                access_request=access_request, reviewer=None, reason=EMBARGO_REASON, policy_rule=POLICY_EMBARGO_REJECT
            )
        if embargoed:
            access_request.requested_variants.filter(variant__in=embargoed).update(decision=VariantDecision.DECLINED)
            decision_record(
                access_request=access_request,
                reviewer=None,
                kind=DecisionKind.REJECT,
                reason=EMBARGO_REASON,
                variants=embargoed,
                policy_rule=POLICY_EMBARGO_REJECT,
            )
            # The applicant reads why these models were declined; the rest goes to a reviewer.
            RequestMessage.objects.create(
                request=access_request,
                kind=MessageKind.DECISION,
                text=f"Not approved: {', '.join(v.name for v in embargoed)}. {EMBARGO_REASON}",
            )
            audit_event_record(
                action="access_request.variants_declined_by_policy",
                target=access_request,
                details={"policy": POLICY_EMBARGO_REJECT, "variants": [v.slug for v in embargoed]},
            )
            pending = [v for v in pending if v not in embargoed]
    if flags or not pending or not auto_approve:
        return access_request  # any screening flag means a person looks at it
    domain = access_request.applicant.email.rsplit("@", 1)[-1].lower()

    def allowed(variant: ModelVariant) -> bool:
        domains = [d.lower().lstrip(".") for d in variant.auto_approve_email_domains]
        return variant.approvals_required == 1 and any(domain == d or domain.endswith("." + d) for d in domains)

    if all(allowed(v) for v in pending):
        return access_request_approve(
            access_request=access_request, reviewer=None, variants=pending, policy_rule=POLICY_DOMAIN_APPROVE
        )
    return access_request
