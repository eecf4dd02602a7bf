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


def _flavor(export, name, suffix, int8=()):
    from parnet_deploy.artifacts.export_manifest import Int8Flavor

    def spec(s):
        def typed(ts):
            return tuple(dataclasses.replace(t, dtype="int8") if t.name in int8 else t for t in ts)
        return dataclasses.replace(s, file=s.file.replace(".onnx", suffix), inputs=typed(s.inputs),
                                   outputs=typed(s.outputs))
    return Int8Flavor(name, (name,), "test placement", spec(export.whole), tuple(spec(s) for s in export.subgraphs))


def _with_flavors(export, *flavors):
    files = dict(export.files)
    for f in flavors:
        files |= {s.file: export.files[export.whole.file] for s in (f.whole, *f.subgraphs)}
    return dataclasses.replace(export, precision="int8", files=files,
                               quantization=dataclasses.replace(QUANT, flavor="openvino", flavors=flavors))


def test_int8_flavors_round_trip_and_pick_their_backend(manifests):
    export, _ = manifests
    trt = _flavor(export, "tensorrt", ".tensorrt.onnx")
    own = _flavor(export, "openvino", ".onnx", int8={"x0", "x1", "x2"})
    m = dataclasses.replace(_with_flavors(export, trt), whole=own.whole, subgraphs=own.subgraphs)
    again = ExportManifest.parse(m.to_dict(), "manifest.json")
    assert again == m and again.quantization.flavors == (trt,)
    assert [t.dtype for t in again.subgraph("stem").outputs] == ["int8"] * 3
    picked = again.for_backend("tensorrt")
    assert picked.whole.file == "model.tensorrt.onnx" and {s.file for s in picked.subgraphs} == {
        f"{s.name}.tensorrt.onnx" for s in export.subgraphs}
    assert all(t.dtype == "float32" for s in picked.subgraphs for t in s.outputs)
    assert again.for_backend("openvino") == again and again.for_backend("onnxruntime") == again
    assert ExportManifest.parse(export.to_dict(), "m").for_backend("tensorrt") == export  # no flavors: as it is


@pytest.mark.parametrize("edit, message", [
    (lambda f: f["subgraphs"][1]["outputs"][0].update(name="z"), r"flavors\[0\]: its subgraphs and tensors differ"),
    (lambda f: f["subgraphs"].pop(), r"flavors\[0\]: its subgraphs and tensors differ"),
    (lambda f: f["whole"]["outputs"][0].update(dtype="int8"), r"flavors\[0\]: its whole graph's inputs and outputs"),
    (lambda f: f["whole"]["inputs"][0].update(dtype="complex64"), r"dtype: expected one of"),
    (lambda f: f.update(backends="tensorrt"), r"backends: expected a list"),
    (lambda f: f["whole"].update(file="../model.onnx"), r"is not a valid name"),
    (lambda f: f["whole"].update(file="unlisted.onnx"), r"no entry for the subgraph files \['unlisted.onnx'\]"),
])
def test_int8_flavors_are_checked(manifests, edit, message):
    export, _ = manifests
    raw = _with_flavors(export, _flavor(export, "tensorrt", ".tensorrt.onnx")).to_dict()
    edit(raw["quantization"]["flavors"][0])
    with pytest.raises(ExportError, match=message):
        ExportManifest.parse(raw, "manifest.json")
