from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

from portal.mfa import mfa_redirect, user_needs_mfa_step


class PortalAdminSite(admin.AdminSite):
    site_header = "Weights portal administration"
    site_title = "Weights portal admin"
    index_title = "Administration"

    def has_permission(self, request):
        return super().has_permission(request) and not user_needs_mfa_step(request)

    def login(self, request, extra_context=None):
        # One way in for everyone: the portal's login with its rate limits and MFA.
        if request.user.is_authenticated:
            if user_needs_mfa_step(request):
                return mfa_redirect(request, next_url=request.GET.get("next") or request.path.replace("login/", ""))
            if not self.has_permission(request):
                # Logged in but not staff: the portal's login would send them straight back, a loop.
                raise PermissionDenied("The admin is for portal administrators.")
        return redirect_to_login(request.GET.get("next", request.path.replace("login/", "")))
