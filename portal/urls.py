from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from access import api as access_api
from access import views as access_views
from portal import views as portal_views
from portal.api.views import api_docs

api_v1 = [
    path("models", access_api.ModelListApi.as_view(), name="api-models"),
    path("models/<slug:slug>", access_api.ModelDetailApi.as_view(), name="api-model-detail"),
    path("licenses/<int:license_id>", access_api.LicenseDetailApi.as_view(), name="api-license-detail"),
    path("", include("access.api_urls")),
]

urlpatterns = [
    # First: download links are the busiest URLs, and the resolver tries patterns in order.
    path("dl/", include("access.urls_gateway")),
    path("", access_views.catalog, name="catalog"),
    path("models/<slug:slug>/", access_views.variant_detail, name="variant-detail"),
    path("licenses/<int:license_id>/", access_views.license_detail, name="license-detail"),
    path("", include("access.urls_apply")),
    path("review/", include("access.urls_review")),
    path("account/", portal_views.account, name="account"),
    path("account/tokens/", portal_views.api_token_new, name="api-token-new"),
    path("account/tokens/<int:token_id>/revoke/", portal_views.api_token_revoke_view, name="api-token-revoke"),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("healthz", portal_views.healthz, name="healthz"),
    path("livez", portal_views.livez, name="livez"),
    path("favicon.ico", portal_views.favicon),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", api_docs, name="api-docs"),
    # Unknown API paths answer with the API's JSON error body, also while DEBUG is on.
    re_path(r"^(api|v1)/", portal_views.api_path_not_found),
]

handler400 = "portal.views.bad_request"
handler404 = "portal.views.not_found"
handler500 = "portal.views.server_error"
