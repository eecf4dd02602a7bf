import pytest
import torch

import parnet_deploy as pd
from parnet_deploy.errors import ConfigError

OFFICIAL = ["parnet_s", "parnet_m", "parnet_l", "parnet_xl"]
# Measured on the official code (DESIGN.md): train form and after the official fuse.
TRAIN_PARAMS = {"parnet_s": 20.93e6, "parnet_m": 38.95e6, "parnet_l": 60.18e6, "parnet_xl": 93.18e6}
FUSED_PARAMS = {"parnet_s": 19.13e6, "parnet_m": 35.58e6, "parnet_l": 54.91e6, "parnet_xl": 84.96e6}
SMALL_TARGETS = {"parnet_cifar_s": 1.3e6, "parnet_cifar_m": 15.5e6, "parnet_cifar_l": 35e6}


def test_registry_lists_all_variants():
    assert set(OFFICIAL) | set(SMALL_TARGETS) == set(pd.list_models())


@pytest.mark.parametrize("name", OFFICIAL)
def test_official_parameter_counts_and_depth(name):
    model = pd.create_model(name)
    fused, deploy = pd.official_fuse(model), pd.reparameterize(model)
    assert pd.count_params(model) == pytest.approx(TRAIN_PARAMS[name], rel=1e-3)
    assert pd.count_params(fused) == pytest.approx(FUSED_PARAMS[name], rel=1e-3)
    # our deploy form folds more, so it is never larger than the official fuse
    assert pd.count_params(deploy) <= pd.count_params(fused)
    # the stated counts are rounded to 0.01M; compare at that precision
    assert round(pd.count_params(deploy) / 1e6, 2) <= FUSED_PARAMS[name] / 1e6
    assert pd.depth(model) == pd.depth(deploy) == 12


@pytest.mark.parametrize("name", sorted(SMALL_TARGETS))
def test_small_input_variants_match_paper_sizes(name):
    model = pd.create_model(name)
    deploy = pd.reparameterize(model)
    assert abs(pd.count_params(deploy) / SMALL_TARGETS[name] - 1) <= 0.05
    assert pd.depth(model) == pd.depth(deploy) == 12
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_flops_of_parnet_s_close_to_paper():
    # Table 2: 9.7B for ParNet-S (paper widths 96; the released 92 is a little smaller)
    flops = pd.flops(pd.reparameterize(pd.create_model("parnet_s")), 224)
    assert 8.5e9 < flops < 9.8e9


def test_options_are_recorded():
    m = pd.create_model("parnet_s", act="silu", num_classes=10, planes=(16, 32, 64, 96))
    assert m.config.act == "silu" and m.config.num_classes == 10
    assert m.config.arch == "custom"  # changed widths are no longer parnet_s
    assert isinstance(m.inits[0][0].block.act, torch.nn.SiLU)
    assert pd.create_model("parnet_s", act="relu").config.arch == "parnet_s"


@pytest.mark.parametrize("kwargs, match", [
    (dict(act="gelu"), "act must be one of"),
    (dict(planes=(16, 33, 64, 96)), "must be even"),
    (dict(num_blocks=(5, 6, 6, 2)), "num_blocks"),
    (dict(bogus=1), "bad option"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        pd.create_model("parnet_s", **kwargs)


@pytest.mark.parametrize("dropout", [2.5, -0.1, 1.0, float("nan"), float("inf"), 10 ** 400])
def test_dropout_must_be_finite_and_in_range(dropout):
    shown = "inf" if dropout == 10 ** 400 else repr(float(dropout))
    message = f"dropout must be a finite number in [0, 1), got {shown}"
    with pytest.raises(ConfigError) as e:
        pd.ParNetConfig(planes=(8, 16, 32, 32), dropout=dropout)
    assert str(e.value) == message
    with pytest.raises(ConfigError) as e:
        pd.models.model_config("parnet_l", dropout=dropout)  # the path every override takes
    assert str(e.value) == message


@pytest.mark.parametrize("kwargs, message", [
    (dict(dropout="0.1"), "dropout must be a number, got '0.1'"),
    (dict(dropout=True), "dropout must be a number, got True"),
    (dict(num_classes=10.0), "num_classes must be an integer, got 10.0"),
    (dict(num_classes=True), "num_classes must be an integer, got True"),
    (dict(planes=(8, 16, 32, 32.5)), "planes must be a list of 4 integers, got [8, 16, 32, 32.5]"),
    (dict(num_blocks=5), "num_blocks must be a list of 4 integers, got 5"),
    (dict(small_input=1), "small_input must be true or false, got 1"),
    (dict(act=["relu"]), "act must be one of ('relu', 'silu'), got ['relu']"),
    (dict(num_classes=10 ** 5000), "num_classes must be in 1..100000, got <a int too long to print>"),
    (dict(planes=list(range(2, 10 ** 4, 2))), "planes must be 4 ints in 1..8192, got (2, 4, 6, 8, 10, 12, 14, "
                                              "16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, ..."),
])
def test_config_fields_of_the_wrong_type_are_refused(kwargs, message):
    with pytest.raises(ConfigError) as e:
        pd.ParNetConfig(**({"planes": (8, 16, 32, 32)} | kwargs))
    assert str(e.value) == message


def test_valid_dropouts_are_kept():
    assert [pd.ParNetConfig(planes=(8, 16, 32, 32), dropout=d).dropout for d in (0, 0.1, 0.999)] == [0.0, 0.1, 0.999]


def test_unknown_model():
    with pytest.raises(ConfigError, match="unknown model 'parnet_q'; known: parnet_cifar_l"):
        pd.create_model("parnet_q")


@pytest.mark.parametrize("name, shape, ok", [
    ("parnet_s", (1, 3, 64, 96), True), ("parnet_s", (1, 3, 64, 80), False),
    ("parnet_s", (1, 1, 64, 64), False), ("parnet_cifar_s", (1, 3, 36, 28), True),
    ("parnet_cifar_s", (1, 3, 30, 32), False),
])
def test_input_side_constraint(name, shape, ok):
    m = pd.create_model(name, planes=(8, 16, 32, 32))
    if ok:
        assert m(torch.zeros(shape)).shape == (shape[0], 10 if "cifar" in name else 1000)
    else:
        with pytest.raises(ConfigError, match="multiples of|expected input"):
            m(torch.zeros(shape))


@pytest.mark.parametrize("split, names, streams", [
    ("shared", ["stem", "stream0", "stream1", "stream2", "fusion"], [None, 0, 1, 2, None]),
    ("replicated", ["stream0", "stream1", "stream2", "fusion"], [0, 1, 2, None]),
])
def test_cut_plan_is_declared_once_and_composes_to_the_model(tiny_model, split, names, streams):
    """The exporter and the torch backend both read ``cut_plan``: run in its order, it is the model."""
    from parnet_deploy.backends.torch.slices import slice_of
    from parnet_deploy.models.cuts import cut_tensors

    model = tiny_model.eval()
    plan = model.cut_plan(split)
    assert [c.name for c in plan] == names and [c.stream for c in plan] == streams
    assert cut_tensors(plan) == (("x0", "x1", "x2", "y0", "y1", "y2") if split == "shared" else ("y0", "y1", "y2"))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    values = {"image": x}
    with torch.no_grad():
        for cut in plan:  # a valid execution order: every input exists before its reader runs
            assert all(n in values for n in cut.inputs), cut.name
            values.update(zip(cut.outputs, slice_of(model, cut.name, split)(*(values[n] for n in cut.inputs))))
        assert torch.equal(values["logits"], model(x))
    # stream 0 leaves through its downsample (ParNet.stream_output): y0 crosses at stream 1's shape
    assert values["y0"].shape == values["y1"].shape == (1, model.config.planes[1], 8, 8)
    with pytest.raises(ConfigError, match="unknown split 'diagonal'; choose one of replicated, shared"):
        model.cut_plan("diagonal")
