from django.urls import path

from hubbub.playbook import views

app_name = "playbook"
intake = {"scope_slug": None}
urlpatterns = [
    path("", views.playbook_list, name="list"),
    path("hand-offs/", views.handoffs, name="handoffs"),
    path("hand-offs/<int:handoff_id>/acknowledge/", views.acknowledge_handoff, name="acknowledge_handoff"),
    path("versions/<int:playbook_id>/", views.version, name="version"),
    path("versions/<int:playbook_id>/rollback/", views.rollback, name="rollback"),
    path("intake/", views.detail, intake, name="intake_detail"),
    path("intake/publish/", views.publish, intake, name="intake_publish"),
    path("intake/validate/", views.validate, intake, name="intake_validate"),
    path("intake/dry-run/", views.dry_run, intake, name="intake_dry_run"),
    path("intake/draft/", views.save_draft, intake, name="intake_draft"),
    path("intake/draft/discard/", views.discard_draft, intake, name="intake_discard"),
    path("intake/form/", views.edit_form, intake, name="intake_form"),
    path("departments/<slug:scope_slug>/", views.detail, name="detail"),
    path("departments/<slug:scope_slug>/publish/", views.publish, name="publish"),
    path("departments/<slug:scope_slug>/validate/", views.validate, name="validate"),
    path("departments/<slug:scope_slug>/dry-run/", views.dry_run, name="dry_run"),
    path("departments/<slug:scope_slug>/draft/", views.save_draft, name="draft"),
    path("departments/<slug:scope_slug>/draft/discard/", views.discard_draft, name="discard"),
    path("departments/<slug:scope_slug>/form/", views.edit_form, name="form"),
]
