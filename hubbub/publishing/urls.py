from django.urls import path

from hubbub.publishing import views

app_name = "publishing"
urlpatterns = [
    path("", views.approvals, name="approvals"),
    path("<int:outbound_id>/approve/", views.approve, name="approve"),
    path("<int:outbound_id>/send-back/", views.send_back, name="send_back"),
    path("<int:outbound_id>/resubmit/", views.resubmit, name="resubmit"),
]
