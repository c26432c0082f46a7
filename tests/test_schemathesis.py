"""Schemathesis over the whole OpenAPI schema, in-process (WSGI), as the owner of a project with real data.

Every operation of ``/api/schema/`` gets generated requests (valid and invalid ones) from a fixed seed;
each answer must not be a 5xx and must match the schema: a documented status code, its documented media
type and its documented body. Path parameters are mostly the ids of real objects (a project with an image,
an annotation with history, a model version, a finished prediction, a training run), sometimes generated.

Each request runs in a savepoint that is rolled back afterwards, so a DELETE or an upload does not change
what the next request sees. ``transaction.on_commit`` never fires in this (non-transactional) test, so no
Celery message is sent: predict and training-runs answer 202 with a queued row and nothing else happens.

Phases: schemathesis' coverage cases (boundary and invalid values of every parameter, one at a time, and
methods the path does not allow), then ``SCHEMATHESIS_MAX_EXAMPLES`` (default 10) generated requests per
operation, valid and invalid. The seed is fixed (``SCHEMATHESIS_SEED``, default 20260) and generation is
derandomized, so every run sends the same requests: about 2,400 in about a minute on two cores. Run it
alone with ``pytest -m schemathesis``; more examples (e.g. ``SCHEMATHESIS_MAX_EXAMPLES=80``) to hunt.

Written against schemathesis 4.32 (pinned): its pytest ``from_fixture`` integration sets
``node._nodeid``, which pytest 9 no longer has, so this test builds the same per-operation Hypothesis
tests itself (``build_operation_test``, what that integration calls) and reports each operation as a
subtest.
"""
from __future__ import annotations

import base64
import collections
import os
import time

import hypothesis
import numpy as np
import pytest
import schemathesis
from hypothesis import strategies as st

pytestmark = [pytest.mark.schemathesis, pytest.mark.django_db]

SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20260"))
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"))
CONFIG = {
    "seed": SEED,
    "generation": {
        "mode": "all",  # valid and invalid data: invalid input must be a documented 4xx
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,
        "database": "none",
        "no-shrink": True,  # a failure is reported as found (shrinking could take minutes)
        "with-security-parameters": False,  # requests carry the owner's token (below), not generated ones
    },
    "phases": {"examples": {"enabled": True}, "fuzzing": {"enabled": True}, "coverage": {"enabled": True},
               "stateful": {"enabled": False}},
}


def _b64_png(mask: np.ndarray) -> str:
    from apps.annotate.masks import encode_png

    return base64.b64encode(encode_png(mask)).decode()


@pytest.fixture
def api_data(project, owner, annotator, settings, tmp_path):
    """Real objects around ``project``: two images, an annotation (version 2, so history has version 1), a
    model version with a real checkpoint, a finished prediction, a finished training run; the owner's token."""
    from rest_framework.authtoken.models import Token

    from apps.annotate.services import save_annotation_for
    from apps.training.models import TrainingRun
    from labseg.ml.synthetic import make_nuclei
    from tests.helpers import image_row
    from tests.inference.conftest import create_tiny_version
    from tests.inference.helpers import predict_inline

    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]  # schemathesis' WSGI client's host
    images = []
    for seed, split in ((0, "train"), (1, "validation")):
        pixels, _ = make_nuclei((64, 64), seed=seed, channels=1, radius=(4.0, 7.0), touching=0.6)
        images.append(image_row(project, pixels, f"img{seed}.tif", split=split, uploaded_by=owner))
    image = images[0]
    classes = np.zeros((64, 64), np.uint8)
    classes[0, :] = 1
    classes[10:20, 10:30] = 2
    instances = np.zeros((64, 64), np.uint16)
    instances[10:20, 10:30] = 1
    save_annotation_for(image, user=annotator, version=0, classes_png=_b64_png(classes),
                        instances_png=_b64_png(instances), strokes=[])
    classes[30:40, 30:40] = 2
    instances[30:40, 30:40] = 2
    save_annotation_for(image, user=annotator, version=1, classes_png=_b64_png(classes),
                        instances_png=_b64_png(instances),
                        strokes=[{"tool": "brush", "class": 2, "radius": 3, "points": [[1, 2], [3, 4]]}])
    version = create_tiny_version(project, number=1, is_active=True)
    prediction = predict_inline(version, image)
    run = TrainingRun.objects.create(project=project, status="succeeded", created_by=owner, progress=1.0)
    token = Token.objects.create(user=owner)
    return {
        "token": token.key,
        "ids": {
            "project_id": [project.pk], "image_id": [image.pk, images[1].pk], "version_id": [version.pk],
            "prediction_id": [prediction.pk], "run_id": [run.pk], "version": [1],
            "index": [1, 2], "username": [annotator.username, owner.username], "fmt": ["torchscript", "onnx"],
        },
    }


@pytest.fixture
def api_schema(api_data):
    """The schema as the app serves it, loaded through WSGI; path parameters steered towards real ids."""
    from django.core.signals import request_finished, request_started
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections

    # The test runs inside one transaction on this thread's connection: Django's per-request connection
    # clean-up would close it (django.test.Client disconnects these signals for the same reason).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application(),
                                                config=schemathesis.Config.from_dict(CONFIG))
        ids = api_data["ids"]

        @schema.hook
        def flatmap_path_parameters(context, path_parameters):
            # three times in four the id of a real object, else what was generated (mostly a 404)
            choices = {}
            for name, value in (path_parameters or {}).items():
                real = ids.get(name)
                choices[name] = st.sampled_from([*real, *real, *real, value]) if real else st.just(value)
            return st.fixed_dictionaries(choices)

        yield schema
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _describe(failure) -> str:
    return getattr(failure, "title", None) or type(failure).__name__


def test_every_operation_answers_as_documented(api_schema, api_data, subtests):
    """Zero 5xx, zero undocumented status codes, media types or bodies, over every operation."""
    from django.db import transaction
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import Failure, FailureGroup
    from schemathesis.core.result import Ok
    from schemathesis.generation.feedback import FeedbackSources
    from schemathesis.pytest._test_builder import build_operation_test
    from schemathesis.python._constants.orchestrator import make_constants_value_source
    from schemathesis.specs.openapi import checks as oa

    checks = [not_a_server_error, oa.status_code_conformance, oa.content_type_conformance,
              oa.response_schema_conformance]
    headers = {"Authorization": f"Token {api_data['token']}"}
    ids = api_data["ids"]
    hypothesis_settings = hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
                                              database=None, suppress_health_check=list(hypothesis.HealthCheck))
    feedback = FeedbackSources(constants_value_source=make_constants_value_source(api_schema))
    started = time.monotonic()
    stats = {"operations": 0, "requests": 0, "statuses": collections.Counter(), "failures": collections.Counter()}
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operation = result.ok()
        stats["operations"] += 1
        failures = []

        def one_request(case):
            meta = case.meta
            if (case.path_parameters and meta is not None and meta.phase.name.value == "coverage"
                    and getattr(meta.phase.data, "parameter_location", None) != "path"):
                # coverage cases vary one thing at a time: the path then names real objects (no hook runs here)
                case.path_parameters = {k: ids[k][0] if k in ids else v for k, v in case.path_parameters.items()}
            with transaction.atomic():  # rolled back: every request sees the same data
                response = case.call(headers=headers)
                transaction.set_rollback(True)
            stats["requests"] += 1
            stats["statuses"][response.status_code] += 1
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except (Failure, FailureGroup) as exc:
                found = list(getattr(exc, "exceptions", [exc]))
                for f in found:
                    stats["failures"][_describe(f)] += 1
                what = "; ".join(f"{_describe(f)}: {str(getattr(f, 'message', ''))[:400]}" for f in found)
                failures.append(f"{case.operation.label} [{case.meta.phase.name if case.meta else '?'}] -> "  # noqa: B023 - one_request runs only in this iteration
                                f"{response.status_code}: {what}"
                                f"\n    {case.as_curl_command()}\n"
                                f"    {response.text[:300]!r}")

        with subtests.test(msg=operation.label):
            # the test schemathesis' own pytest plugin builds (examples, coverage and fuzzing phases of CONFIG)
            build_operation_test(config=api_schema.config, operation=operation, test_func=one_request,
                                 given_kwargs={}, feedback=feedback, explicit_settings=hypothesis_settings)()
            assert not failures, f"{len(failures)} failing requests:\n" + "\n".join(failures[:10])
    print(f"\nschemathesis: {stats['operations']} operations, {stats['requests']} requests in "
          f"{time.monotonic() - started:.0f} s; statuses {dict(sorted(stats['statuses'].items()))}; "
          f"failures {dict(stats['failures']) or 'none'}")
    assert stats["operations"] >= 50, stats
