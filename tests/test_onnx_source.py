"""load_onnx_source: a user's ONNX file (untrusted) → checked, static-shape model, or a one-line refusal."""

import hashlib
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from parnet_deploy.errors import ConfigError, ExportError, UserError
from parnet_deploy.export import onnx_source
from parnet_deploy.export.onnx_source import load_onnx_source, parse_input_shape, parse_input_shapes


def make_model(nodes, inputs, outputs, initializers=(), opset=17, **kw) -> onnx.ModelProto:
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(initializers)),
                             opset_imports=[helper.make_opsetid("", opset)], **kw)


def conv_model(batch="N") -> onnx.ModelProto:
    """x[batch,3,8,8] → Conv(8 filters, 3x3, pad 1) → Relu → GlobalAveragePool → y[batch,8,1,1]."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    return make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("GlobalAveragePool", ["r"], ["y"], name="gap")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8, 1, 1])], [w])


def save(model: onnx.ModelProto, path) -> bytes:
    data = model.SerializeToString()
    path.write_bytes(data)
    return data


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


def test_dynamic_batch_fixed_by_input_shapes(tmp_path):
    p = tmp_path / "model.onnx"
    data = save(conv_model(), p)
    src = load_onnx_source(p, {"x": (2, 3, 8, 8)})
    assert src.sha256 == hashlib.sha256(data).hexdigest()
    assert src.opset == 17 and src.path == p
    assert [(t.name, t.shape, t.dtype) for t in src.inputs] == [("x", (2, 3, 8, 8), "float32")]
    assert [(t.name, t.shape, t.dtype) for t in src.outputs] == [("y", (2, 8, 1, 1), "float32")]
    # every tensor has a full static shape in the returned model: inputs, intermediates, outputs
    g = src.model.graph
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]
              for v in (*g.input, *g.value_info, *g.output)}
    assert shapes == {"x": [2, 3, 8, 8], "c": [2, 8, 8, 8], "r": [2, 8, 8, 8], "y": [2, 8, 1, 1]}
    onnx.checker.check_model(src.model, full_check=True)
    assert p.read_bytes() == data and sorted(os.listdir(tmp_path)) == ["model.onnx"]  # nothing written


def test_static_model_needs_no_input_shapes_and_equal_ones_are_accepted(tmp_path):
    p = tmp_path / "model.onnx"
    save(conv_model(batch=1), p)
    assert load_onnx_source(p).inputs[0].shape == (1, 3, 8, 8)
    assert load_onnx_source(p, {"x": (1, 3, 8, 8)}).outputs[0].shape == (1, 8, 1, 1)


def test_unfixed_dynamic_dim_names_input_dim_and_option(tmp_path):
    p = tmp_path / "model.onnx"
    save(conv_model(), p)
    with pytest.raises(ConfigError) as e:
        load_onnx_source(p)
    assert one_line(e) == (f"{p}: dimension 0 of input 'x' is dynamic ('N'); fix it with --input-shape x=N,3,8,8, "
                           f"each dynamic dimension replaced by a positive integer")


def test_dimension_without_value_or_param_is_dynamic(tmp_path):
    m = conv_model(batch=1)
    m.graph.input[0].type.tensor_type.shape.dim[2].Clear()
    p = tmp_path / "model.onnx"
    save(m, p)
    with pytest.raises(ConfigError, match=r"dimension 2 of input 'x' is dynamic \(no size\); "
                                          r"fix it with --input-shape 'x=1,3,\?,8'"):
        load_onnx_source(p)
    assert load_onnx_source(p, {"x": (1, 3, 8, 8)}).outputs[0].shape == (1, 8, 1, 1)


@pytest.mark.parametrize("shapes, message", [
    ({"z": (1, 3, 8, 8)}, "--input-shape names 'z': not an input of the model; its inputs: 'x'"),
    ({"w": (8, 3, 3, 3)}, "--input-shape names 'w': an initializer (a weight); its inputs: 'x'"),
    ({"x": (1, 3, 8)}, "input 'x' has 4 dimensions, --input-shape gives 3 (1,3,8)"),
    ({"x": (1, 4, 8, 8)}, "dimension 1 of input 'x' is 3 in the model, --input-shape gives 4"),
    ({"x": (0, 3, 8, 8)}, "--input-shape for 'x': (0, 3, 8, 8) is not a tuple of integers in [1, 2147483647]"),
    ({"x": (True, 3, 8, 8)}, "--input-shape for 'x': (True, 3, 8, 8) is not a tuple of integers"),
])
def test_bad_input_shapes(tmp_path, shapes, message):
    p = tmp_path / "model.onnx"
    save(conv_model(), p)
    with pytest.raises(ConfigError) as e:
        load_onnx_source(p, shapes)
    assert message in one_line(e)


def test_external_data_refused_without_opening_it(tmp_path):
    p = tmp_path / "model.onnx"
    onnx.save_model(conv_model(batch=1), p, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").stat().st_size == 8 * 3 * 3 * 3 * 4
    with pytest.raises(ExportError) as e:
        load_onnx_source(p, {"x": (1, 3, 8, 8)})
    msg = one_line(e)
    assert msg.startswith(f"{p}: the model references external data ('weights.bin'); ")
    assert "save_as_external_data=False" in msg
    # the referenced file is never opened: gone, and the answer is the same (not "no such file")
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ExportError) as e:
        load_onnx_source(p, {"x": (1, 3, 8, 8)})
    assert one_line(e) == msg


def test_external_data_in_a_constant_attribute_is_refused(tmp_path):
    value = numpy_helper.from_array(np.ones((2, 2), np.float32), "v")
    value.data_location = TensorProto.EXTERNAL
    value.ClearField("raw_data")
    value.external_data.add(key="location", value="../../etc/passwd")
    m = make_model([helper.make_node("Constant", [], ["y"], value=value)], [],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    p = tmp_path / "model.onnx"
    save(m, p)
    with pytest.raises(ExportError, match=r"references external data \('\.\./\.\./etc/passwd'\)"):
        load_onnx_source(p)


@pytest.mark.parametrize("cut", ["half", "empty", "garbage"])
def test_truncated_or_garbage_file(tmp_path, cut):
    good = conv_model(batch=1).SerializeToString()
    p = tmp_path / "model.onnx"
    p.write_bytes({"half": good[:len(good) // 2], "empty": b"", "garbage": b"\xff\xfe not onnx \x00" * 8}[cut])
    with pytest.raises(ExportError) as e:
        load_onnx_source(p)
    assert one_line(e).startswith(f"{p}: not a valid ONNX model")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ExportError, match="no such file"):
        load_onnx_source(tmp_path / "nothing.onnx")
    with pytest.raises(ExportError, match="not a regular file"):
        load_onnx_source(tmp_path)
    os.mkfifo(tmp_path / "fifo.onnx")  # opened without blocking, refused without reading
    with pytest.raises(ExportError, match="fifo.onnx: not a regular file"):
        load_onnx_source(tmp_path / "fifo.onnx")


def test_size_checked_before_reading(tmp_path, monkeypatch):
    p = tmp_path / "model.onnx"
    data = save(conv_model(batch=1), p)
    monkeypatch.setattr(onnx_source, "MAX_ONNX_BYTES", len(data) - 1)
    with pytest.raises(ExportError) as e:
        load_onnx_source(p)
    assert one_line(e) == (f"{p}: {len(data)} bytes is too large for a self-contained ONNX model "
                           f"(limit {len(data) - 1})")
    monkeypatch.setattr(onnx_source, "MAX_ONNX_BYTES", len(data))
    assert load_onnx_source(p).outputs[0].shape == (1, 8, 1, 1)


def test_huge_file_refused_from_its_size_alone(tmp_path):
    p = tmp_path / "huge.onnx"
    with open(p, "wb") as f:
        f.truncate((3 << 30) + 1)  # sparse: no disk, and reading it would take 3 GiB of memory
    with pytest.raises(ExportError, match=r"3221225473 bytes is too large .* \(limit 2147483648\)"):
        load_onnx_source(p)


@pytest.mark.parametrize("node, reason", [
    (helper.make_node("Frobnicate", ["x"], ["y"]), "No Op registered for Frobnicate with domain_version of 17"),
    (helper.make_node("Relu", ["x"], ["y"], alpha=1.0), "Unrecognized attribute: alpha for operator Relu"),
])
def test_checker_rejection_quotes_first_line(tmp_path, node, reason):
    m = make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    p = tmp_path / "model.onnx"
    save(m, p)
    with pytest.raises(ExportError) as e:
        load_onnx_source(p)
    assert one_line(e) == f"{p}: rejected by the ONNX checker: {reason}"


def test_opset_newer_than_onnx_knows(tmp_path):
    """The checker judges ops of an unknown opset by older schemas and passes them: refused here instead."""
    newest = onnx.defs.onnx_opset_version()
    m = make_model([helper.make_node("Relu", ["x"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], opset=newest + 1)
    p = tmp_path / "model.onnx"
    save(m, p)
    with pytest.raises(ExportError) as e:
        load_onnx_source(p)
    assert one_line(e).startswith(f"{p}: opset {newest + 1} is newer than the installed onnx")


def test_untypeable_input_name_stays_one_line(tmp_path):
    """Names come from the file: a newline in one must not break the one-line message or the suggested option."""
    m = make_model([helper.make_node("Relu", ["in\nput"], ["y"])],
                   [helper.make_tensor_value_info("in\nput", TensorProto.FLOAT, ["N", 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    p = tmp_path / "model.onnx"
    save(m, p)
    with pytest.raises(ConfigError) as e:
        load_onnx_source(p)
    assert one_line(e).endswith("dimension 0 of input 'in\\nput' is dynamic ('N'); fix it with --input-shape "
                                "NAME=N,4 (NAME: the input's name), each dynamic dimension replaced by a positive "
                                "integer")
    assert load_onnx_source(p, {"in\nput": (2, 4)}).outputs[0].shape == (2, 4)


def test_sequence_intermediate_is_refused(tmp_path):
    m = make_model([helper.make_node("SplitToSequence", ["x"], ["s"], name="split"),
                    helper.make_node("ConcatFromSequence", ["s"], ["y"], axis=0)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])])
    p = tmp_path / "model.onnx"
    save(m, p)
    with pytest.raises(UserError, match=r"tensor 's' \(output of SplitToSequence node 'split'\) is a sequence, "
                                        r"not a tensor; "):
        load_onnx_source(p)


def test_multi_input_multi_output_int64_and_bool(tmp_path):
    """ids[B,5] int64 and mask[B,5] bool → Cast/Mul/ReduceSum → total[B,1] int64, any[B,5] bool, plus a
    float path; the batch is fixed once per input."""
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, ["B", 5]),
              helper.make_tensor_value_info("mask", TensorProto.BOOL, ["B", 5]),
              helper.make_tensor_value_info("f", TensorProto.FLOAT16, [2, 5])]
    outputs = [helper.make_tensor_value_info("total", TensorProto.INT64, ["B", 1]),
               helper.make_tensor_value_info("nonzero", TensorProto.BOOL, ["B", 5]),
               helper.make_tensor_value_info("g", TensorProto.FLOAT16, [2, 5])]
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    zero = numpy_helper.from_array(np.array(0, np.int64), "zero")
    m = make_model([
        helper.make_node("Cast", ["mask"], ["mask64"], to=TensorProto.INT64),
        helper.make_node("Mul", ["ids", "mask64"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "axes"], ["total"], keepdims=1),
        helper.make_node("Greater", ["kept", "zero"], ["gt"]),
        helper.make_node("And", ["gt", "mask"], ["nonzero"]),
        helper.make_node("Relu", ["f"], ["g"]),
    ], inputs, outputs, [axes, zero])
    p = tmp_path / "model.onnx"
    save(m, p)
    src = load_onnx_source(p, {"ids": (3, 5), "mask": (3, 5)})
    assert [(t.name, t.shape, t.dtype) for t in src.inputs] == [
        ("ids", (3, 5), "int64"), ("mask", (3, 5), "bool"), ("f", (2, 5), "float16")]
    assert [(t.name, t.shape, t.dtype) for t in src.outputs] == [
        ("total", (3, 1), "int64"), ("nonzero", (3, 5), "bool"), ("g", (2, 5), "float16")]
    with pytest.raises(ConfigError, match="dimension 0 of input 'mask' is dynamic"):
        load_onnx_source(p, {"ids": (3, 5)})


def test_initializers_listed_as_inputs_are_not_user_inputs(tmp_path):
    """An old exporter (IR 3) lists the weights as graph inputs, with a dynamic shape at that: not inputs,
    no --input-shape needed for them, and they leave graph.input so the weights' real shape is inferred."""
    m = conv_model(batch=1)
    m.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, ["K", 3, 3, 3]))
    m.ir_version = 3
    p = tmp_path / "model.onnx"
    save(m, p)
    src = load_onnx_source(p)
    assert [t.name for t in src.inputs] == ["x"] and [v.name for v in src.model.graph.input] == ["x"]
    assert src.outputs[0].shape == (1, 8, 1, 1) and src.model.ir_version == 4
    onnx.checker.check_model(src.model, full_check=True)


def test_unsupported_input_dtype(tmp_path):
    m = make_model([helper.make_node("Relu", ["x"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, 4])])
    p = tmp_path / "model.onnx"
    save(m, p)
    with pytest.raises(UserError) as e:
        load_onnx_source(p)
    assert one_line(e) == (f"{p}: input 'x' has dtype DOUBLE; supported: float32, float16, int64, int32, int8, "
                           f"uint8, bool")


def test_unsupported_intermediate_dtype_names_the_tensor(tmp_path):
    m = make_model([helper.make_node("Cast", ["x"], ["d"], to=TensorProto.DOUBLE, name="up"),
                    helper.make_node("Cast", ["d"], ["y"], to=TensorProto.FLOAT)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    p = tmp_path / "model.onnx"
    save(m, p)
    with pytest.raises(UserError, match=r"tensor 'd' \(output of Cast node 'up'\) has dtype DOUBLE; every tensor"):
        load_onnx_source(p)


def test_intermediate_without_static_shape_names_the_tensor(tmp_path):
    """NonZero's output length depends on the data: no input shape can make it static."""
    m = make_model([helper.make_node("NonZero", ["x"], ["nz"], name="nonzero"),
                    helper.make_node("Cast", ["nz"], ["y"], to=TensorProto.FLOAT)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, "K"])])
    p = tmp_path / "model.onnx"
    save(m, p)
    with pytest.raises(UserError) as e:
        load_onnx_source(p)
    assert one_line(e).startswith(f"{p}: tensor 'nz' (output of NonZero node 'nonzero') has no static size in "
                                  f"dimension 1 (and 1 more); every tensor needs a static shape")


def test_input_shape_that_does_not_fit_the_graph(tmp_path):
    """A shape the user gives can contradict the graph (the Add needs 4 columns): inference says so, one line."""
    bias = numpy_helper.from_array(np.ones((1, 4), np.float32), "b")
    m = make_model([helper.make_node("Add", ["x", "b"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "C"])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [bias])
    p = tmp_path / "model.onnx"
    save(m, p)
    assert load_onnx_source(p, {"x": (2, 4)}).outputs[0].shape == (2, 4)
    with pytest.raises(UserError) as e:
        load_onnx_source(p, {"x": (2, 3)})
    assert one_line(e).startswith(f"{p}: shape inference failed with the input shapes {{'x': (2, 3)}}: ")


@pytest.mark.parametrize("text, expected", [
    ("x=1,3,224,224", ("x", (1, 3, 224, 224))),
    (" input.1 = 1, 3 ,8,8 ", ("input.1 ", (1, 3, 8, 8))),
    ("a=b=7", ("a=b", (7,))),
    ("images:0=2147483647", ("images:0", (2147483647,))),
])
def test_parse_input_shape_good(text, expected):
    assert parse_input_shape(text) == expected


@pytest.mark.parametrize("text, reason", [
    ("x", "expected NAME=D0,D1,"),
    ("=1,3", "expected NAME=D0,D1,"),
    ("x=", "an empty dimension"),
    ("x=1,,3", "an empty dimension"),
    ("x=1,3,H,W", "'H' is not a positive integer"),
    ("x=1,-3", "'-3' is not a positive integer"),
    ("x=1.5", "'1.5' is not a positive integer"),
    ("x=0,3", "every dimension must be in [1, 2147483647]"),
    ("x=2147483648", "every dimension must be in [1, 2147483647]"),
    ("x=" + "9" * 5000, "is not a positive integer"),
])
def test_parse_input_shape_bad(text, reason):
    with pytest.raises(ConfigError) as e:
        parse_input_shape(text)
    msg = one_line(e)
    assert msg.startswith("--input-shape ") and reason in msg and len(msg) < 400


def test_parse_input_shapes_refuses_a_name_twice():
    assert parse_input_shapes(["a=1", "b=2,3"]) == {"a": (1,), "b": (2, 3)}
    with pytest.raises(ConfigError, match="--input-shape gives input 'a' twice"):
        parse_input_shapes(["a=1", "a=2"])
