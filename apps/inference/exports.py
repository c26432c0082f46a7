"""Exports: label images of a project as a zip, and a model version as TorchScript or ONNX.

Model exports are single files that carry their own description, a JSON document (``labseg.json``):
- TorchScript (``.pt``): ``torch.jit.load(f, _extra_files={"labseg.json": ""})`` fills the dict.
- ONNX (``.onnx``): the model's metadata property ``labseg.json`` (onnxruntime:
  ``session.get_modelmeta().custom_metadata_map["labseg.json"]``).
Both take a (1, C, H, W) float32 tile, normalised as the JSON says, with H and W valid input sizes,
and return logits (1, K, H - 2*margin, W - 2*margin); channel k is label class ``classes[k].index``.
The ONNX export uses the TorchScript-based exporter (``dynamo=False``; it works on torch 2.13 with
dynamic H/W, so no ``onnxscript`` dependency is needed).
"""
from __future__ import annotations

import copy
import io
import json
import tempfile
import warnings
import zipfile

from rest_framework.exceptions import ValidationError

from apps.annotate.masks import annotation_arrays
from apps.annotate.models import Annotation, Project
from apps.training.models import ModelVersion

from .maps import encode_tiff
from .rendering import read_map
from .selectors import latest_predictions

EXPORT_FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17


def model_description(version: ModelVersion, model, normalization: dict | None = None,
                      tile_output: int | None = None) -> dict:
    """The ``labseg.json`` sidecar: normalisation, classes, tile sizes, input/output contract."""
    project = version.project
    classes = list(project.label_classes.order_by("index").values("index", "name", "color"))
    k = int(model.num_classes)
    tile_output = int(tile_output or 256)
    tile_input = int(model.input_size_for(tile_output))
    return {
        "format": "labseg-unet/1",
        "project": project.name,
        "model_version": {"id": version.pk, "number": version.number, "name": version.name},
        "architecture": dict(model.config),
        "input": {"shape": ["1", str(model.in_channels), "H", "W"], "dtype": "float32",
                  "channels": list(project.channels or []),
                  "valid_sizes": f"H and W such that model.output_size() is defined: "
                                 f"input = output + {2 * model.margin}, output a multiple of {2 ** model.depth} "
                                 f"(e.g. {tile_input} -> {tile_output})"},
        "output": {"shape": ["1", str(k), f"H-{2 * model.margin}", f"W-{2 * model.margin}"], "kind": "logits",
                   "softmax_axis": 1},
        "margin": int(model.margin),
        "tile": {"input": tile_input, "output": tile_output,
                 "how": "mirror-pad the image by margin, cut input tiles whose outputs tile the image, origins "
                        f"on a {2 ** model.depth}-px grid"},
        "normalization": normalization
        or {"method": "percentile", "low": 1.0, "high": 99.8, "per_channel": True,
            "formula": "(x - p_low) / (p_high - p_low), per channel, not clipped"},
        "classes": [c for c in classes if c["index"] <= k][:k],
        "channel_to_class_index": list(range(1, k + 1)),
    }


def _export_net(version: ModelVersion):
    """``(a CPU copy of the version's network in eval mode, its LoadedModel)``."""
    from .runner import load_model

    loaded = load_model(version)
    return copy.deepcopy(loaded.model).cpu().eval(), loaded


def export_model(version: ModelVersion, fmt: str) -> tuple[bytes, str, str]:
    """``(bytes, filename, content type)`` of the version exported as ``fmt`` (torchscript | onnx)."""
    if fmt not in EXPORT_FORMATS:
        raise ValidationError({"format": f"format must be one of {', '.join(EXPORT_FORMATS)}"})
    import torch

    model, loaded = _export_net(version)
    meta = model_description(version, model, loaded.normalization, loaded.tile_output)
    example = torch.zeros(1, model.in_channels, meta["tile"]["input"], meta["tile"]["input"])
    stem = f"labseg-{version.project_id}-v{version.number}"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            traced = torch.jit.trace(model, example, check_trace=False)
            buf = io.BytesIO()
            torch.jit.save(traced, buf, _extra_files={"labseg.json": json.dumps(meta, indent=1)})
            return buf.getvalue(), stem + ".pt", "application/octet-stream"
        return _onnx_bytes(model, example, meta), stem + ".onnx", "application/octet-stream"


def _onnx_bytes(model, example, meta: dict) -> bytes:
    import onnx
    import torch

    buf = io.BytesIO()
    torch.onnx.export(
        model, (example,), buf, dynamo=False, opset_version=ONNX_OPSET, input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {2: "height", 3: "width"}, "logits": {2: "out_height", 3: "out_width"}},
    )
    proto = onnx.load_from_string(buf.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = "labseg.json", json.dumps(meta)
    return proto.SerializeToString()


MASK_PARTS = ("predictions", "annotations")


def object_rows(instances, classes, names: dict[int, str]) -> list[dict]:
    """One row per object of an instance image: ``id``, ``class_index`` (label class value, 2..),
    ``class_name``, ``area`` (px). The class of an object is the class most of its pixels carry in
    ``classes`` (in a prediction all of them do: ``apps.inference.runner.paint_objects``)."""
    import numpy as np

    inst = np.asarray(instances).ravel()
    cls = np.asarray(classes).ravel() if classes is not None else np.zeros_like(inst, np.uint8)
    n = int(inst.max(initial=0))
    if n == 0:
        return []
    area = np.bincount(inst, minlength=n + 1)
    best = np.zeros(n + 1, np.int64)
    best_class = np.zeros(n + 1, np.int64)
    for c in np.unique(cls[inst > 0]):
        if c < 2:
            continue
        per = np.bincount(inst[cls == c], minlength=n + 1)
        better = per > best
        best[better], best_class[better] = per[better], int(c)
    return [{"id": i, "class_index": int(best_class[i]), "class_name": names.get(int(best_class[i]), ""),
             "area": int(area[i])} for i in range(1, n + 1) if area[i] > 0]


def objects_csv(instances, classes, names: dict[int, str]) -> bytes:
    """``object_rows`` as CSV (``id,class_index,class_name,area``), for Fiji, R or a spreadsheet."""
    import csv

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["id", "class_index", "class_name", "area"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(object_rows(instances, classes, names))
    return buf.getvalue().encode()


def masks_zip(project: Project, version: ModelVersion | None, parts: tuple[str, ...] = MASK_PARTS):
    """A temporary file with a zip of label images (opened for reading, deleted when closed).

    ``predictions/<stem>_classes.tif`` (uint8 class indices), ``<stem>_instances.tif`` (uint16 or uint32 ids,
    the objects of every class) and ``<stem>_objects.csv`` (id, class index, class name, area of each object)
    from the newest finished prediction of ``version`` per image; ``annotations/...`` the same for the current
    annotations; ``manifest.json`` lists images, versions, classes and files. ``parts``: which of
    ``predictions`` and ``annotations`` to include.
    """
    handle = tempfile.TemporaryFile()
    names = dict(project.label_classes.values_list("index", "name"))
    manifest: dict = {"project": {"id": project.pk, "name": project.name},
                      "model_version": version.number if version else None,
                      "classes": {str(k): v for k, v in sorted(names.items())}, "parts": list(parts), "images": []}
    preds = ({p.image_id: p for p in latest_predictions(version)}
             if version is not None and "predictions" in parts else {})
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        def write(folder: str, stem: str, classes, instances, entry: dict) -> None:
            for suffix, array in (("classes", classes), ("instances", instances)):
                if array is None:
                    continue
                name = f"{folder}/{stem}_{suffix}.tif"
                zf.writestr(name, _tiff(array, suffix))
                entry["files"].append(name)
            if instances is not None:
                name = f"{folder}/{stem}_objects.csv"
                zf.writestr(name, objects_csv(instances, classes, names))
                entry["files"].append(name)

        for image in project.images.order_by("id"):
            # at most 60 characters of the name: the entries must stay valid file names once unzipped
            stem = f"{image.pk:06d}_{image.original_filename.rsplit('.', 1)[0][:60]}"
            entry = {"id": image.pk, "filename": image.original_filename, "split": image.split, "files": []}
            pred = preds.get(image.pk)
            if pred is not None:
                write("predictions", stem, read_map(pred.classes_file.path), read_map(pred.instances_file.path),
                      entry)
                entry["prediction"] = pred.pk
            annotation = Annotation.objects.filter(image=image).first() if "annotations" in parts else None
            if annotation is not None:
                classes, instances = annotation_arrays(annotation)
                write("annotations", stem, classes, instances, entry)
                entry["annotation_version"] = annotation.version
            manifest["images"].append(entry)
        zf.writestr("manifest.json", json.dumps(manifest, indent=1))
    handle.seek(0)
    return handle


def _tiff(array, suffix: str) -> bytes:
    """Class masks stay uint8; instance masks uint16/uint32 (see ``encode_tiff``)."""
    import numpy as np
    import tifffile

    if suffix == "classes":
        buf = io.BytesIO()
        tifffile.imwrite(buf, np.asarray(array, np.uint8), compression="zlib")
        return buf.getvalue()
    return encode_tiff(array)
