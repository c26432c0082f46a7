"""URLs of predictions, metric scores, overlays and exports (mounted under /api/v1/)."""
from django.urls import path

from . import api

urlpatterns = [
    path("model-versions/<int:version_id>/predict/", api.predict, name="modelversion-predict"),
    path("model-versions/<int:version_id>/metrics/", api.version_metrics, name="modelversion-metrics"),
    path("model-versions/<int:version_id>/export/<str:fmt>", api.export_model, name="modelversion-export"),
    path("exports/<int:export_id>/", api.export_detail, name="export-detail"),
    path("exports/<int:export_id>/file", api.export_file, name="export-file"),
    path("predictions/<int:prediction_id>/", api.prediction_detail, name="prediction-detail"),
    path("predictions/<int:prediction_id>/accept/", api.accept, name="prediction-accept"),
    path("predictions/<int:prediction_id>/instances.tif", api.prediction_instances, name="prediction-instances"),
    path("predictions/<int:prediction_id>/classes.png", api.prediction_map, {"kind": "classes"},
         name="prediction-classes"),
    path("predictions/<int:prediction_id>/probability.png", api.prediction_map, {"kind": "probability"},
         name="prediction-probability"),
    path("predictions/<int:prediction_id>/uncertainty.png", api.prediction_map, {"kind": "uncertainty"},
         name="prediction-uncertainty"),
    path("predictions/<int:prediction_id>/outlines.png", api.prediction_map, {"kind": "outlines"},
         name="prediction-outlines"),
    path("images/<int:image_id>/predictions/", api.image_predictions, name="image-predictions"),
    path("images/<int:image_id>/weight-map.png", api.weight_map, name="image-weight-map"),
    path("projects/<int:project_id>/model-versions/compare/", api.compare, name="modelversion-compare"),
    path("projects/<int:project_id>/images/next-uncertain/", api.next_uncertain, name="image-next-uncertain"),
    path("projects/<int:project_id>/predictions/", api.project_predictions, name="project-predictions"),
    path("projects/<int:project_id>/export/masks.zip", api.export_masks, name="project-export-masks"),
]
