from django.urls import path

from . import api

urlpatterns = [
    path("images/<int:image_id>/live/", api.LiveStartView.as_view(), name="live-start"),
    path("images/<int:image_id>/live/<int:session_id>/", api.LiveSessionView.as_view(), name="live-session"),
    path("images/<int:image_id>/live/<int:session_id>/draft/", api.LiveDraftView.as_view(), name="live-draft"),
    path("images/<int:image_id>/live/<int:session_id>/overlay.png", api.LiveOverlayView.as_view(),
         name="live-overlay"),
    path("images/<int:image_id>/live/<int:session_id>/keep/", api.LiveKeepView.as_view(), name="live-keep"),
]
