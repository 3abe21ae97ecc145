from django import forms
from django.contrib import admin

from hubbub.connectors.models import InboundEvent, SocialAccount, WebhookDelivery


class SocialAccountForm(forms.ModelForm):
    # Write-only: the stored token is never shown back, only replaced.
    access_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the current token. Stored encrypted.",
    )

    class Meta:
        model = SocialAccount
        fields = [
            "organization",
            "network",
            "handle",
            "base_url",
            "settings",
            "polling_enabled",
            "poll_interval_seconds",
            "healthy",
        ]

    def save(self, commit=True):
        account = super().save(commit=False)
        if self.cleaned_data.get("access_token"):
            account.credentials = {**account.credentials, "access_token": self.cleaned_data["access_token"]}
        if commit:
            account.save()
        return account


@admin.register(SocialAccount)
class SocialAccountAdmin(admin.ModelAdmin):
    form = SocialAccountForm
    list_display = ["handle", "network", "organization", "healthy", "last_success_at", "last_error_at"]
    list_filter = ["network", "healthy", "organization"]
    readonly_fields = ["cursor", "last_success_at", "last_error", "last_error_at"]


@admin.register(InboundEvent)
class InboundEventAdmin(admin.ModelAdmin):
    list_display = ["id", "account", "external_id", "state", "attempts", "received_at"]
    list_filter = ["state"]
    readonly_fields = ["account", "external_id", "payload", "received_at", "processed_at", "attempts", "error"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Deliveries belong to no organization until split, so they are reviewed here, by operators."""

    list_display = ["id", "source", "state", "received_at"]
    list_filter = ["source", "state"]
    readonly_fields = ["source", "body", "received_at", "state", "error"]
