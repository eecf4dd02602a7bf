"""Untrusted checkpoints: a recorded config or tensor shapes that claim more than the file holds are refused
before the model is allocated, bad config values are refused in one line (exit 2 from the CLI)."""

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import TINY_SMALL_INPUT, randomize_bn

import parnet_deploy as pd
from parnet_deploy.checkpoint import FORMAT
from parnet_deploy.errors import CheckpointError
from parnet_deploy.models import ParNet, ParNetConfig

# every field within its own bounds; together 144 billion weights (576 GB of float32)
HUGE = ParNetConfig(planes=(8192,) * 4, num_blocks=(64, 64, 64, 1))
HUGE_REFUSAL = ("refused: its config (planes [8192, 8192, 8192, 8192], blocks [64, 64, 64, 1], 1000 classes) "
                "implies 143,981,645,939 weights (575,926,586,104 bytes), more than the {size:,}-byte file can hold")


def _own_checkpoint(path, config: dict, state: dict):
    """A checkpoint in our own format, written by hand (save_checkpoint only writes valid models)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={"format": FORMAT, "format_version": "1",
                                              "config": json.dumps(config), "form": "train"})
    else:
        torch.save({"format": FORMAT, "format_version": 1, "config": config, "form": "train",
                    "state_dict": state}, path)
    return path


def _load_in_subprocess(paths, cwd) -> tuple[list[str], float]:
    """Each path's error (one per line) and the peak RSS in MiB of a fresh process that loads them all.
    Its address space is capped, so a loader that allocates fails fast instead of taking gigabytes."""
    code = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))\n"
            "from parnet_deploy.checkpoint import load_checkpoint\n"
            "for p in sys.argv[1:]:\n"
            "    try:\n        load_checkpoint(p)\n        print('loaded', p)\n"
            "    except Exception as e:\n        print(type(e).__name__, repr(str(e)))\n"
            # VmHWM: ru_maxrss would carry over the forking parent's peak on Linux
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    r = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, r.stdout + r.stderr
    *lines, hwm_kib = r.stdout.splitlines()
    return lines, int(hwm_kib) / 1024


def test_a_config_or_shapes_beyond_the_file_are_refused_before_allocating(tmp_path):
    huge = HUGE.to_dict()
    tiny_pt = _own_checkpoint(tmp_path / "tiny.pt", huge, {})
    tiny_st = _own_checkpoint(tmp_path / "tiny.safetensors", huge, {"x": torch.zeros(1)})
    assert tiny_st.stat().st_size < 400
    # every key with the shape HUGE implies, each a stride-0 view of one number: about 1 MB on disk
    with torch.device("meta"):
        shapes = ParNet(HUGE).state_dict()
    views = {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in shapes.items()}
    views_own = _own_checkpoint(tmp_path / "views_own.pt", huge, views)
    torch.save(views, tmp_path / "views_plain.pt")  # no config: it is inferred from the shapes
    views_plain = tmp_path / "views_plain.pt"

    lines, rss_mib = _load_in_subprocess([tiny_pt, tiny_st, views_own, views_plain], tmp_path)
    missing = ("does not fit custom: missing keys: inits.0.0.block.rbr_dense.conv.weight, "
               "inits.0.0.block.rbr_dense.bn.weight, inits.0.0.block.rbr_dense.bn.bias (+3525 more)")
    assert lines == [
        f"CheckpointError {str(tiny_pt) + ': ' + missing!r}",
        f"CheckpointError {str(tiny_st) + ': ' + missing + '; unexpected keys: x'!r}",
        f"CheckpointError {str(views_own) + ': ' + HUGE_REFUSAL.format(size=views_own.stat().st_size)!r}",
        f"CheckpointError {str(views_plain) + ': ' + HUGE_REFUSAL.format(size=views_plain.stat().st_size)!r}",
    ]
    assert rss_mib < 1024, rss_mib  # today's code reached 5.5 GB on the first file


def test_a_loaded_model_holds_exactly_the_saved_parameters_and_buffers(tmp_path):
    model = randomize_bn(pd.create_model("parnet_cifar_s", **TINY_SMALL_INPUT))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.num_batches_tracked.fill_(7)
    for form, m in (("train", model), ("deploy", pd.reparameterize(model))):
        loaded = pd.load_checkpoint(pd.save_checkpoint(m, tmp_path / f"{form}.pt"))
        want, got = m.state_dict(), loaded.state_dict()
        assert list(got) == list(want), form
        assert all(v.device.type == "cpu" and torch.equal(v, want[k]) for k, v in got.items()), form


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("dropout", [2.5, -0.1, 1.0, math.nan, math.inf])
def test_a_recorded_dropout_out_of_range_is_refused(tmp_path, suffix, dropout):
    model = pd.create_model("parnet_cifar_s", **TINY_SMALL_INPUT)
    config = model.config.to_dict() | {"dropout": dropout}
    path = _own_checkpoint(tmp_path / f"m{suffix}", config, dict(model.state_dict()))
    with pytest.raises(CheckpointError) as e:
        pd.load_checkpoint(path)
    assert str(e.value) == f"{path}: bad recorded config: dropout must be a finite number in [0, 1), got {dropout!r}"


@pytest.mark.parametrize("field, value, message", [
    ("planes", [8, 16, 32, math.nan], "planes must be a list of 4 integers, got [8, 16, 32, nan]"),
    ("planes", "8,16,32,32", "planes must be a list of 4 integers, got '8,16,32,32'"),
    ("num_classes", 10.5, "num_classes must be an integer, got 10.5"),
    ("small_input", "yes", "small_input must be true or false, got 'yes'"),
    ("arch", ["x"] * 1000, "arch must be a string, got ['x', 'x', "),
])
def test_recorded_config_values_of_the_wrong_type_are_one_line(tmp_path, field, value, message):
    model = pd.create_model("parnet_cifar_s", **TINY_SMALL_INPUT)
    path = _own_checkpoint(tmp_path / "m.pt", model.config.to_dict() | {field: value}, dict(model.state_dict()))
    with pytest.raises(CheckpointError) as e:
        pd.load_checkpoint(path)
    assert str(e.value).startswith(f"{path}: bad recorded config: {message}") and len(str(e.value)) < 200


def test_a_recorded_config_is_validated_in_a_manifest_too():
    from parnet_deploy.artifacts.export_manifest import ExportManifest
    from parnet_deploy.errors import ConfigError

    config = pd.create_model("parnet_cifar_s", **TINY_SMALL_INPUT).config.to_dict() | {"dropout": math.nan}
    with pytest.raises(ConfigError, match=r"^dropout must be a finite number in \[0, 1\), got nan$"):
        ExportManifest.parse({"model": {"family": "parnet", **config}})


def test_the_export_cli_refuses_a_bad_dropout_in_one_line(tmp_path):
    model = pd.create_model("parnet_cifar_s", **TINY_SMALL_INPUT)
    path = _own_checkpoint(tmp_path / "m.pt", model.config.to_dict() | {"dropout": 2.5}, dict(model.state_dict()))
    r = subprocess.run([sys.executable, "-m", "parnet_deploy.cli.export", str(path), "--output", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr == (f"parnet-export: error: {path}: bad recorded config: dropout must be a finite number "
                        f"in [0, 1), got 2.5\n")
    assert not (tmp_path / "out").exists()
