"""Webhooks in the admin: endpoints (URL, secret, event types, private network allowed or not),
and the delivery log (each message's status, attempts and answers) with manual redelivery."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.db import transaction

from access.audit.services import audit_event_record
from access.webhooks.delivery import address_allowed
from access.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from access.webhooks.services import webhook_redeliver


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(
        max_length=500, assume_scheme="https", help_text="Where events are POSTed (https:// in production)."
    )
    events = forms.MultipleChoiceField(
        choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple, help_text="The event types sent here."
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "events", "is_active", "allow_private_network", "secret"]

    def clean_url(self):
        url = self.cleaned_data["url"]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise forms.ValidationError("Use an http:// or https:// URL.")
        try:
            parts.port  # noqa: B018  (raises for a port out of range)
            (parts.hostname or "").encode("idna")
        except (ValueError, UnicodeError) as exc:
            raise forms.ValidationError(f"This URL cannot be used: {exc}.") from exc
        return url

    def clean_secret(self):
        secret = self.cleaned_data["secret"].strip()
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (ValueError, binascii.Error):
            key = b""
        if not secret.startswith("whsec_") or not 24 <= len(key) <= 64:
            raise forms.ValidationError(
                "Use whsec_ and 24 to 64 bytes in base64 (the default is a fresh one); a weaker key could be guessed."
            )
        return secret

    def clean(self):
        cleaned = super().clean()
        host = urlsplit(cleaned.get("url") or "").hostname or ""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None  # a name: its addresses are checked at each delivery
        if literal is not None and not address_allowed(str(literal)) and not cleaned.get("allow_private_network"):
            self.add_error(
                "url",
                f"{host} is a loopback, private or reserved address: tick 'Allow private network' to deliver there.",
            )
        return cleaned


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ["attempted_at", "status_code", "error", "response_excerpt", "duration_ms", "manual"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["url", "description", "is_active", "allow_private_network", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["url", "description"]

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            if not change:
                obj.created_by = request.user
            super().save_model(request, obj, form, change)
            audit_event_record(
                action="webhook.endpoint_changed" if change else "webhook.endpoint_created",
                actor=request.user,
                target=obj,
                request=request,
                details={
                    "url": obj.url, "events": obj.events, "active": obj.is_active,
                    "allow_private_network": obj.allow_private_network,
                    "secret_changed": "secret" in form.changed_data,
                },
            )  # fmt: skip


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "event_type", "endpoint", "status", "attempts", "last_status_code", "last_error"]
    list_filter = ["status", "event_type", "endpoint"]
    search_fields = ["message_id", "body"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "endpoint", "message_id", "event_type", "status", "attempts", "last_status_code", "last_error",
        "created_at", "last_attempt_at", "next_attempt_at", "delivered_at", "body",
    ]  # fmt: skip
    fields = readonly_fields
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Redeliver the selected messages now (same id and body)")
    def redeliver(self, request, queryset):
        deliveries = list(queryset.select_related("endpoint"))
        with transaction.atomic():
            for delivery in deliveries:
                audit_event_record(
                    action="webhook.redelivered", actor=request.user, target=delivery,
                    request=request, details={"message": delivery.message_id, "endpoint": delivery.endpoint.url},
                )  # fmt: skip
        for delivery in deliveries:
            webhook_redeliver(delivery)
        messages.success(
            request, f"{len(deliveries)} message{'s' if len(deliveries) != 1 else ''} queued for redelivery; "
            "refresh to see the attempts."
        )  # fmt: skip
