from django.urls import path

from hubbub.inbox import views

app_name = "inbox"
urlpatterns = [
    path("", views.queue, name="queue"),
    path("queue/rows/", views.queue_rows, name="queue_rows"),
    path("cases/<int:case_id>/", views.case_detail, name="case"),
    path("cases/<int:case_id>/thread/", views.case_thread, name="case_thread"),
    path("cases/<int:case_id>/claim/", views.claim, name="claim"),
    path("cases/<int:case_id>/assign/", views.assign, name="assign"),
    path("cases/<int:case_id>/reply/", views.reply, name="reply"),
    path("cases/<int:case_id>/note/", views.add_note, name="note"),
    path("cases/<int:case_id>/transfer/", views.transfer, name="transfer"),
    path("cases/<int:case_id>/resolve/", views.resolve, name="resolve"),
    path("cases/<int:case_id>/reopen/", views.reopen, name="reopen"),
    path("cases/<int:case_id>/priority/", views.set_priority, name="priority"),
    path("cases/<int:case_id>/customer/tier/", views.set_customer_tier, name="customer_tier"),
    path("cases/<int:case_id>/labels/", views.correct_labels, name="labels"),
    path("cases/<int:case_id>/replies/<int:outbound_id>/retry/", views.retry_reply, name="retry_reply"),
    path("dead-letters/", views.dead_letter_list, name="dead_letters"),
    path("dead-letters/<int:event_id>/retry/", views.retry_event, name="retry_event"),
    path("accounts/", views.account_list, name="accounts"),
]
