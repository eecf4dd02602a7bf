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
