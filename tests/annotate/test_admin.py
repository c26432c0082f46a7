"""Every annotate model has a working admin changelist (with search and filters) and change page."""
from __future__ import annotations

import pytest
from django.urls import reverse

from apps.annotate import services

MODELS = ["project", "labelclass", "membership", "image", "annotation", "annotationrevision"]


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS)
def test_admin_changelist_and_change_page_render(client, django_user_model, stored_image, owner, model):
    from .test_permissions import mask_b64

    for v in (0, 1):
        services.save_annotation(user=owner, image_id=stored_image.pk, version=v, classes_png=mask_b64(stored_image))
    admin = django_user_model.objects.create_superuser("root", "", "pw-root-123")
    client.force_login(admin)
    assert client.get(reverse(f"admin:annotate_{model}_changelist") + "?q=cells").status_code == 200
    r = client.get(reverse(f"admin:annotate_{model}_changelist"))
    obj = r.context["cl"].result_list[0]
    assert client.get(reverse(f"admin:annotate_{model}_change", args=[obj.pk])).status_code == 200


@pytest.mark.django_db
def test_admin_restore_action_saves_an_old_version_as_new(client, django_user_model, stored_image, owner):
    from apps.annotate.models import Annotation, AnnotationRevision

    from .test_permissions import mask_b64

    for v in (0, 1):
        services.save_annotation(user=owner, image_id=stored_image.pk, version=v, classes_png=mask_b64(stored_image))
    admin = django_user_model.objects.create_superuser("root", "", "pw-root-123")
    client.force_login(admin)
    rev = AnnotationRevision.objects.get(image=stored_image, version=1)
    r = client.post(reverse("admin:annotate_annotationrevision_changelist"),
                    {"action": "restore", "_selected_action": [rev.pk]})
    assert r.status_code == 302
    ann = Annotation.objects.get(image=stored_image)
    assert ann.version == 3 and bytes(ann.classes_png) == bytes(rev.classes_png)
