from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView

from portal import views as portal_views
from portal.api.views import api_docs

# Each domain of `access` mounts its own routes; included by name, so the project imports none of
# its modules (see the import contracts in pyproject.toml).
api_v1 = [
    path("", include("access.catalog.api_urls")),
    path("", include("access.requests.api_urls")),
    path("", include("access.grants.api_urls")),
    path("", include("access.distribution.api_urls")),
    path("", include("access.review.api_urls")),
    path("", include("inference.sandbox.api_urls")),
]

urlpatterns = [
    # First: download links are the busiest URLs, and the resolver tries patterns in order.
    path("dl/", include("access.distribution.gateway.urls")),
    path("hub/", include("access.distribution.hub_urls")),
    path("", include("access.catalog.urls")),
    path("", include("access.requests.urls")),
    # Before the grants' pages: their review/grants/<pk>/<action>/ would take the download log's path.
    path("", include("access.distribution.urls")),
    path("", include("access.grants.urls")),
    path("review/", include("access.review.urls")),
    path("account/", portal_views.account, name="account"),
    path("account/tokens/", portal_views.api_token_new, name="api-token-new"),
    path("account/tokens/<int:token_id>/revoke/", portal_views.api_token_revoke_view, name="api-token-revoke"),
    # A reviewer's first login: why an authenticator app is required, and on after its recovery codes.
    path("accounts/2fa/required/", portal_views.mfa_required, name="mfa-required"),
    path("accounts/2fa/continue/", portal_views.mfa_continue, name="mfa-continue"),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("healthz", portal_views.healthz, name="healthz"),
    path("status/", portal_views.status_page, name="status"),
    path("livez", portal_views.livez, name="livez"),
    path("favicon.ico", portal_views.favicon),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The sandbox's OpenAI-compatible API, for every model and for one (per-model base URL).
    path("v1/", include("inference.sandbox.urls")),
    path("sandbox/<slug:slug>/v1/", include(("inference.sandbox.urls", "sandbox-one"))),
    # Beside it, that model's tokenizer, as lm-evaluation-harness's remote tokenizer reads it.
    path("sandbox/<slug:slug>/", include("inference.sandbox.tokenizer_urls")),
    # The playground, the researcher's usage page, and the reviewers' view of sandbox use.
    path("", include("inference.sandbox.page_urls")),
    path("api/docs/", api_docs, name="api-docs"),
    # Unknown API paths answer with the API's JSON error body, also while DEBUG is on. Nothing happens
    # there, so no CSRF check: a script's POST to /api/v1/grants/abc/revoke (a bearer token, no
    # cookie) learns that the path is wrong (404), not that a CSRF cookie is missing (403).
    re_path(r"^api/", csrf_exempt(portal_views.api_path_not_found)),
]

handler400 = "portal.views.bad_request"
handler404 = "portal.views.not_found"
handler500 = "portal.views.server_error"
