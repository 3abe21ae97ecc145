from django.urls import path

from hubbub.routing import views

app_name = "routing"
urlpatterns = [
    path("", views.home, name="home"),
    path("board/", views.board, name="board"),
    path("next/", views.next_case, name="next_case"),
    path("availability/", views.availability, name="availability"),
    path("mode/", views.assignment_mode, name="assignment_mode"),
]
