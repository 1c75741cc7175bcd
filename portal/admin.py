from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import transaction

from access.audit.services import audit_event_record
from portal.models import ApiToken, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_active", "is_staff", "date_joined", "last_login"]
    list_filter = ["is_active", "is_staff", "groups"]
    search_fields = ["email", "first_name", "last_name"]
    readonly_fields = ["last_login", "date_joined"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Personal info", {"fields": ["first_name", "last_name"]}),
        ("Status", {"fields": ["is_active", "last_login", "date_joined"]}),
        ("Role", {"fields": ["groups"], "description": "Change roles with `manage.py portal_user add --role`."}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]

    # Django's admin calls these after every add and change, including the
    # separate password-change form, so each edit leaves an audit event.
    def log_addition(self, request, obj, message):
        super().log_addition(request, obj, message)
        self._audit(request, obj, "user.created_by_admin", message)

    def log_change(self, request, obj, message):
        super().log_change(request, obj, message)
        self._audit(request, obj, "user.changed_by_admin", message)

    @staticmethod
    def _audit(request, user, action, message):
        with transaction.atomic():
            audit_event_record(
                action=action, actor=request.user, target=user, request=request, details={"change": message}
            )

    def get_readonly_fields(self, request, obj=None):
        # Roles change only through portal_user / user_role_set, which audits them.
        return [*self.readonly_fields, "groups"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "hint", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["revoked_at", "expires_at"]
    search_fields = ["user__email", "name", "hint"]
    readonly_fields = [field.name for field in ApiToken._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
