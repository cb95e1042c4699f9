"""The `edm-se` console script: help, unknown commands, user errors as one line with exit status 2."""

from __future__ import annotations

import pytest
from conftest import run_cli

from edm_se.cli import COMMANDS


def test_top_level_help_lists_every_command():
    res = run_cli("--help")
    assert res.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in res.stdout


def test_no_arguments_prints_usage_and_fails():
    res = run_cli()
    assert res.returncode == 2
    assert "usage: edm-se" in res.stdout


def test_unknown_command_is_one_line_error():
    res = run_cli("frobnicate")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert "unknown command 'frobnicate'" in res.stderr


@pytest.mark.parametrize("command", ["train", "enhance", "evaluate", "study", "plot"])
def test_subcommand_help_explains_itself(command):
    res = run_cli(command, "--help")
    assert res.returncode == 0, res.stderr
    assert f"edm-se {command}" in res.stdout
    assert "Configuration groups" in res.stdout or "== Config ==" in res.stdout


def test_data_help():
    res = run_cli("data", "--help")
    assert res.returncode == 0
    assert "edm-se data build" in res.stdout


def test_multirun_refused_where_it_makes_no_sense(tmp_path):
    res = run_cli("evaluate", "-m", f"estimates={tmp_path}", f"references={tmp_path}")
    assert res.returncode == 2
    assert "multirun is not supported" in res.stderr


def test_enhance_requires_input_and_output():
    res = run_cli("enhance")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert "input=" in res.stderr and "Traceback" not in res.stderr


def test_train_prints_composed_config_without_running():
    res = run_cli("train", "sde=ouve", "precond=sgmse", "loss=sgmse", "--cfg", "job")
    assert res.returncode == 0, res.stderr
    assert "edm_se.sde.OUVE" in res.stdout
    assert "SGMSE" in res.stdout


def test_study_paradigms_is_the_paradigms_app_under_edm_se_study(tmp_path):
    """`edm-se study study=paradigms` runs the paradigms study (conf/paradigms.yaml), not a multirun of
    conf/study.yaml: its config prints, its help is its own, its user errors are one line naming `edm-se study`."""
    res = run_cli("study", "study=paradigms", "--cfg", "job")
    assert res.returncode == 0, res.stderr
    assert "tasks:" in res.stdout and "keywords:" in res.stdout and "hydra" not in res.stdout
    assert "edm-se study study=paradigms" in run_cli("study", "study=paradigms", "--help").stdout
    assert "paradigms" in run_cli("study", "--help").stdout
    res = run_cli("study", "study=paradigms", f"task_root={tmp_path / 'none'}", f"out_dir={tmp_path / 'out'}")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert res.stderr.startswith("edm-se study: error:") and "manifest.csv: task manifest not found" in res.stderr
    res = run_cli("study", "study=paradigms", "-m")
    assert res.returncode == 2 and "multirun is not supported" in res.stderr
