"""The CLIs' shared argument groups (parnet_deploy/cli/args.py): each group's parse gives a typed,
validated config; bad values exit 2 with one line; shared options have one help text everywhere."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from parnet_deploy.bench.timing import TimingConfig
from parnet_deploy.cli import args, bench, build, common, export, quantize
from parnet_deploy.cli import eval as eval_cli
from parnet_deploy.errors import UserError


def parse(group, argv, **kwargs):
    p = argparse.ArgumentParser(prog="prog")
    group.add_to_parser(p)
    return group.parse(p.parse_args(argv), **kwargs)


def argparse_error(capsys, group, argv) -> str:
    """The one error line of an argparse refusal (after its usage lines), which exits 2."""
    with pytest.raises(SystemExit) as e:
        parse(group, argv)
    assert e.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1, errors
    return errors[0]


def run_error(capsys, prog, main, argv) -> str:
    """A value that parses but is out of range: one line on stderr through common.run, exit 2."""
    assert common.run(prog, main, argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# -- calibration ----------------------------------------------------------------------------------

def test_calibration_group_gives_a_calibration():
    got = parse(args.CalibrationArgs(), ["--calib", "digits", "--calib-method", "entropy", "--eval", "set.npz",
                                         "--max-drop", "0.5"])
    assert got == args.Calibration(calib="digits", method="entropy", eval_source="set.npz", max_drop=0.5)
    assert parse(args.CalibrationArgs(), []) == args.Calibration(None, "minmax", None, 1.0)
    assert parse(args.CalibrationArgs(gate=False), ["--calib", "x"]) == args.Calibration(calib="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.calib = "y"


def test_calibration_group_refuses_bad_values(capsys):
    line = argparse_error(capsys, args.CalibrationArgs(), ["--calib-method", "median"])
    assert line.startswith("prog: error: argument --calib-method: invalid choice: 'median'")
    assert argparse_error(capsys, args.CalibrationArgs(required=True), []) == \
        "prog: error: the following arguments are required: --calib"
    assert argparse_error(capsys, args.CalibrationArgs(), ["--max-drop", "much"]) == \
        "prog: error: argument --max-drop: invalid float value: 'much'"
    assert argparse_error(capsys, args.CalibrationArgs(gate=False), ["--max-drop", "1"]).startswith(
        "prog: error: unrecognized arguments: --max-drop")
    with pytest.raises(UserError, match="--max-drop must be between 0 and 100 points, got 200.0"):
        parse(args.CalibrationArgs(), ["--max-drop", "200"])


@pytest.mark.parametrize("prog, main", [("parnet-build", build.main), ("parnet-quantize", quantize.main)])
@pytest.mark.parametrize("drop", ["200", "-1", "nan"])
def test_max_drop_out_of_range_is_one_line_exit_2(capsys, tmp_path, prog, main, drop):
    line = run_error(capsys, prog, main, [str(tmp_path), "--calib", "digits", "--max-drop", drop])
    assert line == f"{prog}: error: --max-drop must be between 0 and 100 points, got {float(drop)}"


def test_build_and_quantize_parse_into_their_configs(tmp_path):
    from parnet_deploy.engines.build import BuildConfig
    from parnet_deploy.precision.quantize import QuantizeConfig

    export_dir, config = build.parse([str(tmp_path), "--devices", "0,1", "--placement", "official",
                                      "--precision", "int8", "--calib", "digits", "--calib-method", "percentile",
                                      "--eval", "e", "--max-drop", "2", "--output", str(tmp_path / "e"), "--force"])
    assert export_dir == tmp_path
    assert config == BuildConfig(backend="auto", devices="0,1", placement="official", output=tmp_path / "e",
                                 force=True, precision="int8", calib="digits", calib_method="percentile",
                                 max_drop=2.0, eval_source="e")
    export_dir, config = quantize.parse([str(tmp_path), "--calib", "digits", "--name", "q"])
    assert config == QuantizeConfig(calib="digits", name="q", output=Path("export"))


# -- runtime --------------------------------------------------------------------------------------

def test_runtime_group_gives_a_runtime():
    got = parse(args.RuntimeArgs(), ["--backend", "openvino", "--precision", "bf16", "--mode", "streams",
                                     "--threads", "3", "--device", "cpu"])
    assert got == args.Runtime(backend="openvino", precision="bf16", device="cpu", mode="streams", threads=3)
    assert got.load_kwargs() == {"backend": "openvino", "mode": "streams", "threads": 3, "precision": "bf16",
                                 "device": "cpu", "cuda_graph": False}
    import os

    assert parse(args.RuntimeArgs(), []).threads == (os.cpu_count() or 1)
    assert parse(args.RuntimeArgs(build=True), ["--devices", "0,1"]) == \
        args.Runtime(backend="auto", precision="export", device="0,1")


@pytest.mark.parametrize("group, argv, message", [
    (args.RuntimeArgs(), ["--threads", "0"], "argument --threads: expected an integer from 1 to 1024, got '0'"),
    (args.RuntimeArgs(), ["--threads", "2000"], "argument --threads: expected an integer from 1 to 1024, got '2000'"),
    (args.RuntimeArgs(), ["--mode", "fast"], "argument --mode: invalid choice: 'fast'"),
    (args.RuntimeArgs(build=True), ["--precision", "fp16"], "argument --precision: invalid choice: 'fp16'"),
    (args.RuntimeArgs(build=True), ["--backend", "torch"], "argument --backend: invalid choice: 'torch'"),
])
def test_runtime_group_refuses_bad_values(capsys, group, argv, message):
    assert argparse_error(capsys, group, argv).startswith(f"prog: error: {message}")


# -- timing ---------------------------------------------------------------------------------------

def test_timing_group_gives_the_timing_config():
    assert parse(args.TimingArgs(), ["--warmup", "0.5", "--iterations", "10", "--duration", "2"]) == \
        TimingConfig(0.5, 10, 2.0)
    assert parse(args.TimingArgs(), []) == TimingConfig()


@pytest.mark.parametrize("argv, message", [
    (["--duration", "nan"], ("argument --duration: expected a finite number of seconds >= 0 (at most 86400), "
                             "got 'nan'")),
    (["--warmup", "-1"], "argument --warmup: expected a finite number of seconds >= 0"),
    (["--iterations", "0"], "argument --iterations: expected an integer from 1 to 2147483648, got '0'"),
    (["--iterations", "x"], "argument --iterations: expected an integer from 1 to 2147483648, got 'x'"),
])
def test_timing_group_refuses_bad_values(capsys, argv, message):
    assert argparse_error(capsys, args.TimingArgs(), argv).startswith(f"prog: error: {message}")


def test_too_many_iterations_is_one_line_exit_2(capsys, tmp_path):
    line = run_error(capsys, "parnet-bench", bench.main, ["--engine", str(tmp_path), "--iterations", "20000000"])
    assert line.startswith("parnet-bench: error: warm-up and duration must be from 0 to 86400 s, and iterations")


# -- output ---------------------------------------------------------------------------------------

def test_output_group_gives_an_output_dir(tmp_path):
    group = args.OutputDirArgs("engines", holds="engines", replaces="existing engines")
    assert parse(group, []) == args.OutputDir(Path("engines"))
    assert parse(group, ["--output", str(tmp_path), "--force"]) == args.OutputDir(tmp_path, None, True)
    named = args.OutputDirArgs("export", holds="exports", replaces="an existing export", name_help="a name")
    assert parse(named, ["--name", "n"]) == args.OutputDir(Path("export"), "n", False)


@pytest.mark.parametrize("prog, main, argv, holds", [
    ("parnet-build", build.main, ["EXPORT"], "engines"),
    ("parnet-quantize", quantize.main, ["EXPORT", "--calib", "digits"], "exports"),
    ("parnet-export", export.main, ["ckpt.pt"], "exports"),
])
def test_an_output_folder_that_is_a_file_is_one_line_exit_2(capsys, tmp_path, prog, main, argv, holds):
    (tmp_path / "out").write_text("")
    line = run_error(capsys, prog, main, [*argv, "--output", str(tmp_path / "out")])
    assert line == f"{prog}: error: --output {tmp_path / 'out'} is a file; it names the folder that holds {holds}"


def test_report_group_checks_its_files_before_the_work(tmp_path):
    assert parse(args.ReportArgs(plot=True), ["--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "p.svg")]) \
        == args.Reports(tmp_path / "r.json", tmp_path / "p.svg")
    with pytest.raises(UserError, match=r"expected a \.json file"):
        parse(args.ReportArgs(), ["--json", str(tmp_path / "r.txt")])
    with pytest.raises(UserError, match="is a directory"):
        parse(args.ReportArgs(plot=True), ["--plot", str(tmp_path)])
    (tmp_path / "in").mkdir()
    with pytest.raises(UserError, match="which this command reads"):
        parse(args.ReportArgs(), ["--json", str(tmp_path / "in" / "r.json")], reads=(tmp_path / "in",))


def test_eval_refuses_a_bad_json_path_in_one_line(capsys, tmp_path):
    line = run_error(capsys, "parnet-eval", eval_cli.main, ["ckpt.pt", "--data", "digits", "--json", str(tmp_path)])
    assert line == f"parnet-eval: error: cannot write {tmp_path}: it is a directory"


# -- help written once ----------------------------------------------------------------------------

def option_help(help_text: str, option: str) -> str:
    """The help of one option: its line and the continuation lines, whitespace collapsed."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"  {re.escape(option)}( |$)", line))
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("   ") or line.lstrip().startswith("-"):
            break
        block.append(line)
    return " ".join(" ".join(block).split())


def cli_help(main, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_calibration_help_is_the_same_in_every_cli(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    helps = {name: cli_help(main, capsys) for name, main in
             [("parnet-build", build.main), ("parnet-quantize", quantize.main), ("parnet-eval", eval_cli.main)]}
    for option, clis in [("--calib", helps), ("--calib-method", helps),
                         ("--eval", ("parnet-build", "parnet-quantize")),
                         ("--max-drop", ("parnet-build", "parnet-quantize"))]:
        texts = {name: option_help(helps[name], option) for name in clis}
        assert len(set(texts.values())) == 1, texts
        assert len(next(iter(texts.values()))) > len(option) + 20  # has a help text, not just the flag
    assert "--eval" not in helps["parnet-eval"] and "--max-drop" not in helps["parnet-eval"]


def test_cli_modules_share_one_max_side():
    import parnet_deploy.cli.common as c
    import parnet_deploy.export.pipeline as p
    from parnet_deploy.models.config import MAX_SIDE

    assert c.MAX_SIDE is MAX_SIDE and p.MAX_SIDE is MAX_SIDE  # imported, not defined again

    assert common.resolution(str(MAX_SIDE)) == (MAX_SIDE, MAX_SIDE)
    with pytest.raises(argparse.ArgumentTypeError, match=f"sides in 1..{MAX_SIDE}"):
        common.resolution(str(MAX_SIDE + 1))
