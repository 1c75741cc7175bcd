from django.conf import settings

from portal.roles import user_has_role, user_is_privileged


def portal(request):
    user = getattr(request, "user", None)
    return {
        "site_name": settings.PORTAL_SITE_NAME,
        "user_is_reviewer": bool(user) and user_has_role(user, "reviewer") or bool(user) and user_has_role(user, "admin"),
        "user_is_privileged": bool(user) and user_is_privileged(user),
    }
