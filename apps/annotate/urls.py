"""/api/v1/ routes of the annotate app (mounted by labseg/urls.py)."""
from django.urls import path

from . import accounts, api

app_name = "annotate"

urlpatterns = [
    path("auth/token/", api.TokenView.as_view(), name="auth-token"),
    path("me/", api.MeView.as_view(), name="me"),
    path("accounts/", accounts.AccountListView.as_view(), name="account-list"),
    path("projects/", api.ProjectListView.as_view(), name="project-list"),
    path("projects/<int:project_id>/", api.ProjectDetailView.as_view(), name="project-detail"),
    path("projects/<int:project_id>/members/", api.MemberListView.as_view(), name="member-list"),
    path("projects/<int:project_id>/members/<str:username>/", api.MemberDetailView.as_view(), name="member-detail"),
    path("projects/<int:project_id>/classes/", api.ClassListView.as_view(), name="class-list"),
    path("projects/<int:project_id>/classes/<int:index>/", api.ClassDetailView.as_view(), name="class-detail"),
    path("projects/<int:project_id>/images/", api.ProjectImagesView.as_view(), name="image-list"),
    path("images/<int:image_id>/", api.ImageDetailView.as_view(), name="image-detail"),
    path("images/<int:image_id>/file", api.ImageFileView.as_view(), name="image-file"),
    path("images/<int:image_id>/display.png", api.ImageDisplayView.as_view(), name="image-display"),
    path("images/<int:image_id>/thumbnail.png", api.ImageThumbnailView.as_view(), name="image-thumbnail"),
    path("images/<int:image_id>/annotation/", api.AnnotationView.as_view(), name="annotation"),
    path("images/<int:image_id>/annotation/history/", api.AnnotationHistoryView.as_view(), name="annotation-history"),
    path("images/<int:image_id>/annotation/history/<int:version>/", api.AnnotationRevisionView.as_view(),
         name="annotation-revision"),
    path("images/<int:image_id>/annotation/history/<int:version>/restore/", api.AnnotationRestoreView.as_view(),
         name="annotation-restore"),
]
