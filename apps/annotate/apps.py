from django.apps import AppConfig


class AnnotateConfig(AppConfig):
    name = "apps.annotate"
    label = "annotate"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.conf import settings
        from PIL import Image as PILImage

        # Our own limits (checked from the header before decoding, with a per-file error) decide what is
        # too large; Pillow's decompression-bomb guard (89 Mpx by default, an error at twice that) would
        # otherwise refuse PNG/JPEG images and masks far below them with a less helpful message.
        PILImage.MAX_IMAGE_PIXELS = max(int(settings.LABSEG_MAX_IMAGE_PIXELS), int(settings.LABSEG_MAX_MASK_PIXELS))
