from django.urls import path

from hubbub.listening import views

app_name = "listening"
urlpatterns = [
    path("", views.query_list, name="list"),
    path("new/", views.create, name="create"),
    path("<int:query_id>/", views.edit, name="edit"),
    path("<int:query_id>/enabled/", views.set_enabled, name="set_enabled"),
    path("<int:query_id>/delete/", views.delete, name="delete"),
    path("validate/", views.validate, name="validate"),
    path("preview/", views.preview, name="preview"),
]
