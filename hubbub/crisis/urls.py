from django.urls import include, path

from hubbub.crisis import views

crisis_patterns = (
    [
        path("", views.home, name="home"),
        path("banner/", views.banner, name="banner"),
        path("start/", views.start, name="start"),
        path("<int:mode_id>/end/", views.end, name="end"),
        path("alerts/<int:alert_id>/acknowledge/", views.acknowledge_alert, name="acknowledge"),
        path("alerts/<int:alert_id>/close/", views.close_alert, name="close"),
    ],
    "crisis",
)

# Included at the site root: crisis pages, and the approvals page of the outbox that crisis mode feeds.
urlpatterns = [
    path("crisis/", include(crisis_patterns)),
    path("approvals/", include("hubbub.publishing.urls")),
]
