"""The reviewers' pages: the queue, bulk decisions, a request's detail with its notes, claim,
decisions and the applicant's grants (revoke, suspend, reinstate), and the statistics. Every
view is behind ``reviewer_page``: logged in, a session that passed a second factor, and the
review permission. State changes go through the services;
these views validate, call one service and redirect."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from access.catalog.models import ModelVariant
from access.distribution.selectors import LEAK_ALERT_DAYS, bundles_suspended_by_leak_rule
from access.grants.selectors import grant_get_for_manager, grants_annotate_effective_status, grants_for_user
from access.grants.services import GRANT_STATUS_ACTIONS, grant_status_change
from access.requests.models import AccessRequest, RequestStatus, VariantDecision
from access.requests.selectors import requests_for_applicant
from access.review.charts import (
    CHART_HEIGHT,
    CHART_WIDTH,
    approval_rate_chart,
    duration_label,
    median_chart,
    weekly_outcomes_chart,
)
from access.review.forms import (
    BulkDecisionForm,
    ClaimForm,
    DecisionForm,
    GrantActionForm,
    NoteForm,
    QueueFilterForm,
)
from access.review.history import request_history_for_reviewers
from access.review.models import DecisionKind
from access.review.permissions import reviewer_page
from access.review.selectors import (
    access_request_get_for_reviewer,
    approval_rows,
    flags_once,
    review_queue,
    review_requests_annotate_approvals,
    review_status_counts,
    reviewers,
)
from access.review.services import (
    access_request_claim,
    access_request_decide,
    access_request_note_add,
    access_requests_bulk_decide,
)
from access.review.stats import (
    OUTCOME_LABELS,
    OUTCOMES,
    STATS_WEEKS,
    approval_rate_by_organization_type,
    requests_per_week_by_outcome,
    time_to_decision,
)
from portal.errors import StateConflict
from portal.forms import service_errors_to_form
from portal.pages import with_query

QUEUE_PAGE_SIZE = 50
# Age badges of the queue: green below AMBER, amber below RED, red from RED days on.
AGE_AMBER_DAYS = 3
AGE_RED_DAYS = 7


def _age_badge(age: dt.timedelta) -> str:
    if age < dt.timedelta(days=AGE_AMBER_DAYS):
        return "ok"
    if age < dt.timedelta(days=AGE_RED_DAYS):
        return "warn"
    return "bad"


def _age_label(age: dt.timedelta) -> str:
    if age < dt.timedelta(hours=1):
        return f"{max(1, int(age.total_seconds() // 60))} min"
    if age < dt.timedelta(days=1):
        return f"{int(age.total_seconds() // 3600)} h"
    return f"{age.days} d"


@reviewer_page
@require_GET
def review_queue_page(request):
    variants = list(ModelVariant.objects.order_by("family__name", "position", "parameters"))
    filter_form = QueueFilterForm(request.GET, variants=variants)
    filter_form.is_valid()
    filters = filter_form.filters()
    requests = review_queue(reviewer=request.user, **filters).exclude(applicant=request.user)
    page = Paginator(requests, QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = review_requests_annotate_approvals(page.object_list)
    now = timezone.now()
    for row in rows:
        age = now - row.submitted_at
        row.age_label, row.age_badge = _age_label(age), _age_badge(age)
        row.distinct_flags = [flag.get_code_display() for flag in flags_once(row.flags.all())]
    query = request.GET.copy()
    query.pop("page", None)
    counts = review_status_counts()
    return render(
        request,
        "access/review/queue.html",
        {
            "filter_form": filter_form,
            "page": page,
            "rows": rows,
            "counts": [(value, label, counts[value]) for value, label in RequestStatus.choices],
            "waiting": counts[RequestStatus.SUBMITTED] + counts[RequestStatus.IN_REVIEW],
            "query": query.urlencode(),
            "reviewer_emails": list(reviewers().values_list("email", flat=True)),
            "bulk_form": BulkDecisionForm(auto_id="id_bulk_%s"),
            "age_amber_days": AGE_AMBER_DAYS,
            "age_red_days": AGE_RED_DAYS,
            # The alerts link to a grant's downloads, which only grant managers may open.
            "leak_alerts": list(bundles_suspended_by_leak_rule())
            if request.user.has_perm("access.manage_grants")
            else [],
            "leak_alert_days": LEAK_ALERT_DAYS,
        },
    )


@reviewer_page
@require_POST
def review_bulk(request):
    form = BulkDecisionForm(request.POST)
    back = with_query(reverse("review-queue"), request.POST.get("query", ""))
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect(back)
    decision = form.cleaned_data["decision"]
    done, failed = access_requests_bulk_decide(
        access_requests=list(form.cleaned_data["requests"]),
        reviewer=request.user,
        decision=decision,
        reason=form.cleaned_data["reason"],
        request=request,
    )
    decided = [r.reference for r in done if r.status != RequestStatus.IN_REVIEW]
    waiting = [r.reference for r in done if r.status == RequestStatus.IN_REVIEW]
    if decided:
        verb = "Approved" if decision == DecisionKind.APPROVE else "Rejected"
        messages.success(request, f"{verb} {len(decided)} request(s): {', '.join(decided)}.")
    if waiting:
        messages.info(
            request,
            f"Your approval is recorded for {', '.join(waiting)}; a second reviewer must approve "
            "the models that need two.",
        )
    for reference, reason in failed.items():
        messages.error(request, f"{reference} was not changed: {reason}")
    return redirect(back)


def _decision_forms(access_request, pending, bound: DecisionForm | None) -> dict[str, DecisionForm]:
    """One form per decision on the page; the one just submitted keeps its input and errors."""
    forms = {}
    for kind in DecisionKind.values:
        if bound is not None and bound.data.get("decision") == kind:
            forms[kind] = bound
        else:
            forms[kind] = DecisionForm(initial={"decision": kind}, pending_variants=pending)
    return forms


def _detail_page(request, access_request, *, decision_form=None, note_form=None, claim_form=None, error="", status=200):
    variant_rows = approval_rows(access_request, request.user)
    pending = [row["variant"] for row in variant_rows if row["pending"]]
    applicant = access_request.applicant
    other_requests = list(requests_for_applicant(applicant).exclude(pk=access_request.pk))
    applicant_grants = grants_annotate_effective_status(grants_for_user(applicant).order_by("-created_at", "-id"))
    own = access_request.applicant_id == request.user.pk
    if decision_form is not None and "decision" in decision_form.errors:
        error = error or " ".join(decision_form.errors["decision"])  # no decision's form to show it on
    return render(
        request,
        "access/review/detail.html",
        {
            "ar": access_request,
            "variant_rows": variant_rows,
            "two_person": any(row["required"] > 1 for row in variant_rows if row["pending"]),
            "you_approved": any(row["approved_by_you"] for row in variant_rows),
            "flags": flags_once(access_request.flags.all()),
            "other_requests": other_requests,
            "applicant_grants": applicant_grants,
            "can_manage_grants": request.user.has_perm("access.manage_grants") and not own,
            "history": request_history_for_reviewers(access_request),
            "thread": access_request.messages.select_related("author"),
            "notes": access_request.notes.select_related("author"),
            "note_form": note_form or NoteForm(),
            "claim_form": claim_form or ClaimForm(),
            "decision_forms": _decision_forms(access_request, pending, decision_form),
            "decision_error": error,
            "own_request": own,
            "can_decide": access_request.is_open and not own and bool(pending),
            "can_request_info": access_request.status in (RequestStatus.SUBMITTED, RequestStatus.IN_REVIEW) and not own,
            "reviewer_emails": list(reviewers().exclude(pk=applicant.pk).values_list("email", flat=True)),
        },
        status=status,
    )


@reviewer_page
@require_GET
def review_detail(request, pk: int):
    return _detail_page(request, access_request_get_for_reviewer(request.user, pk))


@reviewer_page
@require_POST
def review_note(request, pk: int):
    access_request = access_request_get_for_reviewer(request.user, pk)
    form = NoteForm(request.POST)
    if form.is_valid():
        try:
            access_request_note_add(
                access_request=access_request, author=request.user, text=form.cleaned_data["text"], request=request
            )
        except ValidationError as exc:
            service_errors_to_form(form, exc, {})
        else:
            messages.success(request, "Note added. Only reviewers can read it.")
            return redirect(reverse("review-detail", args=[pk]) + "#notes")
    return _detail_page(request, access_request, note_form=form, status=400)


@reviewer_page
@require_POST
def review_claim(request, pk: int):
    access_request = access_request_get_for_reviewer(request.user, pk)
    form = ClaimForm(request.POST)
    if form.is_valid():
        try:
            claimed = access_request_claim(
                access_request=access_request,
                reviewer=request.user,
                assignee=form.cleaned_data["assignee"],
                request=request,
            )
        except ValidationError as exc:
            service_errors_to_form(form, exc, {})
        except StateConflict as exc:
            return _detail_page(request, access_request, claim_form=form, error=exc.message, status=409)
        else:
            who = "you" if claimed.assignee_id == request.user.pk else claimed.assignee.email
            messages.success(request, f"{claimed.reference} is now assigned to {who}.")
            return redirect("review-detail", pk=pk)
    return _detail_page(request, access_request, claim_form=form, status=400)


@reviewer_page
@require_POST
def review_request_grant_action(request, pk: int, grant_id: int, action: str):
    """Revoke, suspend or reinstate one of the applicant's grants from the request's page, and back to it."""
    access_request = access_request_get_for_reviewer(request.user, pk)
    if action not in GRANT_STATUS_ACTIONS:
        raise Http404(f"No grant action {action!r}; use revoke, suspend or reinstate.")
    grant = grant_get_for_manager(request.user, grant_id, acting=True)
    if grant.user_id != access_request.applicant_id:
        raise Http404("No such grant of this applicant.")
    back = reverse("review-detail", args=[pk]) + "#grants"
    label = f"{grant.variant.name} for {grant.user.email}"
    form = GrantActionForm(request.POST, action=action)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, f"{label}: {' '.join(errors)} Nothing was changed.")
        return redirect(back)
    reason = form.cleaned_data["reason"]
    try:
        grant_status_change(
            grant=grant,
            action=action,
            actor=request.user,
            reason=reason,
            block_new_requests=form.cleaned_data["block_new_requests"],
            request=request,
        )
    except ValidationError as exc:
        messages.error(request, f"{label}: {' '.join(exc.messages)}")
    except StateConflict as exc:
        messages.error(request, f"{label}: {exc.message}")
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        done = GRANT_STATUS_ACTIONS[action]
        messages.success(request, f"Access to {label} is {done}. They are emailed about it.")
    return redirect(back)


def _decision_message(access_request: AccessRequest, decision: str) -> str:
    reference = access_request.reference
    if decision == DecisionKind.APPROVE:
        if access_request.status == RequestStatus.APPROVED:
            return f"{reference} is approved. The applicant is asked to accept the license."
        decisions = list(access_request.requested_variants.select_related("variant"))
        granted = [rv.variant.name for rv in decisions if rv.decision == VariantDecision.APPROVED]
        waiting = [rv.variant.name for rv in decisions if rv.decision == VariantDecision.PENDING]
        waits = f"{', '.join(waiting)} {'waits' if len(waiting) == 1 else 'wait'} for a second reviewer's approval."
        if granted:
            return f"{reference}: {', '.join(granted)} granted; the applicant is asked to accept the license. {waits}"
        return f"Your approval of {reference} is recorded. {waits}"
    if decision == DecisionKind.REJECT:
        return f"{reference} is rejected. The applicant can read the reason on their status page."
    return f"More information requested for {reference}. It comes back to the queue when the applicant resubmits."


@reviewer_page
@require_POST
def review_decision(request, pk: int):
    access_request = access_request_get_for_reviewer(request.user, pk)
    pending = [
        rv.variant
        for rv in access_request.requested_variants.select_related("variant")
        if rv.decision == VariantDecision.PENDING
    ]
    form = DecisionForm(request.POST, pending_variants=pending)
    if not form.is_valid():
        return _detail_page(request, access_request, decision_form=form, status=400)
    decision = form.cleaned_data["decision"]
    try:
        decided = access_request_decide(
            access_request=access_request,
            reviewer=request.user,
            decision=decision,
            reason=form.cleaned_data["message"]
            if decision == DecisionKind.REQUEST_INFO
            else form.cleaned_data["reason"],
            variants=form.selected_variants() if decision == DecisionKind.APPROVE else None,
            expires_at=form.expires_at() if decision == DecisionKind.APPROVE else None,
            request=request,
        )
    except ValidationError as exc:
        reason_field = "message" if decision == DecisionKind.REQUEST_INFO else "reason"
        service_errors_to_form(form, exc, {"expires_at": "expires_on", "reason": reason_field})
        return _detail_page(request, access_request, decision_form=form, status=400)
    except PermissionDenied as exc:  # e.g. the reviewer's own request
        return _detail_page(request, access_request, decision_form=form, error=str(exc), status=403)
    except StateConflict as exc:
        return _detail_page(request, access_request, decision_form=form, error=exc.message, status=409)
    messages.success(request, _decision_message(decided, decision))
    return redirect("review-detail", pk=pk)


@reviewer_page
@require_GET
def review_stats(request):
    now = timezone.now()
    weeks = requests_per_week_by_outcome(now=now)
    rates = approval_rate_by_organization_type(now=now)
    times = time_to_decision(now=now)
    decided = sum(rate.decided for rate in rates)
    approved = sum(rate.approved for rate in rates)
    return render(
        request,
        "access/review/stats.html",
        {
            "weeks_shown": STATS_WEEKS,
            "weeks": weeks,
            "submitted": sum(week.total for week in weeks),
            "outcomes": [(outcome, OUTCOME_LABELS[outcome]) for outcome in OUTCOMES],
            "weekly_chart": weekly_outcomes_chart(weeks),
            "rates": rates,
            "rate_chart": approval_rate_chart(rates),
            "decided": decided,
            "overall_rate": round(approved / decided * 100) if decided else None,
            "times": times,
            "median_label": duration_label(times.median),
            "median_chart": median_chart(times),
            "chart_width": CHART_WIDTH,
            "chart_height": CHART_HEIGHT,
        },
    )
