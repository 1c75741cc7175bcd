from __future__ import annotations

import datetime as dt

from allauth.account.models import EmailAddress
from allauth.mfa.utils import is_mfa_enabled
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal import roles
from portal.api.errors import api_not_found, api_server_error, json_error_response
from portal.health import health_report
from portal.mfa import (
    MFA_NEXT_SESSION_KEY,
    mfa_redirect,
    safe_next_url,
    session_is_mfa_verified,
    user_needs_mfa_step,
)
from portal.models import ApiToken
from portal.outage import database_unavailable, service_unavailable
from portal.services import api_token_create, api_token_revoke


def _token_get_for_user(request, token_id: int) -> ApiToken:
    """The caller's own token, or 404: nobody can see or revoke another's."""
    token = ApiToken.objects.filter(pk=token_id, user=request.user).first()
    if token is None:
        raise Http404("No such token.")
    return token


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'laptop download script'.")
    expires_on = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The field comes pre-filled with the default expiry; the help says so, and how to have none.
        days = settings.API_TOKEN_DEFAULT_LIFETIME_DAYS
        self.fields["expires_on"].help_text = (
            f"Filled in with the default, {days} days from today. "
            "Clear the date for a token that lasts until you revoke it."
        )

    def clean_expires_on(self):
        expires_on = self.cleaned_data["expires_on"]
        if expires_on is not None and expires_on <= timezone.localdate():
            raise ValidationError("Choose a date after today.")
        return expires_on


def _account_page(request, token_form: ApiTokenForm, status: int = 200):
    return render(
        request,
        "portal/account.html",
        {
            "emails": EmailAddress.objects.filter(user=request.user),
            "role": roles.user_primary_role(request.user),
            "mfa_enabled": is_mfa_enabled(request.user),
            "mfa_verified": session_is_mfa_verified(request),
            "mfa_needed": user_needs_mfa_step(request),
            "tokens": ApiToken.objects.filter(user=request.user),
            "token_form": token_form,
            "now": timezone.now(),
        },
        status=status,
    )


@login_required
@require_GET
@never_cache
def account(request):
    default_expiry = timezone.localdate() + dt.timedelta(days=settings.API_TOKEN_DEFAULT_LIFETIME_DAYS)
    return _account_page(request, ApiTokenForm(initial={"expires_on": default_expiry}))


@login_required
@require_GET
@never_cache
def mfa_required(request):
    """Step one of a reviewer's first login: why an authenticator app is required, before allauth's
    set-up page. Where they were going is kept for the Continue button after the recovery codes."""
    next_url = safe_next_url(request, request.GET.get("next"))
    if is_mfa_enabled(request.user):
        return redirect(next_url or "account")
    request.session[MFA_NEXT_SESSION_KEY] = next_url
    return render(
        request,
        "portal/mfa_required.html",
        {"privileged": roles.user_is_privileged(request.user), "next_url": next_url},
    )


@login_required
@require_GET
def mfa_continue(request):
    """The Continue button under the recovery codes: on to the page the user first asked for."""
    next_url = safe_next_url(request, request.session.pop(MFA_NEXT_SESSION_KEY, ""))
    return redirect(next_url or settings.LOGIN_REDIRECT_URL)


@login_required
@require_POST
@never_cache
def api_token_new(request):
    if user_needs_mfa_step(request):
        return mfa_redirect(request, next_url=reverse("account") + "#api-tokens")
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return _account_page(request, form, status=400)
    expires_on = form.cleaned_data["expires_on"]
    expires_at = None
    if expires_on is not None:
        expires_at = timezone.make_aware(dt.datetime.combine(expires_on, dt.time.min))
    token, secret = api_token_create(
        user=request.user, name=form.cleaned_data["name"], expires_at=expires_at, actor=request.user, request=request
    )
    # Shown once, on this response only; never stored in the session or a message.
    return render(request, "portal/token_created.html", {"token": token, "secret": secret})


@login_required
@require_POST
def api_token_revoke_view(request, token_id: int):
    token = _token_get_for_user(request, token_id)
    api_token_revoke(token=token, actor=request.user, request=request)
    messages.success(request, f"Token “{token.name}” is revoked. Scripts using it now get 401.")
    return redirect("account")


@require_GET
def favicon(request):
    # Resolved per request: the hashed name only exists once collectstatic has run.
    return redirect(static("favicon.svg"), permanent=True)


@require_http_methods(["GET", "HEAD"])
@never_cache
def healthz(request):
    healthy, report = health_report()
    return JsonResponse(report, status=200 if healthy else 503)


# What each health check means to a person reading the status page.
STATUS_CHECK_LABELS = {
    "database": ("Database", "Accounts, requests and decisions can be read and saved."),
    "broker": ("Task queue", "Emails, download bundles and sandbox jobs are handed to the workers."),
    "storage": ("Weight storage", "Model files can be served for download."),
}


@require_http_methods(["GET", "HEAD"])
@never_cache
def status_page(request):
    """/healthz for people: the same checks, in words. Machines keep reading /healthz."""
    healthy, report = health_report()
    checks = [
        {
            "name": name,
            "label": STATUS_CHECK_LABELS.get(name, (name.capitalize(), ""))[0],
            "meaning": STATUS_CHECK_LABELS.get(name, ("", ""))[1],
            "ok": result["ok"],
        }
        for name, result in report["checks"].items()
    ]
    return render(
        request,
        "portal/status.html",
        {"healthy": healthy, "checks": checks, "checked_at": timezone.now()},
        status=200 if healthy else 503,
    )


def livez(request):
    """Liveness: the process answers requests. Touches nothing else, so a load balancer or
    orchestrator can poll it often; /healthz is the readiness check with dependencies."""
    return HttpResponse("ok\n", content_type="text/plain")


def _wants_json(request) -> bool:
    return request.path.startswith(("/api/", "/v1/"))


def api_path_not_found(request, *args, **kwargs):
    return api_not_found(request)


def _gateway_path(request) -> bool:
    return request.path.startswith("/dl/")


def _gateway_plain(status: int, message: str) -> HttpResponse:
    """Download links are read by curl, wget and download.sh: every answer under /dl/, the
    unexpected ones too, is one line of plain text, as the gateway's own refusals are."""
    response = HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def bad_request(request, exception=None):
    # Django answers here for requests it refuses before any view runs (a body over
    # DATA_UPLOAD_MAX_MEMORY_SIZE, a malformed host); the API still speaks JSON.
    if _wants_json(request):
        return json_error_response(
            400, "bad_request", "The request could not be read: it is malformed or its body is too large."
        )
    if _gateway_path(request):
        return _gateway_plain(400, "The request could not be read. Copy the whole download link and try again.")
    return render(request, "400.html", status=400)


def not_found(request, exception=None):
    if _wants_json(request):
        return api_not_found(request, exception)
    if _gateway_path(request):
        return _gateway_plain(404, "This download link is not valid. Copy the whole link from your downloads page.")
    return render(request, "404.html", status=404)


def server_error(request):
    if database_unavailable():
        return service_unavailable(request)  # 503 with Retry-After: clients try again
    if _wants_json(request):
        return api_server_error(request)
    if _gateway_path(request):
        return _gateway_plain(500, "The download failed on our side. It has been logged; try again in a few minutes.")
    return render(request, "500.html", status=500)
