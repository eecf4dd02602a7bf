import argparse
import logging
import os
import pickle

import pytest
import torch
from conftest import TINY_SMALL_INPUT, randomize_bn

import parnet_deploy as pd
from parnet_deploy.checkpoint import save_official_checkpoint
from parnet_deploy.errors import CheckpointError


def _outputs_equal(a, b, res=64):
    x = torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a(x), b(x))


def test_official_checkpoint_round_trip(tmp_path, tiny_model, caplog):
    path = tmp_path / "planes_16_32_64_96_num_blocks_5_6_6_1_sebv_13_dropout_lin.pth.tar"
    save_official_checkpoint(tiny_model, path)
    raw = torch.load(path, weights_only=False)
    assert isinstance(raw["args"], argparse.Namespace)
    assert all(k.startswith("module.") for k in raw["state_dict"])
    with caplog.at_level(logging.INFO, logger="parnet_deploy"):
        loaded = pd.load_checkpoint(path)  # no arch: inferred from shapes
    assert "using relu" in caplog.text
    assert loaded.config.planes == (16, 32, 64, 96) and loaded.config.num_classes == 10
    assert loaded.config.num_blocks == (5, 6, 6, 1) and loaded.config.act == "relu"
    assert _outputs_equal(loaded, tiny_model)


def test_official_checkpoint_ema_and_act_override(tmp_path, tiny_model):
    path = tmp_path / "ckpt.pth.tar"
    save_official_checkpoint(tiny_model, path)
    raw = torch.load(path, weights_only=False)
    raw["state_dict_ema"]["module.head.fc.bias"] += 1.0
    torch.save(raw, path)
    plain, ema = pd.load_checkpoint(path), pd.load_checkpoint(path, use_ema=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ema(x) - plain(x), torch.ones(1, 10))
    assert pd.load_checkpoint(path, act="silu").config.act == "silu"


def test_arch_is_named_when_shapes_match_a_registered_variant(tmp_path):
    model = pd.create_model("parnet_cifar_s")
    save_official_checkpoint(model, tmp_path / "c.pth")
    assert pd.load_checkpoint(tmp_path / "c.pth").config.arch == "parnet_cifar_s"


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("deploy", [False, True])
def test_own_format_round_trip(tmp_path, suffix, deploy):
    model = pd.create_model("parnet_cifar_s", act="silu", **TINY_SMALL_INPUT)
    model = pd.reparameterize(randomize_bn(model)) if deploy else randomize_bn(model)
    path = pd.save_checkpoint(model, tmp_path / f"m{suffix}")
    loaded = pd.load_checkpoint(path)
    assert loaded.config == model.config and loaded.config.act == "silu"
    assert all(b.is_deployed == deploy for b in (m for m in loaded.modules() if hasattr(m, "is_deployed")))
    assert _outputs_equal(loaded, model, res=32)
    assert os.listdir(tmp_path) == [path.name]  # no temp files left behind


def test_own_format_refuses_a_different_activation(tmp_path, tiny_model):
    path = pd.save_checkpoint(tiny_model, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="records act='relu'; refusing to run it with act='silu'"):
        pd.load_checkpoint(path, act="silu")


def test_plain_state_dict(tmp_path, tiny_model):
    torch.save(tiny_model.state_dict(), tmp_path / "sd.pth")
    assert _outputs_equal(pd.load_checkpoint(tmp_path / "sd.pth"), tiny_model)


def test_officially_fused_state_dict_loads_as_such(tmp_path, tiny_model):
    torch.save(pd.official_fuse(tiny_model).state_dict(), tmp_path / "fused.pth")
    loaded = pd.load_checkpoint(tmp_path / "fused.pth")
    assert loaded.inits[1].block.rbr_reparam is not None
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), tiny_model(x), rtol=1e-4, atol=1e-5)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"head.fc.weight": torch.zeros(2, 2)}, "payload": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="refused to load.*could run code"):
        pd.load_checkpoint(path)
    assert not marker.exists()
    # a bare pickle (not a torch zip) is refused the same way
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_Evil(marker), f)
    with pytest.raises(CheckpointError):
        pd.load_checkpoint(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_bad_files(tmp_path, tiny_model):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        pd.load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        pd.load_checkpoint(tmp_path / "notes.txt")
    good = pd.save_checkpoint(tiny_model, tmp_path / "good.pt")
    (tmp_path / "trunc.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        pd.load_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        pd.load_checkpoint(tmp_path / "bad.safetensors")
    torch.save({"epoch": 3}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        pd.load_checkpoint(tmp_path / "odd.pt")
    torch.save({"state_dict": {"fc.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a ParNet checkpoint"):
        pd.load_checkpoint(tmp_path / "other.pt")


def test_a_state_dict_without_the_keys_every_parnet_has_names_them(tmp_path, tiny_model):
    torch.save({"head.fc.weight": torch.zeros(10, 96)}, tmp_path / "head.pt")
    with pytest.raises(CheckpointError) as e:
        pd.load_checkpoint(tmp_path / "head.pt")
    assert str(e.value) == (f"{tmp_path / 'head.pt'}: not a ParNet checkpoint: missing 125 keys: "
                            "inits.0.0.block.rbr_dense.conv.weight, inits.0.0.block.rbr_dense.bn.weight, "
                            "inits.0.0.block.rbr_dense.bn.bias (+122 more)")
    deploy = {k: v for k, v in pd.reparameterize(tiny_model).state_dict().items() if not k.startswith("inits.1.")}
    torch.save(deploy, tmp_path / "deploy.pt")
    with pytest.raises(CheckpointError) as e:  # named in the form the state_dict is in
        pd.load_checkpoint(tmp_path / "deploy.pt")
    assert str(e.value) == (f"{tmp_path / 'deploy.pt'}: not a ParNet checkpoint: missing 3 keys: "
                            "inits.1.block.se.cvsig.conv.weight, inits.1.block.reparam_conv.weight, "
                            "inits.1.block.reparam_conv.bias")


def test_key_and_shape_mismatches_are_named(tmp_path, tiny_model):
    state = dict(tiny_model.state_dict())
    del state["streams.0.0.block.se.cvsig.conv.weight"]
    state["streams.0.0.block.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "keys.pt")
    with pytest.raises(CheckpointError, match=r"missing keys: streams\.0\.0\.block\.se\.cvsig\.conv\.weight"
                                              r".*unexpected keys: streams\.0\.0\.block\.extra"):
        pd.load_checkpoint(tmp_path / "keys.pt")
    torch.save(tiny_model.state_dict(), tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatch.*inits\.0\.0\.block\.rbr_dense\.conv\.weight"):
        pd.load_checkpoint(tmp_path / "s.pt", arch="parnet_s")  # checkpoint is narrower than parnet_s


def test_zip_bomb_is_refused_before_it_inflates(tmp_path):
    import zipfile

    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("archive/data/0", "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(256):  # 256 MiB of zeros: a few hundred KB on disk
                f.write(chunk)
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(CheckpointError, match="inflate to 268435456 bytes"):
        pd.load_checkpoint(bomb)


def test_bad_safetensors_metadata_is_one_line(tmp_path, tiny_model):
    from safetensors.torch import save_file

    for meta in ({"format": "parnet-deploy", "config": "{not json"},
                 {"format": "parnet-deploy", "format_version": "one", "config": "{}"},
                 {"format": "parnet-deploy"}):
        path = tmp_path / "m.safetensors"
        save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, str(path), metadata=meta)
        with pytest.raises(CheckpointError, match="bad parnet-deploy metadata"):
            pd.load_checkpoint(path)


def test_non_finite_weights_are_refused(tmp_path, tiny_model):
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 4)
    state[key].view(-1)[0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=f"non-finite weights .* in {key}"):
        pd.load_checkpoint(tmp_path / "nan.pt")
