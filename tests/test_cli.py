"""The `edm-se` console script: help, unknown commands, user errors as one line with exit status 2."""

from __future__ import annotations

import pytest
import torch
from conftest import run_cli, run_cli_many

from edm_se.audio import AudioError
from edm_se.cli import COMMANDS, _worker_message, report_user_errors


def test_top_level_help_lists_every_command():
    res = run_cli("--help")
    assert res.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in res.stdout


def test_many_command_lines_in_one_process_answer_as_separate_processes_do(tmp_path):
    """run_cli_many (the tests' runner for many refused command lines) gives each command line the status, stdout and
    stderr that its own process gives, and reports an uncaught exception as a traceback with status 1."""
    argvs = (["--version"], ["frobnicate"], ["data", "testset", "max_clips=0", f"out_dir={tmp_path / 'ts'}"])
    many = run_cli_many(*argvs)
    for res, argv in zip(many, argvs):
        alone = run_cli(*argv)
        assert (res.returncode, res.stdout, res.stderr) == (alone.returncode, alone.stdout, alone.stderr), argv
    assert [r.returncode for r in many] == [0, 2, 2] and many[0].stdout.startswith("edm-se ")
    debug = run_cli_many(argvs[2], env={"EDM_SE_DEBUG": "1"})[0]  # the user error re-raised: a traceback
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "max_clips=0" in debug.stderr


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


def test_help_lists_only_the_config_groups_a_command_chooses():
    """Hydra's help listed every group under conf/ for every command (`edm-se plot --help` offered `net` and
    `loss`); each command's help now lists the groups of its own defaults list (and `+experiment` for train), with
    every option, and none where the command chooses none."""
    train, enhance, study, plot, evaluate, build = run_cli_many(
        ["train", "--help"], ["enhance", "--help"], ["study", "--help"], ["plot", "--help"], ["evaluate", "--help"],
        ["data", "build", "--help"])
    groups = {}
    for name, res in (("train", train), ("enhance", enhance), ("study", study)):
        assert res.returncode == 0, res.stderr
        section = res.stdout.split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
        groups[name] = {line.split(":")[0]: line.split(": ", 1)[1].split(", ") for line in section.splitlines()
                        if ": " in line and not line.startswith("Compose")}
    assert list(groups["train"]) == ["sde", "precond", "net", "loss", "data", "stft", "trainer", "sampler",
                                     "paradigm", "+experiment"]
    assert "sbvp" in groups["train"]["sde"] and "cpu_demo" in groups["train"]["+experiment"]
    assert list(groups["enhance"]) == ["sampler"] and "dpmpp_2m" in groups["enhance"]["sampler"]
    assert list(groups["study"]) == ["sampler", "study"] and "paradigms" in groups["study"]["study"]
    for res in (plot, evaluate, build):
        assert res.returncode == 0 and "== Config ==" in res.stdout and "Configuration groups" not in res.stdout
    assert "edm-se plot: draw" in plot.stdout and "results: null" in plot.stdout


def test_data_help():
    res = run_cli("data", "--help")
    assert res.returncode == 0
    assert "edm-se data build" in res.stdout


def test_data_commands_refuse_a_value_where_a_list_goes_in_one_line(tmp_path):
    """`edm-se data tasks tasks=keywords` was a traceback (OmegaConf.to_container of a string)."""
    cases = (("tasks=keywords", "tasks=keywords: must be a non-empty list of keywords, sentences (tasks=[keywords])"),
             ("tasks=[kw]", "tasks=['kw']: must be a non-empty list of keywords, sentences (tasks=[keywords])"),
             ("voices=slt", "voices=slt: must be a non-empty list of voices (kal16, joe, espeak, rms, slt, awb, "
                            "allison) or null"),
             ("sentence_takes=0", "sentence_takes=0: must be an integer >= 1"))
    runs = run_cli_many(*(["data", "tasks", f"out_dir={tmp_path / 'tasks'}", arg] for arg, _ in cases))
    for res, (_, why) in zip(runs, cases):
        assert res.returncode == 2 and res.stderr.strip().splitlines() == [f"edm-se data tasks: error: {why}"]
    assert not (tmp_path / "tasks").exists()
    # `data build sources=flite` was the same traceback, and `sources=[]` built every source
    known = "allison, arctic, fillets_cs, ktuberling, megaglest, sonic_pi, freedesktop, wesnoth, supertuxkart, " \
            "asterisk_moh, piper_rir"
    for res, value in zip(run_cli_many(*(["data", "build", f"out_dir={tmp_path / 'corpus'}", f"sources={v}"]
                                         for v in ("flite", "[]"))), ("flite", "[]")):
        assert res.returncode == 2 and res.stderr.strip().splitlines() == [
            f"edm-se data build: error: sources={value}: must be a non-empty list of corpus sources ({known}) or "
            "null (all)"]
    assert not (tmp_path / "corpus").exists()


def test_a_path_that_is_a_bare_number_is_a_path(tmp_path):
    """`ckpt=12`, `results=4`, `references=7`: Hydra reads a bare number as an int, and Path(int) was a TypeError
    traceback (in a study's checks, a warning, after which every cell failed); it is the path it names."""
    ckpt, plot, evaluate = run_cli_many(
        ["study", "study=steps", "ckpt=12", f"hydra.sweep.dir={tmp_path / 's'}"], ["plot", "results=4"],
        ["evaluate", "estimates=edm_se/data/builtin/testset/noisy", "references=7"])
    assert ckpt.returncode == 2 and ckpt.stderr.strip() == "edm-se study: error: 12: checkpoint not found"
    assert not (tmp_path / "s").exists()
    assert plot.returncode == 2 and plot.stderr.strip() == (
        "edm-se plot: error: 4: no such results file (run `edm-se study` first)")
    assert evaluate.returncode == 2 and evaluate.stderr.strip() == (
        "edm-se evaluate: error: 7: references directory does not exist")
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from edm_se.cli import conf_dir
    from edm_se.config import paths_as_text

    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        cfg = compose(config_name="study", overrides=["test_set=2024", "ckpt=1.50", "reuse_checkpoints=[7,a]"])
    paths_as_text(cfg, ["test_set=2024", "ckpt=1.50"])
    assert (cfg.test_set, cfg.ckpt, OmegaConf.to_container(cfg.reuse_checkpoints)) == ("2024", "1.50", ["7", "a"])
    assert cfg.seed == 0  # not a path: left as it is


def test_multirun_refused_where_it_makes_no_sense(tmp_path):
    res = run_cli("evaluate", "-m", f"estimates={tmp_path}", f"references={tmp_path}")
    assert res.returncode == 2
    assert "multirun is not supported" in res.stderr


def test_enhance_requires_input_and_output():
    res = run_cli("enhance")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert "input=" in res.stderr and "Traceback" not in res.stderr


def test_a_field_of_an_unchosen_sampler_gets_a_pointed_message(tmp_path):
    """`sampler.num_steps=4` without `sampler=NAME` cannot compose (enhance leaves the group to the checkpoint):
    the last line says what to write instead, naming the field and the samplers; a chosen sampler composes."""
    io = ["enhance", f"input={tmp_path}/x.wav", f"output={tmp_path}/out"]
    res, other, chosen, unknown = run_cli_many([*io, "sampler.num_steps=4"], [*io, "sampler.s_churn=0.5"],
                                               [*io, "sampler=euler", "sampler.num_steps=4"], [*io, "nosuchkey=1"])
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1  # Hydra's "Could not override" message is held back
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("edm-se enhance: error: sampler.num_steps=4: no sampler is chosen")
    assert "sampler=edm_heun sampler.num_steps=4" in last and "pc" in last and "num_steps=N" in last
    assert "sampler.s_churn=0.5: no sampler is chosen" in other.stderr and "num_steps=N" not in other.stderr
    assert chosen.returncode == 2 and "no sampler is chosen" not in chosen.stderr
    assert "x.wav: no such file" in chosen.stderr  # it composed and got as far as the input
    last = unknown.stderr.strip().splitlines()[-1]
    assert unknown.returncode == 2 and last.startswith("edm-se enhance: error: nosuchkey: no such key")
    assert "its keys: " in last and "ckpt" in last and "input" in last


@pytest.mark.parametrize(("command", "args", "expected"), [
    ("enhance", ["checkpoint=x.pt"], "checkpoint: no such key in this command's config (did you mean ckpt=?)"),
    ("enhance", ["sampler=euler", "sampler.num_step=3"], "sampler.num_step: no such key in `sampler` "
                                                         "(did you mean sampler.num_steps=?)"),
    ("train", ["sde=ouve", "sde.thetaa=1"], "sde.thetaa: no such key in `sde` (did you mean sde.theta=?)"),
    ("evaluate", ["estimate=x"], "estimate: no such key in this command's config (did you mean estimates=?)"),
    ("train", ["progress=false"], "progress: no such key in this command's config (did you mean trainer.progress=?)"),
    ("train", ["optim.lr=3"], "optim.lr: no such key in this command's config (did you mean trainer.optimizer.lr=?)"),
    ("enhance", ["sampler=euler", "sampler.num_steps.x=1"], "sampler.num_steps.x: `sampler.num_steps` is a value, not "
                                                              "a section with keys"),
    # a group is suggested where the command can choose it, and not elsewhere (evaluate has no sampler)
    ("enhance", ["sampeler=euler"], "sampeler: no such key in this command's config (did you mean sample_rate= or "
                                    "seed= or sampler=?)"),
    ("evaluate", ["sample_rate=8000"], "sample_rate: no such key in this command's config (its keys: estimates, "
                                       "references, noisy, output, metrics, transcripts, num_workers, progress, "
                                       "partial, max_length_mismatch, ckpt, heldout_check)"),
])
def test_an_unknown_key_is_named_with_the_nearest_existing_ones(command, args, expected):
    """A misspelt key ends in one line naming it and the nearest keys at the level where its path stops, with the
    fields of a group chosen on the same command line; that line is all of stderr (Hydra's message is held back)."""
    res = run_cli(command, *args)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [f"edm-se {command}: error: {expected}"]


def test_an_unknown_group_option_is_one_line_naming_the_options():
    """An option a config group does not have ends in one line with the nearest options and all of them (Hydra's
    multi-line "Could not find" message is held back), also inside a sweep and for a `+group=` addition; a command
    line that fails for a reason no hint knows (bad override syntax) keeps Hydra's message above the summary line."""
    study, sde, sweep, plus, syntax = run_cli_many(
        ["study", "study=nope"], ["train", "sde=ouvee"], ["train", "-m", "sde=ouve,sbvee", "trainer.max_steps=1"],
        ["train", "+experiment=nope"], ["train", "sde=ouve", "sde.theta=[1"])
    assert study.returncode == 2 and study.stderr.strip().splitlines() == [
        "edm-se study: error: study=nope: study has no option 'nope' (options: churn, design, few_step, oa, "
        "paradigms, recipes, steps, t_start)"]
    assert sde.returncode == 2 and sde.stderr.strip().splitlines() == [
        "edm-se train: error: sde=ouvee: sde has no option 'ouvee' (did you mean sde=ouve or sde=ouvp? options: "
        "bbed, edm, flow, oucosine, ouve, ouve_decoupled, ouvp, sbve, sbvp, ve, vp)"]
    assert sweep.returncode == 2 and sweep.stderr.strip().splitlines()[0].startswith(
        "edm-se train: error: sde=sbvee: sde has no option 'sbvee' (did you mean sde=sbve or sde=sbvp?")
    assert len(sweep.stderr.strip().splitlines()) == 1
    assert plus.returncode == 2 and plus.stderr.strip().splitlines() == [
        "edm-se train: error: +experiment=nope: experiment has no option 'nope' (options: cpu_demo, seed_paper, "
        "sgmse_plus)"]
    assert syntax.returncode == 2 and "Traceback" not in syntax.stderr and len(syntax.stderr.splitlines()) > 1
    # a section given a list does not compose ("Cannot merge DictConfig with ListConfig"): one line, the same message
    # as a section given a value that does compose (validate.section_given_value)
    (tasks,) = run_cli_many(["paradigms", "tasks=[nope]"])
    assert tasks.returncode == 2 and tasks.stderr.strip().splitlines() == [
        "edm-se paradigms: error: tasks=[nope]: `tasks` is a section with keys (keywords, sentences), not a value; "
        "set one of them (tasks.keywords=...)"]
    assert "does not compose into a valid config" in syntax.stderr.strip().splitlines()[-1]


def test_train_prints_composed_config_without_running():
    res = run_cli("train", "sde=ouve", "precond=sgmse", "loss=sgmse", "--cfg", "job")
    assert res.returncode == 0, res.stderr
    assert "edm_se.sde.OUVE" in res.stdout
    assert "SGMSE" in res.stdout


def test_study_paradigms_is_the_paradigms_app_under_edm_se_study(tmp_path):
    """`edm-se study study=paradigms` runs the paradigms study (conf/paradigms.yaml), not a multirun of
    conf/study.yaml: its config prints, its help is its own, its user errors are one line naming `edm-se study`."""
    cfg, help_, study_help, res, multi, snrs, nfe, peers, paired = run_cli_many(
        ["study", "study=paradigms", "--cfg", "job"], ["study", "study=paradigms", "--help"], ["study", "--help"],
        ["study", "study=paradigms", f"task_root={tmp_path / 'none'}", f"out_dir={tmp_path / 'out'}"],
        ["study", "study=paradigms", "-m"],
        ["paradigms", "snrs_db=[0,abc]", f"out_dir={tmp_path / 'out'}"],  # was a ValueError traceback
        # nfe_steps=4 was a TypeError after every cell had trained; peers=dfn3 ran no peer
        ["paradigms", "nfe_steps=4", f"out_dir={tmp_path / 'out'}"],
        ["paradigms", "peers=dfn3", f"out_dir={tmp_path / 'out'}"],
        ["paradigms", "paired_against=[baseline,nope]", f"out_dir={tmp_path / 'out'}"])
    assert cfg.returncode == 0, cfg.stderr
    assert "tasks:" in cfg.stdout and "keywords:" in cfg.stdout and "hydra" not in cfg.stdout
    assert "edm-se study study=paradigms" in help_.stdout and "paradigms" in study_help.stdout
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert res.stderr.startswith("edm-se study: error:") and "manifest.csv: task manifest not found" in res.stderr
    assert multi.returncode == 2 and "multirun is not supported" in multi.stderr
    res = snrs
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == ("edm-se paradigms: error: snrs_db=[0, 'abc']: must be a non-empty list of SNRs in "
                                  "dB (numbers)")
    assert nfe.returncode == 2 and nfe.stderr.strip() == (
        "edm-se paradigms: error: nfe_steps=4: must be a list of step counts (integers >= 1), e.g. [1,2,4,8]")
    assert peers.returncode == 2 and peers.stderr.strip() == (
        "edm-se paradigms: error: peers=dfn3: must be a list of dfn3, rnnoise, noisereduce (or [])")
    assert paired.returncode == 2 and paired.stderr.strip().startswith(
        "edm-se paradigms: error: paired_against=['baseline', 'nope']: must be a list of rows to compare every row "
        "with (baseline, data_augmentation, cold_cascade,") and "dfn3 + baseline, " in paired.stderr
    assert not (tmp_path / "out").exists()  # the missing task manifest is found before out_dir/<task>/ is made


@pytest.mark.parametrize(("command", "key"), [("train", "run_dir"), ("study", "hydra.sweep.dir")])
def test_a_file_where_a_run_directory_goes_is_one_line(tmp_path, command, key):
    """Hydra creates the run directory before the command starts: a file there (or above it) ended in Hydra's
    traceback; now one line naming the file, exit status 2, the file untouched."""
    blocker = tmp_path / "a.wav"
    blocker.write_bytes(b"RIFF")
    for value in (blocker, blocker / "sub"):
        res = run_cli(command, f"{key}={value}")
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert res.stderr.strip() == f"edm-se {command}: error: {key}={value}: {blocker} is a file; name a directory"
    assert blocker.read_bytes() == b"RIFF"


class _WorkerFails(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        raise AudioError("noise/rain.wav", "silent noise segment")


def test_a_user_error_raised_in_a_dataloader_worker_keeps_its_own_message(capsys):
    """PyTorch re-raises a worker's error in the main process as "Caught AudioError in DataLoader worker process 0.
    Original Traceback ...", which came out as one line holding the whole traceback; the line is now the error's
    own message."""
    loader = torch.utils.data.DataLoader(_WorkerFails(), batch_size=2, num_workers=1)

    @report_user_errors("train")
    def first_batch():
        return next(iter(loader))

    with pytest.raises(SystemExit) as info:
        first_batch()
    assert info.value.code == 2
    assert capsys.readouterr().err == "edm-se train: error: noise/rain.wav: silent noise segment\n"
    assert _worker_message("Caught ValueError in DataLoader worker process 3.\nOriginal Traceback (most recent "
                           "call last):\n  File x\nValueError: bad\n  value") == "bad value"
    assert _worker_message("noise/rain.wav: silent noise segment") is None  # not a worker's error: left alone
