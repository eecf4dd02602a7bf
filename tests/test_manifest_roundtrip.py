"""Both manifests read back exactly what they write (``parse(to_dict(m)) == m``), every record typed,
and a record with a wrong type is refused with the field's path."""

import dataclasses

import pytest

from parnet_deploy.artifacts.build_records import AccuracyGate, Placement, Trial
from parnet_deploy.artifacts.engines_manifest import EnginesManifest
from parnet_deploy.artifacts.export_manifest import ExportManifest, Quantization, load_manifest
from parnet_deploy.engines.build import BuildConfig, build_engines
from parnet_deploy.errors import ExportError

QUANT = Quantization(method="entropy", calibration="digits:calib", evaluation="digits:heldout", level="full",
                     kept_float=("fusion/Conv",), max_drop=1.0, drop_points=0.25, top1_fp32=0.97, top1_int8=None,
                     agreement=0.99, source="m", source_sha256="ab" * 32)
GATE = AccuracyGate(data="digits:heldout", images=360, top1_fp32=0.97, top1=0.965, agreement=None, drop_points=0.5,
                    max_drop=1.0, reference="onnxruntime fp32 whole graph")
PLACEMENT = Placement(assignment={"stem": "cpu", "stream0": "cpu"}, predicted_ms=1.5, critical_path=("stem", "stream0"),
                      costs_ms={"stem@cpu": 0.5, "stream0@cpu": 1.0})


@pytest.fixture(scope="module")
def manifests(engine_exports):
    root, dirs = engine_exports
    _, engines = build_engines(dirs["shared"], BuildConfig(backend="onnxruntime", output=root / "roundtrip",
                                                           measure_iterations=2), log=lambda _: None)
    return load_manifest(dirs["shared"]), engines


def test_export_manifest_round_trip(manifests):
    export, _ = manifests
    for m in (export, dataclasses.replace(export, quantization=QUANT)):
        again = ExportManifest.parse(m.to_dict(), "manifest.json")
        assert again == m
        assert again.quantization is None or (again.quantization.kept_float == ("fusion/Conv",)
                                               and again.quantization.top1_int8 is None)


def test_engines_manifest_round_trip_with_every_record(manifests):
    _, engines = manifests
    full = dataclasses.replace(engines, predicted=PLACEMENT, accuracy=GATE,
                               selection=(Trial("onnxruntime", "fp32", 2.5, True),
                                          Trial("openvino", "fp32", 3.0, False)))
    for m in (engines, full):
        again = EnginesManifest.parse(m.to_dict())
        assert again == m
    again = EnginesManifest.parse(full.to_dict())
    assert isinstance(again.accuracy, AccuracyGate) and isinstance(again.predicted, Placement)
    assert again.predicted.critical_path == ("stem", "stream0") and again.selection[0].chosen is True


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["accuracy"].update(top1="0.9"), r"engines.json.accuracy.top1: expected a finite number or null"),
    (lambda d: d["accuracy"].pop("drop_points"), r"engines.json.accuracy.drop_points: missing"),
    (lambda d: d["selection"][0].update(chosen=1), r"engines.json.selection\[0\].chosen: expected true or false"),
    (lambda d: d["selection"][0].update(extra=1) or d["selection"][0].update(median_ms=1e400),
     r"selection\[0\].median_ms: expected a finite number"),
    (lambda d: d["predicted"].update(critical_path=["stem", 3]),
     r"predicted.critical_path: expected a list of strings"),
    (lambda d: d["predicted"]["costs_ms"].update({"stem@cpu": None}),
     r"predicted.costs_ms.stem@cpu: expected a finite"),
])
def test_engines_records_are_checked(manifests, edit, message):
    _, engines = manifests
    raw = dataclasses.replace(engines, predicted=PLACEMENT, accuracy=GATE,
                              selection=(Trial("onnxruntime", "fp32", 2.5, True),)).to_dict()
    edit(raw)
    with pytest.raises(ExportError, match=message):
        EnginesManifest.parse(raw)


@pytest.mark.parametrize("edit, message", [
    (lambda q: q.update(kept_float="fusion/Conv"), r"quantization.kept_float: expected a list"),
    (lambda q: q.update(method="magic"), r"quantization.method: expected one of"),
    (lambda q: q.update(source_sha256="AB" * 32), r"quantization.source_sha256: expected 64 lowercase hex"),
    (lambda q: q.update(agreement=None), r"quantization.agreement: expected a finite number"),
    (lambda q: q.update(source="../x"), r"quantization.source: '\.\./x' is not a valid name"),
])
def test_quantization_record_is_checked(manifests, edit, message):
    export, _ = manifests
    raw = dataclasses.replace(export, quantization=QUANT).to_dict()
    edit(raw["quantization"])
    with pytest.raises(ExportError, match=message):
        ExportManifest.parse(raw, "manifest.json")
