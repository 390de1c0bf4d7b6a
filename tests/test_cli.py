import json

from typer.testing import CliRunner

from edgecxr import __version__
from edgecxr.cli.app import app
from edgecxr.core.sysinfo import cpu_info, int8_accelerated

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"edgecxr {__version__}"


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "evaluate", "info"):
        assert command in result.output


def test_info_json_reports_backends_and_cpu():
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["backends"]["onnxruntime"]  # installed in the test environment
    assert set(data["cpu"]["features"]) >= {"avx2", "avx512_vnni", "amx_int8"}


def test_cpu_features_from_cpuinfo_text():
    avx2_only = "model name : Some CPU\nflags : fpu sse avx avx2 fma\n"
    info = cpu_info(avx2_only)
    assert info["model"] == "Some CPU"
    assert info["features"]["avx2"] and not info["features"]["avx512_vnni"]
    assert not info["int8_acceleration"]
    assert int8_accelerated(cpu_info("flags : avx2 avx512f avx512_vnni\n")["features"])
    assert int8_accelerated(cpu_info("flags : avx2 amx_tile amx_int8\n")["features"])


def test_bundle_from_the_environment_is_shown_and_used(tmp_path):
    for command in ("watch", "classify", "parity-check", "bench"):
        help_text = runner.invoke(app, [command, "--help"], terminal_width=200).output
        assert "EDGECXR_BUNDLE" in help_text, command
    missing = tmp_path / "no-such-bundle"
    result = runner.invoke(app, ["classify", str(tmp_path / "x.png")], env={"EDGECXR_BUNDLE": str(missing)})
    assert result.exit_code == 2 and str(missing) in result.output and "no bundle.json" in result.output


def test_debug_flag_adds_the_traceback(tmp_path):
    plain = runner.invoke(app, ["classify", "x.png", "--bundle", str(tmp_path)])
    debug = runner.invoke(app, ["--debug", "classify", "x.png", "--bundle", str(tmp_path)])
    assert plain.exit_code == debug.exit_code == 2
    assert "Traceback" not in plain.output and "Traceback" in debug.output
