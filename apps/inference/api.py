"""REST endpoints of predictions, metric scores, overlays and exports (thin: parse, call, serialise).

Roles: viewers read everything here; annotators (and owners) start predictions and accept them.
Map endpoints answer 409 ``not_ready`` while the prediction is not finished.
"""
from __future__ import annotations

import numpy as np
from django.http import FileResponse, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view, renderer_classes
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from apps.annotate.models import Role
from apps.annotate.selectors import get_image_for, get_project_for
from labseg.api import BINARY_RENDERERS, Conflict, error_responses, parse_int, parse_int_list

from . import exports, rendering, selectors, services
from .models import ModelExport, Prediction, PredictionStatus

BINARY = BINARY_RENDERERS  # binary answers take any Accept header; errors stay JSON
REGION_PARAMS = [
    OpenApiParameter("region", str, description="x,y,w,h in full-resolution pixels (default: the whole image)"),
    OpenApiParameter("level", int, description="downscale by 2**level (nearest neighbour; 0 = full resolution)"),
]
STYLE = OpenApiParameter("style", str, description='"raw" (grey values) or "colour" (RGBA overlay)')
PNG = {(200, "image/png"): OpenApiTypes.BINARY}
BODY = (400, 413, 415)  # what any request body can get: invalid, over DATA_UPLOAD_MAX_MEMORY_SIZE, wrong media type
NOT_READY = {409: "the prediction is not finished (`not_ready`, with `status` and `progress`)"}


class PredictionSerializer(serializers.ModelSerializer):
    project = serializers.IntegerField(source="image.project_id", read_only=True)
    urls = serializers.SerializerMethodField()

    class Meta:
        model = Prediction
        fields = ["id", "image", "model_version", "project", "status", "progress", "counts", "mean_uncertainty",
                  "error", "created_at", "started_at", "finished_at", "urls"]

    def get_urls(self, obj: Prediction) -> dict:
        if obj.status != PredictionStatus.SUCCEEDED:
            return {}
        base = f"/api/v1/predictions/{obj.pk}/"
        return {k: base + k for k in ("classes.png", "instances.tif", "probability.png", "uncertainty.png",
                                      "outlines.png")}


class PredictRequestSerializer(serializers.Serializer):
    image_ids = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), required=False,
                                      allow_empty=False)
    all = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        if bool(attrs.get("image_ids")) == bool(attrs.get("all")):
            raise serializers.ValidationError('Give either "image_ids": [...] or "all": true.')
        return attrs


@extend_schema(request=PredictRequestSerializer, responses={
    202: PredictionSerializer(many=True), **error_responses(*BODY, 404, 503, descriptions={
        400: "neither or both of `image_ids` and `all`, or an image of another project",
        503: "the prediction queue (broker) cannot be reached; the new predictions are marked failed "
             "(`failed_predictions`)"})})
@api_view(["POST"])
def predict(request, version_id: int):
    """Queue predictions of the version: 202 with one prediction per image (running ones are reused)."""
    version = selectors.get_version_for(request.user, version_id, Role.ANNOTATOR)
    body = PredictRequestSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    ids = None if body.validated_data.get("all") else body.validated_data["image_ids"]
    preds = services.request_predictions(version, ids, user=request.user)
    return Response(PredictionSerializer(preds, many=True).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(responses={200: PredictionSerializer, **error_responses(404)})
@api_view(["GET"])
def prediction_detail(request, prediction_id: int):
    pred = selectors.get_prediction_for(request.user, prediction_id)
    return Response(PredictionSerializer(pred).data)


@extend_schema(responses={200: PredictionSerializer(many=True), **error_responses(404)})
@api_view(["GET"])
def image_predictions(request, image_id: int):
    """The newest prediction of the image by each version (newest version first)."""
    image = get_image_for(request.user, image_id)
    preds = selectors.newest_per(Prediction.objects.filter(image=image).select_related("image")
                                 .order_by("-model_version_id", "-created_at", "-id"), "model_version_id")
    data = PredictionSerializer(preds, many=True).data
    return Response(data)


def _finished(request, prediction_id: int) -> Prediction:
    pred = selectors.get_prediction_for(request.user, prediction_id)
    if pred.status != PredictionStatus.SUCCEEDED:
        raise Conflict(f"The prediction is {pred.status}, not finished.", code="not_ready",
                       extra={"status": pred.status, "progress": pred.progress})
    return pred


def _png(array: np.ndarray, name: str, cache: bool = True) -> HttpResponse:
    """PNG response; prediction maps never change (cached an hour), weight maps follow the annotation."""
    resp = HttpResponse(rendering.png_response_bytes(array), content_type="image/png")
    resp["Content-Disposition"] = f'inline; filename="{name}"'
    resp["Cache-Control"] = "private, max-age=3600" if cache else "no-cache"
    return resp


@extend_schema(parameters=[*REGION_PARAMS, STYLE],
               responses={**PNG, **error_responses(400, 404, 409, descriptions=NOT_READY, binary=True)})
@api_view(["GET"])
@renderer_classes(BINARY)
def prediction_map(request, prediction_id: int, kind: str):
    """classes.png / probability.png / uncertainty.png / outlines.png with region + level parameters.

    ``?style=raw`` (default for classes: class index as grey; for the others: 0..255 grey),
    ``?style=colour`` (RGBA overlay: label class colours, or a colour ramp for probability/uncertainty).
    """
    pred = _finished(request, prediction_id)
    image = pred.image
    region = rendering.parse_region(request.query_params, image.width, image.height)
    style = request.query_params.get("style", "raw")
    if style not in ("raw", "colour", "color"):
        raise ValidationError({"style": 'style must be "raw" or "colour".'})
    colour = style != "raw"
    if kind == "classes":
        values = region.apply(rendering.read_map(pred.classes_file.path))
        out = rendering.classes_rgba(values, image.project) if colour else values
    elif kind == "outlines":
        values = region.apply(rendering.read_map(pred.instances_file.path))
        out = rendering.outlines_rgba(values)
    else:
        field = pred.probability_file if kind == "probability" else pred.uncertainty_file
        values = region.apply(rendering.read_map(field.path))
        out = rendering.ramp_rgba(values) if colour else values
    return _png(out, f"prediction-{pred.pk}-{kind}.png")


@extend_schema(parameters=REGION_PARAMS, responses={
    (200, "image/tiff"): OpenApiTypes.BINARY, **error_responses(400, 404, 409, descriptions=NOT_READY, binary=True)})
@api_view(["GET"])
@renderer_classes(BINARY)
def prediction_instances(request, prediction_id: int):
    """The instance label image as a uint16/uint32 TIFF (region + level parameters apply)."""
    pred = _finished(request, prediction_id)
    region = rendering.parse_region(request.query_params, pred.image.width, pred.image.height)
    full = region == rendering.Region(0, 0, pred.image.width, pred.image.height, 0)
    if full:
        resp = FileResponse(pred.instances_file.open("rb"), content_type="image/tiff")
    else:
        from .maps import encode_tiff

        resp = HttpResponse(encode_tiff(region.apply(rendering.read_map(pred.instances_file.path))),
                            content_type="image/tiff")
    resp["Content-Disposition"] = f'attachment; filename="prediction-{pred.pk}-instances.tif"'
    return resp


@extend_schema(parameters=[*REGION_PARAMS, OpenApiParameter("style", str, description='"colour" or "grey"'),
                           OpenApiParameter("w0", float), OpenApiParameter("sigma", float)],
               responses={**PNG, **error_responses(400, 404, binary=True, descriptions={
                   404: "not found, not a member, or the image has no annotation"})})
@api_view(["GET"])
@renderer_classes(BINARY)
def weight_map(request, image_id: int):
    """The training weight map of the image's current annotation (normalised to its maximum).

    ``?style=colour`` (default) or ``grey``; the border term between touching objects is the bright
    ridge. Parameters ``w0``, ``sigma`` as in training; region + level parameters apply. 404 without
    an annotation.
    """
    image = get_image_for(request.user, image_id)
    style = request.query_params.get("style", "colour")
    if style not in ("colour", "color", "grey", "gray"):
        raise ValidationError({"style": 'style must be "colour" or "grey".'})
    region = rendering.parse_region(request.query_params, image.width, image.height)
    w0 = _float_param(request.query_params, "w0", 10.0, 0.0, 1000.0)
    sigma = _float_param(request.query_params, "sigma", 5.0, 0.1, 100.0)
    values = services.weight_map_of(image, w0=w0, sigma=sigma)
    grey = rendering.normalise_to_uint8(region.apply(values))
    out = grey if style in ("grey", "gray") else rendering.grey_to_colour(grey)
    return _png(out, f"image-{image.pk}-weight-map.png", cache=False)


def _float_param(params, name: str, default: float, lo: float, hi: float) -> float:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValidationError({name: f"{name} must be a number."}) from exc
    if not lo <= value <= hi:
        raise ValidationError({name: f"{name} must be between {lo} and {hi}."})
    return value


@extend_schema(request=inline_serializer("AcceptPrediction", {"version": serializers.IntegerField(),
                                                            "keep_labels": serializers.BooleanField(required=False)}),
               responses={200: OpenApiTypes.OBJECT, **error_responses(*BODY, 404, 409, descriptions={
                   409: "the prediction is not finished (`not_ready`), or `version` is stale (`stale_version`, "
                        "with `current_version`)"})})
@api_view(["POST"])
def accept(request, prediction_id: int):
    """Copy the prediction into the image's annotation as a new version.

    Body ``{"version": <the annotation version the client has>, "keep_labels": false}`` (version 0
    when there is none yet); a stale version answers 409 with the current one, as for any annotation
    save. ``keep_labels: true`` keeps the user's labelled pixels and fills the rest from the prediction.
    """
    selectors.get_prediction_for(request.user, prediction_id, Role.ANNOTATOR)
    pred = _finished(request, prediction_id)
    version = request.data.get("version") if hasattr(request.data, "get") else None
    if version is None:
        raise ValidationError({"version": "Give the annotation version you are replacing (0 if none)."})
    if isinstance(version, bool) or not isinstance(version, (int, str)):
        raise ValidationError({"version": "version must be an integer."})
    version = parse_int(version, "version", lo=0, hi=2**31 - 1)
    keep = str(request.data.get("keep_labels", "false")).lower() in ("1", "true", "yes")
    annotation = services.accept_prediction(pred, request.user, version, keep_labels=keep)
    return Response(services.annotation_summary(annotation), status=status.HTTP_200_OK)


@extend_schema(responses={200: OpenApiTypes.OBJECT, **error_responses(404)})
@api_view(["GET"])
def version_metrics(request, version_id: int):
    version = selectors.get_version_for(request.user, version_id)
    return Response(selectors.version_metrics(version))


@extend_schema(parameters=[OpenApiParameter("a", int, required=True), OpenApiParameter("b", int, required=True)],
               responses={200: OpenApiTypes.OBJECT, **error_responses(400, 404)})
@api_view(["GET"])
def compare(request, project_id: int):
    get_project_for(request.user, project_id)
    q = request.query_params
    if not q.get("a") or not q.get("b"):
        raise ValidationError({"a": "Give two model version ids as ?a=..&b=.."})
    a, b = parse_int(q["a"], "a", lo=1), parse_int(q["b"], "b", lo=1)
    return Response(selectors.compare_versions(project_id, a, b))


@extend_schema(parameters=[OpenApiParameter("version", int, description="model version id (default: the active one)")],
               responses={200: OpenApiTypes.OBJECT, **error_responses(400, 404)})
@api_view(["GET"])
def project_predictions(request, project_id: int):
    """The image grid's view of a version: prediction thumbnail URL, object count, F1 per image."""
    project = get_project_for(request.user, project_id)
    return Response(selectors.project_predictions(project.pk, _version_param(request, project)))


def _version_param(request, project):
    """The model version named by ``?version=`` (of this project, else 400), or None."""
    raw = request.query_params.get("version")
    if not raw:
        return None
    version = selectors.get_version_for(request.user, parse_int(raw, "version", lo=1))
    if version.project_id != project.pk:
        raise ValidationError({"version": "That model version belongs to another project."})
    return version


@extend_schema(parameters=[OpenApiParameter("exclude", str, description="comma-separated image ids to skip")],
               responses={200: OpenApiTypes.OBJECT, **error_responses(400, 404, descriptions={
                   404: "not found, not a member, or no prediction with an uncertainty map yet"})})
@api_view(["GET"])
def next_uncertain(request, project_id: int):
    """The image with the highest mean uncertainty (and few labels) under the active version; 404 if none."""
    get_project_for(request.user, project_id)
    exclude = []
    if request.query_params.get("exclude"):
        exclude = parse_int_list(request.query_params["exclude"], "exclude", lo=1)
    best = selectors.next_uncertain_image(project_id, exclude)
    if best is None:
        return Response({"detail": "No predictions with an uncertainty map for the active model version yet.",
                         "code": "not_found"}, status=status.HTTP_404_NOT_FOUND)
    return Response(best)


@extend_schema(parameters=[
    OpenApiParameter("version", int, description="model version id (default: the active one)"),
    OpenApiParameter("include", str, enum=["all", *exports.MASK_PARTS],
                     description="`annotations`, `predictions` or `all` (default)")],
    responses={(200, "application/zip"): OpenApiTypes.BINARY, **error_responses(400, 404, binary=True)})
@api_view(["GET"])
@renderer_classes(BINARY)
def export_masks(request, project_id: int):
    """A zip of TIFF label images (class and instance masks, plus an objects CSV per instance mask: id, class,
    area): predictions of the active (or ``?version=``) version and/or the annotations (``?include=``)."""
    project = get_project_for(request.user, project_id)
    include = request.query_params.get("include") or "all"
    if include not in ("all", *exports.MASK_PARTS):
        raise ValidationError({"include": 'include must be "all", "annotations" or "predictions".'})
    parts = exports.MASK_PARTS if include == "all" else (include,)
    version = _version_param(request, project) or selectors.active_version(project.pk)
    handle = exports.masks_zip(project, version, parts)
    suffix = "" if include == "all" else f"-{include}"
    name = (f"labseg-project-{project.pk}{suffix}-masks"
            + (f"-v{version.number}" if version and "predictions" in parts else "") + ".zip")
    return FileResponse(handle, as_attachment=True, filename=name, content_type="application/zip")


class ModelExportSerializer(serializers.ModelSerializer):
    download = serializers.SerializerMethodField(help_text="the file's URL once the export succeeded, else null")

    class Meta:
        model = ModelExport
        fields = ["id", "model_version", "format", "status", "progress", "error", "filename", "created_at",
                  "started_at", "finished_at", "download"]

    def get_download(self, obj: ModelExport) -> str | None:
        return f"/api/v1/exports/{obj.pk}/file" if obj.status == PredictionStatus.SUCCEEDED and obj.file else None


def _export_file(export: ModelExport) -> FileResponse:
    return FileResponse(export.file.open("rb"), as_attachment=True, filename=export.filename,
                        content_type="application/octet-stream")


@extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY,
                          (202, "application/json"): ModelExportSerializer,
                          **error_responses(400, 404, 503, binary=True, descriptions={
                              400: "unknown format (torchscript or onnx)",
                              503: "the export queue (broker) cannot be reached; the export is marked failed"})})
@api_view(["GET"])
@renderer_classes(BINARY)
def export_model(request, version_id: int, fmt: str):
    """TorchScript (``.pt`` with ``labseg.json`` as an extra file) or ONNX (JSON in the metadata), made by a
    worker: 200 with the file once it is made, else 202 with the export job (started on the first ask;
    asking again while it runs returns it). Poll ``/api/v1/exports/{id}/`` or ask this URL again."""
    version = selectors.get_version_for(request.user, version_id)
    export = services.request_export(version, fmt, user=request.user)
    if export.status == PredictionStatus.SUCCEEDED:
        return _export_file(export)
    return Response(ModelExportSerializer(export).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(responses={200: ModelExportSerializer, **error_responses(404)})
@api_view(["GET"])
def export_detail(request, export_id: int):
    """One export job: status, progress, error, and its ``download`` URL once it succeeded."""
    return Response(ModelExportSerializer(selectors.get_export_for(request.user, export_id)).data)


@extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, **error_responses(
    404, 409, binary=True, descriptions={409: "the export is not finished (`not_ready`, with `status`)"})})
@api_view(["GET"])
@renderer_classes(BINARY)
def export_file(request, export_id: int):
    """The exported file (409 ``not_ready`` while the export is queued or running, or after it failed)."""
    export = selectors.get_export_for(request.user, export_id)
    if export.status != PredictionStatus.SUCCEEDED or not export.file:
        raise Conflict(f"The export is {export.status}, not ready to download.", code="not_ready",
                       extra={"status": export.status, "error": export.error})
    return _export_file(export)
