"""Thin DRF views of live training sessions (issue 13): parse, call a service, serialise.

Owners and annotators of the image's project start and drive their own sessions; viewers get 403;
non-members and other users' sessions 404.
"""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.training.serializers import ModelVersionSerializer
from labseg.api import BINARY_RENDERERS, error_responses

from . import serializers as s, services

TAGS = ["live"]
BODY = (400, 413, 415)


def _region(data: dict):
    region = data.get("region")
    return dict(region) if region is not None else None


class LiveStartView(APIView):
    @extend_schema(operation_id="live_active", responses={200: s.LiveSessionSerializer, **error_responses(404)},
                   tags=TAGS,
                   description="Your active (queued or running) session on this image, e.g. after a page reload; "
                               "404 when there is none.")
    def get(self, request, image_id: int):
        return Response(s.LiveSessionSerializer(services.active_session_for(request.user, image_id)).data)

    @extend_schema(operation_id="live_start", request=s.LiveStartSerializer, responses={201: s.LiveSessionSerializer,
                                                             **error_responses(*BODY, 404, 409, 503)},
                   tags=TAGS, description=(
                       "Live on: start training a network on the project's labels plus this page's draft; its "
                       "overlay of the visible region refreshes every second or so. An active session of yours "
                       "on this image is stopped (taken over). Send a heartbeat (PUT draft) every few seconds: "
                       "the session stops LABSEG_LIVE_HEARTBEAT_TIMEOUT s after the last one."))
    def post(self, request, image_id: int):
        services.get_image_for(request.user, image_id, services.Role.ANNOTATOR)
        ser = s.LiveStartSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        session = services.start_session(request.user, image_id, parent=data.get("parent", "active"),
                                         region=_region(data))
        return Response(s.LiveSessionSerializer(session).data, status=status.HTTP_201_CREATED)


class LiveSessionView(APIView):
    @extend_schema(operation_id="live_status", responses={200: s.LiveSessionSerializer, **error_responses(404)},
                   tags=TAGS,
                   description="State, step, loss and the overlay's age and URL.")
    def get(self, request, image_id: int, session_id: int):
        session = services.get_session_for(request.user, image_id, session_id)
        return Response(s.LiveSessionSerializer(session).data)

    @extend_schema(operation_id="live_region", request=s.LiveRegionSerializer, responses={200: s.LiveSessionSerializer,
                                                              **error_responses(*BODY, 404, 409)},
                   tags=TAGS, description="The visible region changed (pan/zoom); also a heartbeat.")
    def patch(self, request, image_id: int, session_id: int):
        services.get_session_for(request.user, image_id, session_id)
        ser = s.LiveRegionSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        session = services.set_region(request.user, image_id, session_id, _region(ser.validated_data))
        return Response(s.LiveSessionSerializer(session).data)

    @extend_schema(operation_id="live_stop", responses={200: s.LiveSessionSerializer, **error_responses(404)},
                   tags=TAGS,
                   description="Live off: the session ends at once (its network can still be kept).")
    def delete(self, request, image_id: int, session_id: int):
        session = services.stop_session(request.user, image_id, session_id)
        return Response(s.LiveSessionSerializer(session).data)


class LiveDraftView(APIView):
    @extend_schema(operation_id="live_draft", request=s.LiveDraftSerializer, responses={200: s.LiveSessionSerializer,
                                                             **error_responses(*BODY, 404, 409, 429)},
                   tags=TAGS, description=(
                       "Heartbeat, and the page's unsaved draft (validated like an annotation save: wrong size "
                       "or class 400). Drafts faster than LABSEG_LIVE_DRAFT_INTERVAL_MS answer 429. An ended "
                       "session answers 409 with `state` and `stop_reason`. Nothing is saved."))
    def put(self, request, image_id: int, session_id: int):
        services.get_session_for(request.user, image_id, session_id)
        ser = s.LiveDraftSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        session = services.put_draft(request.user, image_id, session_id, classes_png=data.get("classes_png"),
                                     instances_png=data.get("instances_png"), region=_region(data))
        return Response(s.LiveSessionSerializer(session).data)


class LiveOverlayView(APIView):
    renderer_classes = BINARY_RENDERERS

    @extend_schema(operation_id="live_overlay", responses={(200, "image/png"): OpenApiTypes.BINARY,
                              **error_responses(404, binary=True)}, tags=TAGS, description=(
                       "The newest overlay: an RGBA PNG of `overlay_region` (headers X-Live-Step, X-Live-Region "
                       "x,y,w,h): the predicted class colour, background transparent, alpha growing with the "
                       "network's margin (top-1 minus top-2 probability). 404 until the first one."))
    def get(self, request, image_id: int, session_id: int):
        session = services.get_session_for(request.user, image_id, session_id)
        if session.overlay_png is None:
            from rest_framework.exceptions import NotFound

            raise NotFound("No overlay yet: the live network has not predicted the region yet.")
        response = HttpResponse(bytes(session.overlay_png), content_type="image/png")
        response["Cache-Control"] = "no-store"
        response["X-Live-Step"] = str(session.overlay_step)
        r = session.overlay_region or {}
        response["X-Live-Region"] = ",".join(str(r.get(k, 0)) for k in ("x", "y", "width", "height"))
        return response


class LiveKeepView(APIView):
    @extend_schema(operation_id="live_keep", request=s.LiveKeepSerializer, responses={
        201: OpenApiResponse(ModelVersionSerializer, description="the new model version"),
        **error_responses(*BODY, 404, 409)}, tags=TAGS, description=(
            "Keep this model: the live network (its newest checkpoint, at most a few seconds old; see "
            "`checkpoint_step`) becomes a new model version with parent = the version the session started from "
            "and provenance = the annotation versions and the draft it saw. Activated, predicted and scored "
            "like a training run's version. 409 when it has not learnt anything yet."))
    def post(self, request, image_id: int, session_id: int):
        services.get_session_for(request.user, image_id, session_id)
        ser = s.LiveKeepSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        version = services.keep_session(request.user, image_id, session_id, name=ser.validated_data["name"])
        return Response(ModelVersionSerializer(version, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)
