"""Read queries, every one scoped by membership.

Non-members get 404 (a project's existence is not revealed); members with too low a role get 403.
Other apps (training, inference) use these to check access.
"""
from __future__ import annotations

from django.db.models import QuerySet
from rest_framework.exceptions import NotFound, PermissionDenied

from .models import ROLE_RANK, Image, Membership, Project, Role


def projects_for(user) -> QuerySet[Project]:
    if user is None or not user.is_authenticated:
        return Project.objects.none()
    return Project.objects.filter(memberships__user=user)


def role_in(user, project_id: int) -> str | None:
    if user is None or not user.is_authenticated:
        return None
    return Membership.objects.filter(project_id=project_id, user=user).values_list("role", flat=True).first()


def require_role(user, project_id: int, min_role: str = Role.VIEWER) -> str:
    """The user's role in the project; NotFound for non-members, PermissionDenied below ``min_role``."""
    role = role_in(user, project_id)
    if role is None:
        raise NotFound("Project not found.")
    if ROLE_RANK[Role(role)] < ROLE_RANK[Role(min_role)]:
        raise PermissionDenied(
            f"This needs the {Role(min_role).label.lower()} role; you are {Role(role).label.lower()}.")
    return role


def get_project_for(user, project_id: int, min_role: str = Role.VIEWER) -> Project:
    require_role(user, project_id, min_role)
    try:
        return Project.objects.get(pk=project_id)
    except Project.DoesNotExist as exc:  # deleted in between
        raise NotFound("Project not found.") from exc


def get_scoped(queryset: QuerySet, pk: int, user, min_role: str = Role.VIEWER, *, label: str,
               project_attr: str = "project_id"):
    """The row ``pk`` of ``queryset`` if ``user`` has ``min_role`` in its project.

    A missing row and a non-member both answer the same 404 ("<label> not found."), so ids of other
    projects' rows are not revealed; a member below ``min_role`` gets 403. Every app's
    "get X for this user" goes through here.
    """
    obj = queryset.filter(pk=pk).first()
    if obj is None:
        raise NotFound(f"{label} not found.")
    project_id = obj
    for part in project_attr.split("."):
        project_id = getattr(project_id, part)
    try:
        require_role(user, project_id, min_role)
    except NotFound as exc:
        raise NotFound(f"{label} not found.") from exc
    return obj


def get_image_for(user, image_id: int, min_role: str = Role.VIEWER) -> Image:
    return get_scoped(Image.objects.select_related("project"), image_id, user, min_role, label="Image")


def projects_with_stats(user) -> QuerySet[Project]:
    """The user's projects with ``my_role`` and ``image_count`` annotated."""
    from django.db.models import Count, OuterRef, Subquery

    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    return (projects_for(user).annotate(my_role=Subquery(role), image_count=Count("images", distinct=True))
            .prefetch_related("label_classes"))


def images_in(project: Project, split: str | None = None) -> QuerySet[Image]:
    """A project's images with ``has_annotation``, ``annotation_version`` and ``labelled_pixels`` annotated."""
    from django.db.models import BooleanField, Case, Value, When
    from django.db.models.functions import Coalesce

    qs = Image.objects.filter(project=project)
    if split:
        qs = qs.filter(split=split)
    return qs.annotate(
        annotation_version=Coalesce("annotation__version", 0),
        labelled_pixels=Coalesce("annotation__labelled_pixels", 0),
        has_annotation=Case(When(annotation__version__gt=0, then=Value(True)), default=Value(False),
                            output_field=BooleanField()),
    ).order_by("id")


def image_with_stats(image_id: int) -> Image | None:
    """One image with the same annotations as :func:`images_in` (after a permission check)."""
    img = Image.objects.filter(pk=image_id).select_related("project").first()
    return images_in(img.project).filter(pk=image_id).first() if img else None
