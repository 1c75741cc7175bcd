"""The applicant's pages: apply, follow a request (status, thread, history), edit and resubmit
it, withdraw it.

Each view looks its object up with ``access_request_get_for_applicant`` on its first line,
validates with a form, calls one service and renders or redirects."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from access.catalog.models import ModelFamily
from access.catalog.selectors import license_current, variants_listed
from access.grants.selectors import variant_access_for_user
from access.requests.forms import AccessRequestForm, ApplicationForm, RequestEditForm, WithdrawForm
from access.requests.models import AccessRequest, MessageKind, RequestStatus
from access.requests.selectors import (
    access_request_get_for_applicant,
    decision_estimate,
    request_history,
    requests_annotate_outcomes,
    requests_for_applicant,
)
from access.requests.services import access_request_withdraw
from access.review.selectors import approval_progress, approvals_by_variant
from portal.errors import StateConflict

# Access states in which applying again for a model makes no sense (see docs/api.md ``access``).
_BUSY_ACCESS_STATES = {"requested", "license_required", "active", "suspended"}


def _apply_family(request) -> ModelFamily | None:
    """The family whose models the form offers: that of the first model ticked or
    named in ``?variant=``, else the first family with listed models."""
    slugs = request.POST.getlist("variants")[:1] or [request.GET.get("variant", "")]
    variant = variants_listed().filter(slug__in=slugs).first()
    if variant is not None:
        return variant.family
    return ModelFamily.objects.filter(variants__is_listed=True).order_by("name").first()


def _apply_page(request, form: AccessRequestForm | None, family: ModelFamily | None, status: int = 200):
    variants = list(form.fields["variants"].queryset) if form else []
    access = variant_access_for_user(request.user, variants)
    return render(
        request,
        "access/apply/apply.html",
        {
            "form": form,
            "family": family,
            "license": license_current(family) if family else None,
            "variant_rows": [(v, access[v.slug], access[v.slug] in _BUSY_ACCESS_STATES) for v in variants],
            # Read from the catalog: which models wait for more than one reviewer.
            "two_reviewer_variants": [v for v in variants if v.approvals_required > 1],
            "most_reviewers": max((v.approvals_required for v in variants), default=1),
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def apply(request):
    family = _apply_family(request)
    if family is None or license_current(family) is None:
        return _apply_page(request, None, family)
    variants = variants_listed().filter(family=family)
    if request.method == "POST":
        form = AccessRequestForm(request.POST, variants=variants, applicant=request.user)
        access_request = form.submit(applicant=request.user, request=request) if form.is_valid() else None
        if access_request is None:
            return _apply_page(request, form, family, status=400)
        messages.success(
            request,
            f"Your request {access_request.reference} is submitted. Quote this reference if you write to us.",
        )
        return redirect("request-detail", access_request.pk)
    # Start from the details of the applicant's last request: nobody should type them twice.
    initial = ApplicationForm.initial_from(requests_for_applicant(request.user).first())
    initial["variants"] = [request.GET["variant"]] if request.GET.get("variant") else []
    return _apply_page(request, AccessRequestForm(initial=initial, variants=variants), family)


@login_required
@require_http_methods(["GET"])
def request_list(request):
    access_requests = requests_annotate_outcomes(requests_for_applicant(request.user))
    return render(request, "access/apply/requests.html", {"access_requests": access_requests})


@login_required
@require_http_methods(["GET"])
def request_detail(request, pk: int):
    access_request = access_request_get_for_applicant(request.user, pk)
    approvals = {access_request.pk: approvals_by_variant(access_request)} if access_request.is_open else {}
    requests_annotate_outcomes([access_request], approvals=approvals)
    outcomes = access_request.outcomes
    estimate = decision_estimate(access_request)
    return render(
        request,
        "access/apply/request_detail.html",
        {
            "access_request": access_request,
            "outcomes": outcomes,
            "waiting": [o.variant for o in outcomes if o.status == "waiting"],
            "granted": [o.variant for o in outcomes if o.grant is not None],
            "ended": [o for o in outcomes if o.status in ("revoked", "suspended", "expired")],
            "declined": [o.variant for o in outcomes if o.status == "declined"],
            # The thread only: reviewer notes and screening flags never reach this page.
            "thread": access_request.messages.select_related("author"),
            "history": request_history(access_request),
            # The estimate counts the queue position itself: counted once per page.
            "position": estimate.position if estimate else None,
            "estimate": estimate,
            "approval_progress": approval_progress(access_request),
            "has_grants": access_request.grants.exists(),
            "withdraw_form": WithdrawForm(),
        },
    )


def _edit_page(request, access_request: AccessRequest, form: RequestEditForm, status: int = 200):
    return render(
        request,
        "access/apply/request_edit.html",
        {
            "access_request": access_request,
            "form": form,
            "info_requests": access_request.messages.filter(kind=MessageKind.INFO_REQUEST),
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def request_edit(request, pk: int):
    access_request = access_request_get_for_applicant(request.user, pk)
    if request.method == "GET":
        if access_request.status != RequestStatus.INFO_REQUESTED:
            messages.warning(
                request,
                f"{access_request.reference} is {access_request.get_status_display().lower()}: "
                "you can edit a request only while the reviewers ask for more information.",
            )
            return redirect("request-detail", access_request.pk)
        form = RequestEditForm(initial=ApplicationForm.initial_from(access_request))
        return _edit_page(request, access_request, form)
    form = RequestEditForm(request.POST)
    try:
        resubmitted = None
        if form.is_valid():
            resubmitted = form.resubmit(access_request=access_request, applicant=request.user, request=request)
    except StateConflict as exc:
        messages.warning(request, exc.message)
        return redirect("request-detail", access_request.pk)
    if resubmitted is None:
        return _edit_page(request, access_request, form, status=400)
    if resubmitted.status == RequestStatus.REJECTED:  # the embargo rule, on the edited country
        messages.warning(request, f"Your changes are saved; {access_request.reference} was not approved (see below).")
    else:
        messages.success(
            request,
            f"Your changes are saved and {access_request.reference} is back with the reviewers, in its old place.",
        )
    return redirect("request-detail", access_request.pk)


@login_required
@require_POST
def request_withdraw(request, pk: int):
    access_request = access_request_get_for_applicant(request.user, pk)
    if not WithdrawForm(request.POST).is_valid():
        messages.warning(request, "Nothing changed: confirm that you want to withdraw the request.")
        return redirect("request-detail", access_request.pk)
    try:
        access_request_withdraw(access_request=access_request, applicant=request.user, request=request)
    except StateConflict as exc:
        messages.warning(request, exc.message)
    else:
        messages.success(request, f"You withdrew {access_request.reference}. You can apply again at any time.")
    return redirect("request-detail", access_request.pk)
