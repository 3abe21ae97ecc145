from django.contrib import admin

from hubbub.playbook.models import Playbook


@admin.register(Playbook)
class PlaybookAdmin(admin.ModelAdmin):
    """Read-only: versions are published on the Playbooks page or with `hubbub playbook PATH`, never
    edited in place."""

    list_display = ["organization", "department", "version", "is_active", "restored_from", "created_at", "created_by"]
    list_filter = ["organization", "is_active"]
    readonly_fields = [
        "organization",
        "department",
        "version",
        "source",
        "rules",
        "is_active",
        "restored_from",
        "created_at",
        "created_by",
    ]

    def has_add_permission(self, request):
        return False
