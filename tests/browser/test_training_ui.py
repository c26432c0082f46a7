"""Training in a real browser: press Train, watch the progress bar move, see the run finish and the version."""
from __future__ import annotations

import pytest

from apps.training.models import ModelVersion, TrainingRun
from tests.training.conftest import add_image

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_start_a_run_from_the_page_and_watch_it_finish(celery_worker, logged_in_page, live_url, project, annotator):
    add_image(project, seed=11, object_ids=False)  # plain strokes, as the annotate page paints by default
    page = logged_in_page(annotator, f"/projects/{project.pk}")
    page.click("[data-testid=train-button]")  # the project page's Train button opens the training page
    page.wait_for_selector("[data-testid=train-form]")
    assert page.url.endswith(f"/projects/{project.pk}/train")
    page.fill("[data-testid=train-steps]", "40")
    page.fill("[data-testid=train-minutes]", "2")
    assert not page.is_checked("[data-testid=train-self-training]")  # an option, off by default
    page.check("[data-testid=train-self-training]")
    # record every value the progress bar takes (each redraw of the run panel), not samples of it
    page.evaluate("""() => {
        window.__progress = [];
        const record = () => {
            const bar = document.querySelector('[data-testid=train-progress]');
            if (bar) window.__progress.push(Number(bar.getAttribute('value') || 0));
        };
        new MutationObserver(record).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                             attributeFilter: ['value']});
    }""")
    page.click("[data-testid=train-start]")
    page.wait_for_selector("[data-testid=train-run]")

    page.wait_for_function("""() => ['succeeded', 'failed', 'cancelled'].includes(
        document.querySelector('[data-testid=train-run]')?.dataset.status)""", timeout=240000)
    status = page.locator("[data-testid=train-run]").get_attribute("data-status")
    seen = {int(v) for v in page.evaluate("window.__progress")}
    run = TrainingRun.objects.get(project=project)
    assert status == "succeeded", (run.status, run.error)
    assert any(0 < v < 100 for v in seen), f"the progress bar never showed an intermediate value: {sorted(seen)}"
    assert 100 in seen
    # strokes only, self-training ticked: a second round of 40 steps on the model's own labels
    assert "step 80 of 80" in page.inner_text("[data-testid=train-numbers]")
    assert page.is_checked("[data-testid=train-intensity-gate]")  # on by default: the form says so
    assert page.is_checked("[data-testid=train-intensity-split]")
    assert page.input_value("[data-testid=train-edge-calibration]") == "auto"  # held-out labels choose, by default
    assert run.config == {"steps": 40, "max_seconds": 120, "self_training": 1, "intensity_gate": True,
                          "intensity_split": True, "edge_calibration": None}
    # bright synthetic nuclei painted with ordinary strokes: the intensity gate is on, and the page says so
    assert "weights" in ModelVersion.objects.get(run=run).provenance["intensity_gate"]
    gate_note = page.locator("[data-testid=train-gate-note]")
    gate_note.wait_for()
    assert gate_note.inner_text().startswith("Intensity gate on:")
    # one labelled image: a quarter of its labels was held out (the page says which), chose the edges, and the
    # page says how
    from labseg.ml.baselines import edges_on

    held = ModelVersion.objects.get(run=run).provenance["held_out"]
    assert len(held) == 1 and held[0]["split"] == "holdout", held
    side = held[0]["strip"]["side"]
    where = {"right": "right-most quarter of the labelled columns", "left": "left-most quarter of the labelled columns",
             "bottom": "bottom quarter of the labelled rows", "top": "top quarter of the labelled rows"}[side]
    heldout_note = page.locator("[data-testid=train-heldout-note]")
    heldout_note.wait_for()
    assert heldout_note.inner_text().startswith(f"Scored on the {where} of ")

    edges = ModelVersion.objects.get(run=run).provenance["edge_calibration"]
    assert {"iou_fg_without", "iou_fg_with"} <= set(edges), edges
    edges_note = page.locator("[data-testid=train-edges-note]")
    edges_note.wait_for()
    shown_edges = edges_note.inner_text()
    assert shown_edges.startswith(
        f"Edge calibration {'on' if edges_on(edges) else 'off'} (chosen on the held-out labels: foreground IoU "
        f"{edges['iou_fg_without']:.3f} without it, {edges['iou_fg_with']:.3f} with)")
    # bright objects: the watershed adds the image itself (weight +1), and the page says so
    assert ModelVersion.objects.get(run=run).provenance["intensity_split"] == {"weights": [1.0]}
    split_note = page.locator("[data-testid=train-split-note]")
    assert split_note.inner_text().startswith("Intensity split on: where the prediction merges touching objects")
    # plain strokes (no ids): nothing painted whole, so the object size is estimated, and the page says so
    assert ModelVersion.objects.get(run=run).provenance["painted_objects"] == {"with_ids": 0, "whole": 0}
    assert page.inner_text("[data-testid=train-size-note]") == ("Object size: estimated from each prediction (no "
                                                               "objects painted whole).")

    # the Models page lists the new active version with its lineage and scores
    page.click("[data-testid=train-version-link]")
    row = page.locator("[data-testid=model-row-1]")
    row.wait_for()
    assert row.locator("[data-testid=model-active]").count() == 1
    assert "Intensity gate on:" in page.inner_text("[data-testid=model-gate-note-1]")
    assert page.inner_text("[data-testid=model-size-note-1]").startswith("Object size: estimated from each prediction")
    assert page.inner_text("[data-testid=model-edges-note-1]") == shown_edges  # the same choice, on the Models page
    assert ModelVersion.objects.get(run=run).is_active
    assert page.console_errors == []


def test_a_failed_run_shows_its_error_in_the_page(celery_worker, logged_in_page, project, owner):
    add_image(project, seed=12, only_class=1)  # only background painted
    page = logged_in_page(owner, f"/projects/{project.pk}/train")
    page.wait_for_selector("[data-testid=train-form]")
    page.click("[data-testid=train-start]")
    err = page.locator("[data-testid=train-error]")
    err.wait_for(timeout=120000)
    assert "Only one class is painted" in err.inner_text()


def test_membranes_painted_split_objects_by_the_lines_and_the_page_says_so(celery_worker, logged_in_page, project,
                                                                           owner):
    add_image(project, seed=13, membranes=True)
    page = logged_in_page(owner, f"/projects/{project.pk}/train")
    page.wait_for_selector("[data-testid=train-form]")
    page.fill("[data-testid=train-steps]", "10")
    page.click("[data-testid=train-start]")
    page.wait_for_function("""() => ['succeeded', 'failed', 'cancelled'].includes(
        document.querySelector('[data-testid=train-run]')?.dataset.status)""", timeout=240000)
    run = TrainingRun.objects.get(project=project)
    assert run.status == "succeeded", run.error
    provenance = ModelVersion.objects.get(run=run).provenance
    assert provenance["split"] == "boundaries" and provenance["prior_weight"] == 0.3
    note = page.locator("[data-testid=train-split-note]")
    note.wait_for()
    assert "thin lines between objects" in note.inner_text() and "weight 0.3" in note.inner_text()
    # the Models page says it beside the version too
    version = ModelVersion.objects.get(run=run)
    page.goto(page.url.rsplit("/projects/", 1)[0] + f"/projects/{project.pk}/models")
    models_note = page.locator(f"[data-testid=model-split-note-{version.number}]")
    models_note.wait_for()
    assert "thin lines between objects" in models_note.inner_text()
    assert page.console_errors == []
