"""Thin DRF views of training runs and model versions: parse, call a service, serialise.

Roles: viewers read everything; owners and annotators start and cancel runs; only owners activate
a version or upload a checkpoint. Non-members get 404 (see apps.annotate.selectors).
"""
from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.annotate.models import Role
from apps.annotate.selectors import get_project_for
from labseg.api import BINARY_RENDERERS, Conflict, error_responses

from . import selectors, services
from .serializers import (
    ModelVersionDetailSerializer,
    ModelVersionSerializer,
    StartRunSerializer,
    TrainingRunSerializer,
    UploadCheckpointSerializer,
)

BODY = (400, 413, 415)  # what any request body can get: invalid, over DATA_UPLOAD_MAX_MEMORY_SIZE, wrong media type


class ProjectTrainingRunsView(APIView):
    @extend_schema(responses={200: TrainingRunSerializer(many=True), **error_responses(404)},
                   summary="Training runs of a project, newest first")
    def get(self, request: Request, project_id: int) -> Response:
        project = get_project_for(request.user, project_id)
        runs = selectors.runs_of(project)
        return Response(TrainingRunSerializer(runs, many=True).data)

    @extend_schema(
        request=StartRunSerializer,
        responses={202: TrainingRunSerializer,
                   **error_responses(*BODY, 404, 409, 503, descriptions={
                       400: "bad config or parent", 409: "a run is already queued or running; the body has it as `run`",
                       503: "the training queue (broker) cannot be reached; the run is marked failed (`run_id`)"})},
        summary="Start a training run (owners and annotators)",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = get_project_for(request.user, project_id, Role.ANNOTATOR)
        body = StartRunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            run = services.start_run(
                project, request.user, parent_version_id=body.validated_data.get("parent_version"),
                config=body.validated_data.get("config"), from_scratch=body.validated_data.get("from_scratch", False),
            )
        except services.ActiveRunExists as exc:
            raise Conflict(str(exc), code="run_active", extra={"run": TrainingRunSerializer(exc.run).data}) from exc
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunView(APIView):
    @extend_schema(responses={200: TrainingRunSerializer, **error_responses(404)},
                   summary="A run with its live progress and loss curve")
    def get(self, request: Request, run_id: int) -> Response:
        return Response(TrainingRunSerializer(selectors.get_run_for(request.user, run_id)).data)


class CancelRunView(APIView):
    @extend_schema(
        request=None,
        responses={200: TrainingRunSerializer, **error_responses(404, 409, descriptions={
            409: "the run already finished; the body has it as `run`"})},
        summary="Cancel a run (owners and annotators); a running run stops within seconds",
    )
    def post(self, request: Request, run_id: int) -> Response:
        run = selectors.get_run_for(request.user, run_id, Role.ANNOTATOR)
        run = services.cancel_run(run)
        if run.status in ("succeeded", "failed"):
            raise Conflict(f"This run already {run.status}; there is nothing to cancel.", code="run_finished",
                           extra={"run": TrainingRunSerializer(run).data})
        return Response(TrainingRunSerializer(run).data)


class ProjectModelVersionsView(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(responses={200: ModelVersionSerializer(many=True), **error_responses(404)},
                   summary="Model versions of a project")
    def get(self, request: Request, project_id: int) -> Response:
        project = get_project_for(request.user, project_id)
        versions = selectors.versions_of(project)
        return Response(ModelVersionSerializer(versions, many=True).data)

    @extend_schema(
        request={"multipart/form-data": UploadCheckpointSerializer},
        responses={201: ModelVersionSerializer, **error_responses(*BODY, 404, descriptions={
            400: "not loadable, or wrong channels/classes"})},
        summary="Upload a checkpoint as a new version (owners only); it must match the project's channels and classes",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = get_project_for(request.user, project_id, Role.OWNER)
        body = UploadCheckpointSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        version = services.upload_checkpoint(
            project, request.user, body.validated_data["checkpoint"], name=body.validated_data.get("name", "")
        )
        return Response(ModelVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class ModelVersionView(APIView):
    @extend_schema(responses={200: ModelVersionDetailSerializer, **error_responses(404)},
                   summary="A version with provenance and all metric scores")
    def get(self, request: Request, version_id: int) -> Response:
        return Response(ModelVersionDetailSerializer(selectors.get_version_for(request.user, version_id)).data)


class ActivateVersionView(APIView):
    @extend_schema(request=None, responses={200: ModelVersionSerializer, **error_responses(404)},
                   summary="Make this the project's active version (owners only)")
    def post(self, request: Request, version_id: int) -> Response:
        version = services.activate_version(selectors.get_version_for(request.user, version_id, Role.OWNER))
        return Response(ModelVersionSerializer(version).data)


class CheckpointDownloadView(APIView):
    renderer_classes = BINARY_RENDERERS  # any Accept header; errors stay JSON

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY,
                              **error_responses(404, binary=True)},
                   summary="Download the checkpoint (.pt)")
    def get(self, request: Request, version_id: int) -> FileResponse:
        version = selectors.get_version_for(request.user, version_id)
        if not version.checkpoint:
            raise NotFound("This version has no checkpoint file.")
        try:
            fh = version.checkpoint.open("rb")
        except FileNotFoundError as exc:
            raise NotFound("The checkpoint file of this version is missing from storage.") from exc
        name = f"{version.project.name or 'project'}-v{version.number}.pt".replace(" ", "_")
        return FileResponse(fh, as_attachment=True, filename=name, content_type="application/octet-stream")
