from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from hubbub.connectors import views as connector_views

urlpatterns = [
    path("", include("hubbub.inbox.urls")),
    path("listening/", include("hubbub.listening.urls")),
    path("routing/", include("hubbub.routing.urls")),
    path("playbooks/", include("hubbub.playbook.urls")),
    path("", include("hubbub.crisis.urls")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("webhooks/meta/", connector_views.meta_webhook, name="meta_webhook"),
    path("filtered/", include(connector_views.noise_urlpatterns)),
]
