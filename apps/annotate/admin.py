"""Admin for the PI: projects with their classes and members, images, annotations and their history."""
from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html

from . import services
from .models import Annotation, AnnotationRevision, Image, LabelClass, Membership, Project


class LabelClassInline(admin.TabularInline):
    model = LabelClass
    extra = 0
    fields = ("index", "name", "color")


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "member_count", "image_count", "created_at")
    list_filter = ("created_at",)
    search_fields = ("name", "description", "owner__username")
    list_select_related = ("owner",)
    inlines = (LabelClassInline, MembershipInline)
    readonly_fields = ("created_at", "updated_at")

    @admin.display(description="members")
    def member_count(self, obj: Project) -> int:
        return obj.memberships.count()

    @admin.display(description="images")
    def image_count(self, obj: Project) -> int:
        return obj.images.count()


@admin.register(LabelClass)
class LabelClassAdmin(admin.ModelAdmin):
    list_display = ("project", "index", "name", "swatch")
    list_filter = ("project",)
    search_fields = ("name", "project__name")

    @admin.display(description="colour")
    def swatch(self, obj: LabelClass):
        return format_html('<span style="display:inline-block;width:1em;height:1em;background:{}"></span> {}',
                           obj.color, obj.color)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "project", "role", "created_at")
    list_filter = ("role", "project")
    search_fields = ("user__username", "project__name")
    list_select_related = ("user", "project")
    autocomplete_fields = ("user",)


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ("original_filename", "project", "split", "width", "height", "channels", "dtype", "uploaded_by",
                    "created_at")
    list_filter = ("split", "dtype", "channels", "project")
    search_fields = ("original_filename", "checksum", "project__name")
    list_select_related = ("project", "uploaded_by")
    readonly_fields = ("checksum", "size_bytes", "width", "height", "channels", "dtype", "display_range", "file",
                       "thumbnail", "thumbnail_preview", "created_at")

    @admin.display(description="preview")
    def thumbnail_preview(self, obj: Image):
        if not obj.pk or not obj.thumbnail:
            return "-"
        return format_html('<img src="/api/v1/images/{}/thumbnail.png" style="max-width:256px">', obj.pk)


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ("image", "project", "version", "labelled_pixels", "updated_by", "updated_at")
    list_filter = ("image__project", "updated_at")
    search_fields = ("image__original_filename", "updated_by__username")
    list_select_related = ("image__project", "updated_by")
    readonly_fields = ("image", "version", "labelled_pixels", "strokes", "updated_by", "updated_at")
    exclude = ("classes_png", "instances_png")

    @admin.display(description="project")
    def project(self, obj: Annotation):
        return obj.image.project


@admin.register(AnnotationRevision)
class AnnotationRevisionAdmin(admin.ModelAdmin):
    """Read-only history; the one action saves a chosen old version again as the newest one."""

    list_display = ("image", "version", "labelled_pixels", "updated_by", "updated_at", "superseded_at")
    list_filter = ("image__project",)
    search_fields = ("image__original_filename", "updated_by__username")
    list_select_related = ("image", "updated_by")
    exclude = ("classes_png", "instances_png")
    actions = ("restore",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Restore the selected version (saved as a new version)")
    def restore(self, request, queryset):
        for rev in queryset.select_related("image__project"):
            try:
                ann = services.restore_revision(user=request.user, image_id=rev.image_id, version=rev.version,
                                                check_role=False)
            except Exception as exc:  # noqa: BLE001 - show it to the admin user, keep going
                self.message_user(request, f"{rev}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{rev.image}: restored v{rev.version} as v{ann.version}")
