from django.apps import AppConfig


class AnnotateConfig(AppConfig):
    name = "apps.annotate"
    label = "annotate"
    default_auto_field = "django.db.models.BigAutoField"
