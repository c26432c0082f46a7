"""Thin DRF views for projects, members, classes, images and annotations: parse, call a service, serialise.

Every view checks access through selectors (non-members: 404; too low a role: 403).
"""
from __future__ import annotations

import io

import numpy as np
from django.http import FileResponse, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from PIL import Image as PILImage
from rest_framework import status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from labseg.api import BINARY_RENDERERS, error_responses
from labseg.ml import io as mlio

from . import serializers as s, services
from .display import parse_display_params
from .models import Annotation, AnnotationRevision, Role, Split
from .selectors import get_image_for, get_project_for, image_with_stats, images_in, projects_with_stats
from .uploads import batch_upload_handlers

PNG = {(200, "image/png"): OpenApiTypes.BINARY}


def _errors(*codes: int, auth: bool = True, binary: bool = False) -> dict:
    return error_responses(*codes, auth=auth, binary=binary)


BODY = (400, 413, 415)  # what any request body can get: invalid, over DATA_UPLOAD_MAX_MEMORY_SIZE, wrong media type


def _png_response(array: np.ndarray, cache_seconds: int = 60) -> HttpResponse:
    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format="PNG", compress_level=1)
    response = HttpResponse(buf.getvalue(), content_type="image/png")
    response["Cache-Control"] = f"private, max-age={cache_seconds}"
    return response


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 1000


# --- auth --------------------------------------------------------------------------------------
class TokenView(APIView):
    """Exchange username + password for an API token (send it as ``Authorization: Token <token>``)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    throttle_classes = [ScopedRateThrottle]  # LABSEG_TOKEN_RATE per client address; then 429
    throttle_scope = "auth-token"

    @extend_schema(request=s.TokenRequestSerializer,
                   responses={200: s.TokenResponseSerializer, **_errors(*BODY, 429, auth=False)},
                   auth=[], tags=["auth"])
    def post(self, request):
        ser = AuthTokenSerializer(data=request.data, context={"request": request})
        ser.is_valid(raise_exception=True)
        token, _ = Token.objects.get_or_create(user=ser.validated_data["user"])
        return Response({"token": token.key})


class MeView(APIView):
    @extend_schema(responses={200: s.MeSerializer, **_errors()}, tags=["auth"])
    def get(self, request):
        u = request.user
        return Response({"id": u.pk, "username": u.get_username(), "is_staff": u.is_staff})


# --- projects ----------------------------------------------------------------------------------
class ProjectListView(APIView):
    @extend_schema(responses={200: s.ProjectSerializer(many=True), **_errors()}, tags=["projects"])
    def get(self, request):
        qs = projects_with_stats(request.user)
        return Response(s.ProjectSerializer(qs, many=True, context={"request": request}).data)

    @extend_schema(request=s.ProjectCreateSerializer, responses={201: s.ProjectSerializer, **_errors(*BODY)},
                   tags=["projects"])
    def post(self, request):
        ser = s.ProjectCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        project = services.create_project(user=request.user, **ser.validated_data)
        return Response(_project_data(request, project.pk), status=status.HTTP_201_CREATED)


def _project_data(request, project_id: int) -> dict:
    project = projects_with_stats(request.user).get(pk=project_id)
    return s.ProjectSerializer(project, context={"request": request}).data


class ProjectDetailView(APIView):
    @extend_schema(responses={200: s.ProjectSerializer, **_errors(404)}, tags=["projects"])
    def get(self, request, project_id: int):
        get_project_for(request.user, project_id)
        return Response(_project_data(request, project_id))

    @extend_schema(request=s.ProjectUpdateSerializer, responses={200: s.ProjectSerializer, **_errors(*BODY, 404)},
                   tags=["projects"])
    def patch(self, request, project_id: int):
        get_project_for(request.user, project_id, Role.OWNER)
        ser = s.ProjectUpdateSerializer(data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        services.update_project(user=request.user, project_id=project_id, **ser.validated_data)
        return Response(_project_data(request, project_id))

    @extend_schema(responses={204: None, **_errors(404)}, tags=["projects"])
    def delete(self, request, project_id: int):
        services.delete_project(user=request.user, project_id=project_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- members -----------------------------------------------------------------------------------
class MemberListView(APIView):
    @extend_schema(responses={200: s.MemberSerializer(many=True), **_errors(404)}, tags=["members"])
    def get(self, request, project_id: int):
        project = get_project_for(request.user, project_id)
        return Response(s.MemberSerializer(project.memberships.select_related("user"), many=True).data)

    @extend_schema(request=s.MemberCreateSerializer, responses={201: s.MemberSerializer, **_errors(*BODY, 404)},
                   tags=["members"])
    def post(self, request, project_id: int):
        get_project_for(request.user, project_id, Role.OWNER)
        ser = s.MemberCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        m = services.add_member(user=request.user, project_id=project_id, **ser.validated_data)
        return Response(s.MemberSerializer(m).data, status=status.HTTP_201_CREATED)


class MemberDetailView(APIView):
    @extend_schema(request=s.MemberUpdateSerializer, responses={200: s.MemberSerializer, **_errors(*BODY, 404)},
                   tags=["members"])
    def patch(self, request, project_id: int, username: str):
        get_project_for(request.user, project_id, Role.OWNER)
        ser = s.MemberUpdateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        m = services.change_member_role(user=request.user, project_id=project_id, username=username,
                                        role=ser.validated_data["role"])
        return Response(s.MemberSerializer(m).data)

    @extend_schema(responses={204: None, **_errors(400, 404)}, tags=["members"])
    def delete(self, request, project_id: int, username: str):
        services.remove_member(user=request.user, project_id=project_id, username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- classes -----------------------------------------------------------------------------------
class ClassListView(APIView):
    @extend_schema(responses={200: s.LabelClassSerializer(many=True), **_errors(404)}, tags=["classes"])
    def get(self, request, project_id: int):
        project = get_project_for(request.user, project_id)
        return Response(s.LabelClassSerializer(project.label_classes.all(), many=True).data)

    @extend_schema(request=s.ClassInputSerializer, responses={201: s.LabelClassSerializer, **_errors(*BODY, 404)},
                   tags=["classes"])
    def post(self, request, project_id: int):
        get_project_for(request.user, project_id, Role.OWNER)
        ser = s.ClassInputSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        cls = services.add_class(user=request.user, project_id=project_id, **ser.validated_data)
        return Response(s.LabelClassSerializer(cls).data, status=status.HTTP_201_CREATED)


class ClassDetailView(APIView):
    @extend_schema(request=s.ClassUpdateSerializer, responses={200: s.LabelClassSerializer, **_errors(*BODY, 404)},
                   tags=["classes"])
    def patch(self, request, project_id: int, index: int):
        get_project_for(request.user, project_id, Role.OWNER)
        ser = s.ClassUpdateSerializer(data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        cls = services.update_class(user=request.user, project_id=project_id, index=index, **ser.validated_data)
        return Response(s.LabelClassSerializer(cls).data)


# --- images ------------------------------------------------------------------------------------
class ProjectImagesView(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def dispatch(self, request, *args, **kwargs):
        if request.method == "POST":  # before anything reads the body (the CSRF check reads request.POST)
            request.upload_handlers = batch_upload_handlers(request)
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(
        parameters=[OpenApiParameter("split", str, enum=Split.values, description="only images of this split"),
                    OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
        responses={200: s.ImagePageSerializer, **_errors(400, 404)}, tags=["images"])
    def get(self, request, project_id: int):
        project = get_project_for(request.user, project_id)
        split = request.query_params.get("split") or None
        if split is not None and split not in Split.values:
            raise ValidationError({"split": f"split must be one of {', '.join(Split.values)}"})
        paginator = Pagination()
        page = paginator.paginate_queryset(images_in(project, split).select_related("uploaded_by"), request, view=self)
        return paginator.get_paginated_response(s.ImageSerializer(page, many=True).data)

    @extend_schema(
        request={"multipart/form-data": s.UploadRequestSerializer},
        responses={201: s.UploadResponseSerializer,
                   207: OpenApiResponse(s.UploadResponseSerializer, description="some files stored, some failed"),
                   **_errors(*BODY, 404),
                   400: OpenApiResponse(
                       PolymorphicProxySerializer("UploadFailed", [s.UploadResponseSerializer, s.ErrorSerializer],
                                                  resource_type_field_name=None),
                       description="no file stored (per-file results); or no `files` at all, too many files "
                                   "(then the usual error body)"),
                   413: OpenApiResponse(
                       PolymorphicProxySerializer("UploadTooLarge", [s.UploadResponseSerializer, s.ErrorSerializer],
                                                  resource_type_field_name=None),
                       description="no file stored, every one over a size limit (LABSEG_MAX_UPLOAD_BYTES, "
                                   "LABSEG_MAX_IMAGE_PIXELS) or the media quota (LABSEG_MEDIA_QUOTA_BYTES): "
                                   "per-file results")},
        description="Batch upload: repeat the multipart field `files`. One result per file with its own `status`: "
                    "`id` when stored, `error` + `code` when not (duplicates also give `duplicate_of`). A file "
                    "that would pass the media quota (LABSEG_MEDIA_QUOTA_BYTES) is refused with status 413 and "
                    "code `quota_exceeded` before anything of it is written.",
        tags=["images"])
    def post(self, request, project_id: int):
        get_project_for(request.user, project_id, Role.ANNOTATOR)
        files = request.FILES.getlist("files")
        code, results = services.upload_images(user=request.user, project_id=project_id, files=files)
        stored = sum("id" in r for r in results)
        return Response({"stored": stored, "failed": len(results) - stored, "results": results}, status=code)


def _image_data(image_id: int) -> dict:
    return s.ImageSerializer(image_with_stats(image_id)).data


class ImageDetailView(APIView):
    @extend_schema(responses={200: s.ImageSerializer, **_errors(404)}, tags=["images"])
    def get(self, request, image_id: int):
        get_image_for(request.user, image_id)
        return Response(_image_data(image_id))

    @extend_schema(request=s.ImageUpdateSerializer, responses={200: s.ImageSerializer, **_errors(*BODY, 404)},
                   tags=["images"])
    def patch(self, request, image_id: int):
        get_image_for(request.user, image_id, Role.ANNOTATOR)
        ser = s.ImageUpdateSerializer(data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        services.update_image(user=request.user, image_id=image_id, **ser.validated_data)
        return Response(_image_data(image_id))

    @extend_schema(responses={204: None, **_errors(404)}, tags=["images"])
    def delete(self, request, image_id: int):
        services.delete_image(user=request.user, image_id=image_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ImageFileView(APIView):
    renderer_classes = BINARY_RENDERERS  # Accept: image/png is fine; errors stay JSON

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, **_errors(404, binary=True)},
                   tags=["images"], description="The original file, byte for byte.")
    def get(self, request, image_id: int):
        image = get_image_for(request.user, image_id)
        try:
            fh = image.file.open("rb")
        except (FileNotFoundError, ValueError) as exc:
            raise NotFound("The image file is missing from storage.") from exc
        return FileResponse(fh, as_attachment=True, filename=image.original_filename,
                            content_type="application/octet-stream")


DISPLAY_PARAMS = [
    OpenApiParameter("channel", str, description="channel index, or a comma list for a colour composite: the "
                                                  "1st listed is green, then magenta, cyan, yellow, red, white "
                                                  "(an 8-bit RGB image shown whole stays red, green, blue; "
                                                  "default: all channels up to 3)"),
    OpenApiParameter("min", str, description="display minimum (one value, or one per selected channel)"),
    OpenApiParameter("max", str, description="display maximum (one value, or one per selected channel)"),
    OpenApiParameter("region", str, description="x,y,w,h in full-resolution pixels (default: whole image)"),
    OpenApiParameter("x", int), OpenApiParameter("y", int), OpenApiParameter("w", int), OpenApiParameter("h", int),
    OpenApiParameter("level", int, description="downscale by 2**level (0 = full resolution)"),
]


class ImageDisplayView(APIView):
    renderer_classes = BINARY_RENDERERS  # Accept: image/png is fine; errors stay JSON

    @extend_schema(parameters=DISPLAY_PARAMS, responses={**PNG, **_errors(400, 404, binary=True)}, tags=["images"],
                   description="8-bit PNG rendering of a region at a downscale level; grey for one channel, "
                               "an additive colour composite for several.")
    def get(self, request, image_id: int):
        image = get_image_for(request.user, image_id)
        p = parse_display_params(request.query_params, image.channels, image.width, image.height)
        step = 2 ** p["level"]
        try:
            pixels = services.image_array(image)
        except (mlio.ImageReadError, FileNotFoundError) as exc:
            raise NotFound(f"The image file cannot be read: {exc}") from exc
        region = np.asarray(pixels[p["channels"], p["y"]:p["y"] + p["h"]:step, p["x"]:p["x"] + p["w"]:step])
        stored = np.asarray(image.display_range or [], dtype=np.float64).reshape(-1, 2)
        ranges = (stored[p["channels"]].copy() if len(stored) == image.channels
                  else np.asarray(mlio.display_range(region), dtype=np.float64))
        if p["lo"] is not None:
            ranges[:, 0] = p["lo"]
        if p["hi"] is not None:
            ranges[:, 1] = p["hi"]
        if np.any(ranges[:, 1] <= ranges[:, 0]):
            raise ValidationError({"max": "max must be greater than min"})
        rgb = mlio.composite_rgb(region, ranges, channels=list(range(len(p["channels"]))),
                                 rgb_photo=(image.channels == 3 and image.dtype == "uint8"
                                            and p["channels"] == [0, 1, 2]))
        return _png_response(rgb)


class ImageThumbnailView(APIView):
    renderer_classes = BINARY_RENDERERS  # Accept: image/png is fine; errors stay JSON

    @extend_schema(responses={**PNG, **_errors(404, binary=True)}, tags=["images"])
    def get(self, request, image_id: int):
        image = get_image_for(request.user, image_id)
        if not services.ensure_thumbnail(image):
            raise NotFound("This image has no thumbnail and its pixels could not be read to make one.")
        try:
            fh = image.thumbnail.open("rb")
        except FileNotFoundError as exc:
            raise NotFound("The thumbnail is missing from storage.") from exc
        response = FileResponse(fh, content_type="image/png")
        response["Cache-Control"] = "private, max-age=3600"
        return response


# --- annotations -------------------------------------------------------------------------------
EMPTY_ANNOTATION = {"version": 0, "classes_png": None, "instances_png": None, "strokes": [], "labelled_pixels": 0,
                    "updated_by": None, "updated_at": None}


class AnnotationView(APIView):
    @extend_schema(responses={200: s.AnnotationSerializer, **_errors(404)}, tags=["annotations"],
                   description="Version 0 with null masks when the image has never been annotated.")
    def get(self, request, image_id: int):
        image = get_image_for(request.user, image_id)
        ann = Annotation.objects.select_related("updated_by").filter(image=image).first()
        return Response(s.AnnotationSerializer(ann).data if ann else EMPTY_ANNOTATION)

    @extend_schema(request=s.AnnotationPutSerializer,
                   responses={200: s.AnnotationSerializer, 409: OpenApiResponse(s.ConflictSerializer,
                                                                                description="stale version"),
                              **error_responses(*BODY, 404, 503, descriptions={
                                  503: "the database cannot be reached: retry with the same `version` (if the "
                                       "save went through before its answer failed, the retry answers 409 with "
                                       "`current_version`; nothing is ever overwritten)"})},
                   tags=["annotations"],
                   description="Save with the `version` the edit was based on; a stale version answers 409 "
                               "with `current_version` and nothing is overwritten.")
    def put(self, request, image_id: int):
        get_image_for(request.user, image_id, Role.ANNOTATOR)
        ser = s.AnnotationPutSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        ann = services.save_annotation(user=request.user, image_id=image_id, **ser.validated_data)
        return Response(s.AnnotationSerializer(ann).data)


class AnnotationHistoryView(APIView):
    @extend_schema(responses={200: s.RevisionSerializer(many=True), **_errors(404)}, tags=["annotations"],
                   description="Earlier (overwritten) versions of the annotation, newest first.")
    def get(self, request, image_id: int):
        image = get_image_for(request.user, image_id)
        revs = AnnotationRevision.objects.filter(image=image).select_related("updated_by").defer(
            "classes_png", "instances_png", "strokes")
        return Response(s.RevisionSerializer(revs, many=True).data)


class AnnotationRevisionView(APIView):
    @extend_schema(responses={200: s.RevisionDetailSerializer, **_errors(404)}, tags=["annotations"])
    def get(self, request, image_id: int, version: int):
        image = get_image_for(request.user, image_id)
        rev = AnnotationRevision.objects.filter(image=image, version=version).select_related("updated_by").first()
        if rev is None:
            raise NotFound(f"No saved version {version} in this image's history.")
        return Response(s.RevisionDetailSerializer(rev).data)


class AnnotationRestoreView(APIView):
    @extend_schema(request=None, responses={200: s.AnnotationSerializer, **_errors(404, 409)}, tags=["annotations"],
                   description="Save an earlier version again as the newest one (the current one goes to history).")
    def post(self, request, image_id: int, version: int):
        ann = services.restore_revision(user=request.user, image_id=image_id, version=version)
        return Response(s.AnnotationSerializer(ann).data)
