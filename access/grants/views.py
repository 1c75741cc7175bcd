"""Grant pages. The holder's: "My access" and accepting the license. The reviewers'
(``reviewer_page`` and the grant-manager permission): the grant list with its filter, granting
without a request, and revoke, suspend and reinstate.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.grants.forms import GrantActionForm, GrantCreateForm, GrantFilterForm, LicenseAcceptForm
from access.grants.models import Grant
from access.grants.selectors import (
    grant_get_for_holder,
    grant_get_for_manager,
    grant_manager_required,
    grants_annotate_effective_status,
    grants_for_holder_page,
    grants_for_review,
)
from access.grants.services import GRANT_STATUS_ACTIONS, grant_create, grant_status_change
from access.review.permissions import reviewer_page
from portal.errors import StateConflict
from portal.forms import service_errors_to_form
from portal.pages import with_query

GRANTS_PAGE_SIZE = 50
# --- The holder's pages ----------------------------------------------------------------------


@login_required
@require_http_methods(["GET"])
def grant_list(request):
    return render(request, "access/apply/grants.html", {"grants": grants_for_holder_page(request.user)})


def _license_page(request, grant: Grant, form: LicenseAcceptForm, status: int = 200):
    # ``grant`` comes from grant_get_for_holder, with its effective status set.
    return render(
        request,
        "access/apply/grant_license.html",
        {"grant": grant, "license": license_current(grant.variant.family), "form": form},
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def grant_license(request, pk: int):
    grant = grant_get_for_holder(request.user, pk)
    if request.method == "GET":
        return _license_page(request, grant, LicenseAcceptForm())
    form = LicenseAcceptForm(request.POST)
    try:
        accepted = None
        if form.is_valid():
            accepted = form.accept_for(grant=grant, user=request.user, request=request)
    except StateConflict as exc:
        messages.warning(request, exc.message)
        return redirect("grants")
    if accepted is None:
        return _license_page(request, grant, form, status=400)
    license_version = form.cleaned_data["license_id"]
    messages.success(
        request,
        f"You accepted the {license_version.title}, version {license_version.version}. "
        f"Your access to {grant.variant.name} is {accepted.get_status_display().lower()}.",
    )
    return redirect("grants")


# --- The reviewers' grant pages --------------------------------------------------------------


def _grants_page(request, create_form: GrantCreateForm, status: int = 200):
    grant_manager_required(request.user)
    variants = list(ModelVariant.objects.order_by("family__name", "position", "parameters"))
    filter_form = GrantFilterForm(request.GET, variants=variants)
    filter_form.is_valid()
    filters = filter_form.filters()
    grants = grants_for_review(
        status=filters.get("status") or "", variant=filters.get("variant") or "", email=filters.get("email") or ""
    )
    page = Paginator(grants, GRANTS_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "access/review/grants.html",
        {
            "filter_form": filter_form,
            "create_form": create_form,
            "page": page,
            "rows": grants_annotate_effective_status(page.object_list),
            "query": query.urlencode(),
            "full_query": request.GET.urlencode(),
        },
        status=status,
    )


@reviewer_page
@require_http_methods(["GET", "POST"])
def review_grants(request):
    if request.method == "GET":
        return _grants_page(request, GrantCreateForm())
    grant_manager_required(request.user)
    form = GrantCreateForm(request.POST)
    if not form.is_valid():
        return _grants_page(request, form, status=400)
    try:
        grant = grant_create(
            user=form.user,
            variant=form.cleaned_data["variant"],
            actor=request.user,
            reason=form.cleaned_data["reason"],
            expires_at=form.expires_at(),
            request=request,
        )
    except ValidationError as exc:
        service_errors_to_form(form, exc, {"expires_at": "expires_on", "user": "email"})
        return _grants_page(request, form, status=400)
    except StateConflict as exc:
        form.add_error(None, exc.message)
        return _grants_page(request, form, status=409)
    except PermissionDenied as exc:
        form.add_error(None, str(exc))
        return _grants_page(request, form, status=403)
    messages.success(
        request,
        f"{grant.user.email} now has a grant for {grant.variant.name}; it becomes active when they accept the license.",
    )
    return redirect(with_query(reverse("review-grants"), f"email={grant.user.email}"))


@reviewer_page
@require_POST
def review_grant_action(request, pk: int, action: str):
    if action not in GRANT_STATUS_ACTIONS:
        raise Http404(f"No grant action {action!r}; use revoke, suspend or reinstate.")
    grant = grant_get_for_manager(request.user, pk)
    form = GrantActionForm(request.POST)
    back = with_query(reverse("review-grants"), request.POST.get("query", ""))
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
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
        messages.error(request, f"{grant.user.email} · {grant.variant.name}: {' '.join(exc.messages)}")
    except StateConflict as exc:
        messages.error(request, f"{grant.user.email} · {grant.variant.name}: {exc.message}")
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        done = GRANT_STATUS_ACTIONS[action]
        messages.success(request, f"The grant of {grant.variant.name} to {grant.user.email} is {done}.")
    return redirect(back)
