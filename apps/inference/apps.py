from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "apps.inference"
    label = "inference"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from apps.training.signals import version_trained

        from . import services  # registers the job kind(s) with labseg.jobs (recovery beat)

        # auto-predict after a training run, wired from this side: training knows nothing of inference
        version_trained.connect(services.on_version_trained, dispatch_uid="inference.auto_predict")
