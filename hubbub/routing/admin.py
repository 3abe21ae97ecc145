from django.contrib import admin

from hubbub.routing.models import Assignment


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["case", "user", "route", "assigned_at", "released_at", "release_reason"]
    list_filter = ["organization", "route", "release_reason"]
    raw_id_fields = ["case", "user"]
