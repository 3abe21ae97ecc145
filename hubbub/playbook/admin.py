from django.contrib import admin

from hubbub.playbook.models import Playbook


@admin.register(Playbook)
class PlaybookAdmin(admin.ModelAdmin):
    """Read-only: versions are published with `hubbub playbook PATH`, never edited in place."""

    list_display = ["organization", "version", "is_active", "created_at", "created_by"]
    list_filter = ["organization", "is_active"]
    readonly_fields = ["organization", "version", "source", "rules", "is_active", "created_at", "created_by"]

    def has_add_permission(self, request):
        return False
