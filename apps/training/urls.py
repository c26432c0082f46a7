from django.urls import path, re_path

from . import api

urlpatterns = [
    path("projects/<int:project_id>/training-runs/", api.ProjectTrainingRunsView.as_view(), name="training-runs"),
    path("training-runs/<int:run_id>/", api.TrainingRunView.as_view(), name="training-run"),
    path("training-runs/<int:run_id>/cancel/", api.CancelRunView.as_view(), name="training-run-cancel"),
    path("projects/<int:project_id>/model-versions/", api.ProjectModelVersionsView.as_view(), name="model-versions"),
    path("model-versions/<int:version_id>/", api.ModelVersionView.as_view(), name="model-version"),
    path("model-versions/<int:version_id>/activate/", api.ActivateVersionView.as_view(), name="model-version-activate"),
    re_path(r"^model-versions/(?P<version_id>\d+)/checkpoint/?$", api.CheckpointDownloadView.as_view(),
            name="model-version-checkpoint"),
]
