from django.contrib import admin

from hubbub.accounts.models import Department, Membership, Organization


class DepartmentInline(admin.TabularInline):
    model = Department
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    inlines = [DepartmentInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "availability", "capacity"]
    list_filter = ["organization", "role", "availability"]
    filter_horizontal = ["departments"]
    fields = [
        "user",
        "organization",
        "role",
        "departments",
        "availability",
        "capacity",
        "languages",
        "channels",
        "topics",
    ]
