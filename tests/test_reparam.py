import copy

import pytest
import torch
from conftest import randomize_bn, rel_err

import parnet_deploy as pd
from parnet_deploy.models.parnet import ChannelShift, Fusion, MultiBatchNorm2d, RepVGGBlock

TOL = 1e-5  # max relative error, fp32


@pytest.mark.parametrize("ci, co, stride, groups", [
    (8, 8, 1, 1), (8, 8, 1, 2), (8, 16, 1, 1), (8, 16, 1, 2), (8, 16, 2, 1), (8, 16, 2, 2), (3, 8, 2, 1),
])
@pytest.mark.parametrize("act", ["relu", "silu"])
def test_block_is_exact(ci, co, stride, groups, act):
    torch.manual_seed(1)
    block = randomize_bn(RepVGGBlock(ci, co, stride, groups, act)).eval()
    x = torch.randn(2, ci, 12, 16)
    with torch.no_grad():
        ref = block(x)
        fused = pd.official_fuse(block)(x)
        deploy_block = pd.reparameterize(block)
        out = deploy_block(x)
    assert deploy_block.is_deployed and deploy_block.rbr_dense is None and deploy_block.rbr_1x1 is None
    assert rel_err(out, ref) <= TOL
    assert rel_err(fused, ref) <= TOL


# every variant at full width, several allowed resolutions
@pytest.mark.parametrize("name, resolutions", [
    ("parnet_s", (64, 224)), ("parnet_m", (64, 96)), ("parnet_l", (64, 128)), ("parnet_xl", (64,)),
    ("parnet_cifar_s", (32, 16)), ("parnet_cifar_m", (32, 24)), ("parnet_cifar_l", (32,)),
])
def test_variants_are_exact(name, resolutions):
    torch.manual_seed(0)
    model = randomize_bn(pd.create_model(name), seed=3)
    deploy = pd.reparameterize(model)
    for res in resolutions:
        x = torch.randn(1, 3, res, res)
        with torch.no_grad():
            assert rel_err(deploy(x), model(x)) <= TOL, res


@pytest.mark.parametrize("act", ["relu", "silu"])
def test_deploy_form_folds_everything_foldable(act):
    model = randomize_bn(pd.create_model("parnet_s", act=act, **{"planes": (16, 32, 64, 96)}))
    deploy = pd.reparameterize(model)
    bns = [n for n, m in deploy.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # only identity BNs remain (their output is gated per image, so no conv can absorb them)
    assert bns and all(n.endswith("rbr_identity") for n in bns)
    assert isinstance(deploy.combine[0], ChannelShift) and isinstance(deploy.downsamples_2[1][0], ChannelShift)
    assert deploy.combine[2].shuffle_groups == 1  # folded into combine.3's input channels
    assert deploy.downsamples_2[1][2].shuffle_groups == 2  # feeds a grouped fusion: not foldable
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(deploy(x), model(x)) <= TOL


def test_fusion_with_vanishing_bn_scale_keeps_its_bns():
    torch.manual_seed(0)
    fusion = randomize_bn(Fusion(8, 16, 2, "relu")).eval()
    with torch.no_grad():
        fusion[0].b1.weight[3] = 0.0  # a zero scale: shift / scale is undefined
    a, b = torch.randn(1, 8, 8, 8), torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        ref = fusion(a, b)
        pd.reparameterize(fusion, inplace=True)
        assert isinstance(fusion[0], MultiBatchNorm2d)
        assert rel_err(fusion(a, b), ref) <= TOL


def test_reparameterize_copies_by_default_and_is_idempotent(tiny_model):
    before = copy.deepcopy(tiny_model.state_dict())
    once = pd.reparameterize(tiny_model)
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in before.items())
    twice = pd.reparameterize(once)
    assert once.state_dict().keys() == twice.state_dict().keys()
    assert all(torch.equal(v, twice.state_dict()[k]) for k, v in once.state_dict().items())
    same = pd.reparameterize(tiny_model, inplace=True)
    assert same is tiny_model
