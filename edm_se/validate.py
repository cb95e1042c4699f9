"""Checking user-facing config values before any work starts.

Every command validates its composed config first (:func:`train_config`, :func:`enhance_config`, ...); a bad value
raises :class:`ConfigError`, which the command line prints as one line naming the key, the value and what is
allowed (``edm-se train: error: trainer.max_steps=-5: must be an integer >= 1``) and exits with status 2, before
any file or directory is created. The study's own checks are in :mod:`edm_se.validate_study`, those of the command
line's overrides against the config files in :mod:`edm_se.validate_overrides`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value the user must fix; the message names the key, the value and what is allowed."""


_MISSING = object()


def config_value(cfg: Any, key: str, missing: Any = _MISSING) -> Any:
    """The value at dotted ``key`` of a config (``DictConfig`` or plain dict, nested in either), or ``missing`` when
    some part of the key is absent."""
    node = cfg
    for part in key.split("."):
        if isinstance(node, DictConfig):
            if part not in node:
                return missing
            node = OmegaConf.select(node, part)
        elif isinstance(node, dict):
            if part not in node:
                return missing
            node = node[part]
        else:
            return missing
    return node


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool, not a string)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def check(cfg: Any, key: str, ok: Callable[[Any], bool], allowed: str, optional: bool = False) -> None:
    """Raise :class:`ConfigError` ``"<key>=<value>: must be <allowed>"`` unless ``ok(value)``.

    A missing key is skipped; a null value is accepted when ``optional``.
    """
    value = config_value(cfg, key)
    if value is _MISSING or (optional and value is None):
        return
    try:
        good = ok(value)
    except (TypeError, ValueError):
        good = False
    if not good:
        raise ConfigError(f"{key}={value}: must be {allowed}")


def int_at_least(cfg: Any, keys: Iterable[str], low: int, optional: bool = False) -> None:
    for key in keys:
        check(cfg, key, lambda v: _is_int(v) and v >= low, f"an integer >= {low}", optional)


def number_in(cfg: Any, key: str, low: float, high: float, low_open: bool = False, high_open: bool = False,
              optional: bool = False) -> None:
    def ok(v: Any) -> bool:
        if not is_number(v):
            return False
        v = float(v)
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    text = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    check(cfg, key, ok, text, optional)


def list_of(cfg: Any, key: str, item_ok: Callable[[Any], bool], allowed: str, optional: bool = False,
            empty_ok: bool = False) -> None:
    """:func:`check` that ``key`` is a list (non-empty unless ``empty_ok``) whose items pass ``item_ok``. A string
    is not a list here: a check over its items read it letter by letter (``metrics=pesq``: the metrics p, e, s, q).
    """
    check(cfg, key, lambda v: not isinstance(v, str) and (empty_ok or len(v) > 0) and all(item_ok(x) for x in v),
          allowed, optional)


def peers(cfg: Any) -> None:
    """``peers`` (``edm-se study``, ``edm-se paradigms``): a list of :data:`edm_se.enhancers.PEERS`, or []."""
    from edm_se.enhancers import PEERS

    list_of(cfg, "peers", lambda p: p in PEERS, "a list of " + ", ".join(PEERS) + " (or [])", optional=True,
            empty_ok=True)


def one_of(cfg: Any, key: str, choices: Iterable[Any]) -> None:
    choices = list(choices)
    check(cfg, key, lambda v: v in choices, "one of " + ", ".join(str(c) for c in choices))


def sampler(node: Any, prefix: str = "sampler") -> None:
    """Check a sampler config node: ``num_steps`` >= 1, churn parameters, schedule, and that it builds.

    Raises:
        ConfigError: naming ``<prefix>.<key>``.
    """
    if node is None:
        return
    _sampler_values(node)
    from edm_se.config import build_sampler

    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    try:
        build_sampler(plain)  # its constructor's refusal comes back as a ConfigError "sampler: ..."
    except ConfigError as err:
        raise ConfigError(f"{prefix}: {str(err).partition(': ')[2]}") from None


def _sampler_values(node: Any) -> None:
    """The value checks of :func:`sampler` (no build): each key that ``node`` has must hold a value its sampler
    accepts (also for a node of swept values alone, e.g. ``{"num_steps": 0}``)."""
    int_at_least(node, ["num_steps"], 1, optional=True)
    for key in ("s_churn", "s_min"):
        check(node, key, lambda v: is_number(v) and v >= 0, "a number >= 0", optional=True)
    check(node, "s_noise", lambda v: is_number(v) and v > 0, "a number > 0", optional=True)
    check(node, "s_max", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
          "a number >= 0 (inf allowed) or null", optional=True)
    s_min, s_max = config_value(node, "s_min"), config_value(node, "s_max")
    if is_number(s_min) and isinstance(s_max, (int, float)) and s_min > s_max:
        raise ConfigError(f"s_min={s_min} is above s_max={s_max}: churn applies to sigma in [s_min, s_max], "
                          "which would be empty")
    check(node, "schedule.sigma_min", lambda v: is_number(v) and v > 0, "a number > 0", optional=True)
    check(node, "schedule.sigma_max", lambda v: is_number(v) and v > 0, "a number > 0 or null", optional=True)
    check(node, "schedule.rho", lambda v: is_number(v) and v > 0, "a number > 0", optional=True)
    check(node, "snr", lambda v: is_number(v) and v > 0, "a number > 0", optional=True)
    int_at_least(node, ["corrector_steps"], 0, optional=True)
    for key in ("float64", "steps_in_sigma", "final_denoise", "predictor_in_sigma", "heun"):  # `float64=2` ran as true
        check(node, key, lambda v: isinstance(v, bool), "true or false")


def _prefixed(fn: Callable[[], None], prefix: str) -> None:
    try:
        fn()
    except ConfigError as err:
        msg = str(err)
        raise ConfigError(msg if msg.startswith(prefix) else f"{prefix}.{msg}") from None


def train_config(cfg: DictConfig) -> None:
    """Check every user-facing value of ``edm-se train`` (``conf/train.yaml``).

    Raises:
        ConfigError: the first bad value.
    """
    int_at_least(cfg, ["trainer.max_steps", "trainer.batch_size", "trainer.log_every", "trainer.ckpt_every",
                       "trainer.val_num_steps"], 1)
    int_at_least(cfg, ["trainer.warmup_steps", "trainer.val_every", "trainer.val_files", "trainer.num_workers",
                       "trainer.threads", "seed"], 0)
    int_at_least(cfg, ["sample_rate"], 1)
    _device(cfg)
    one_of(cfg, "trainer.lr_schedule", ("cosine", "constant"))
    check(cfg, "trainer.grad_clip", lambda v: is_number(v) and v > 0, "a number > 0 (the max gradient norm)")
    number_in(cfg, "trainer.ema_decay", 0.0, 1.0, high_open=True)
    check(cfg, "trainer.optimizer.lr", lambda v: is_number(v) and v > 0, "a number > 0")
    check(cfg, "resume", lambda v: v in (True, False, "force"), "true, false or force")
    for key in ("trainer.amp", "trainer.tensorboard", "trainer.progress", "net.skip_rescale", "net.zero_init",
                "net.output_bias_times_t"):  # `trainer.progress=no` ran as true
        check(cfg, key, lambda v: isinstance(v, bool), "true or false")
    check(cfg, "loss.prior_fraction", lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]", optional=True)

    # one speaker where a list goes was read letter by letter (`valid_speakers=p226`: speakers p, 2, 2, 6)
    def speaker(x: Any) -> bool:
        return isinstance(x, (str, int))

    list_of(cfg, "data.valid_speakers", speaker, "a list of speakers (data.valid_speakers=[p226,p287])",
            optional=True, empty_ok=True)
    for split in ("train", "valid"):
        node = f"data.{split}"
        for key in ("speakers", "exclude_speakers"):
            list_of(cfg, f"{node}.{key}", speaker, f"a list of speakers ({node}.{key}=[p226]) or null", optional=True,
                    empty_ok=True)
        check(cfg, f"{node}.segment_seconds", lambda v: is_number(v) and v > 0, "a number > 0 or null",
              optional=True)
        n_fft, rate = config_value(cfg, "stft.n_fft"), config_value(cfg, "sample_rate")
        seconds = config_value(cfg, f"{node}.segment_seconds")
        if _is_int(n_fft) and _is_int(rate) and rate > 0 and is_number(seconds) and seconds * rate < n_fft:
            # a crop shorter than one STFT window: torch.stft's reflection padding fails inside the first step
            raise ConfigError(f"{node}.segment_seconds={seconds}: must be at least one STFT window long (stft.n_fft="
                              f"{n_fft} samples = {n_fft / rate:.4g} s at sample_rate={rate})")
        number_in(cfg, f"{node}.rir_prob", 0.0, 1.0)
        number_in(cfg, f"{node}.high_snr_fraction", 0.0, 1.0)
        int_at_least(cfg, [f"{node}.length"], 1, optional=True)
        for key in ("snr_db", "gain_db", "high_snr_db"):
            check(cfg, f"{node}.{key}", lambda v: len(v) == 2 and all(is_number(x) for x in v) and v[0] <= v[1],
                  "[low, high] in dB with low <= high", optional=True)
    if cfg.get("sampler") is not None:
        _prefixed(lambda: sampler(cfg.sampler), "sampler")
    paradigm(cfg)


def paradigm(cfg: DictConfig) -> None:
    """Check ``paradigm.*`` (:mod:`edm_se.tasks.paradigms`) and that a task paradigm has task data.

    Raises:
        ConfigError: the first bad value.
    """
    node = cfg.get("paradigm")
    if node is None:
        return
    from edm_se.tasks.models import TASK_KINDS
    from edm_se.tasks.paradigms import D4AM, PARADIGMS, EnhancerOutput

    from edm_se.crp import CRP_LOSSES

    known = {f"edm_se.tasks.paradigms.{c.__name__}": n for n, c in PARADIGMS.items()}
    known["edm_se.crp.CRP"] = "crp"
    target = node.get("_target_")
    check(cfg, "paradigm._target_", lambda v: v in known, "a paradigm of edm_se.tasks.paradigms or edm_se.crp "
          "(paradigm=" + "|".join(known.values()) + ")")
    if known[target] == "denoising":
        return
    if known[target] == "crp":
        from edm_se.model import sampler_from_name

        def steps_ok(v: Any) -> bool:
            values = list(v) if OmegaConf.is_list(v) or isinstance(v, (list, tuple)) else [v]
            return bool(values) and all(_is_int(n) and n >= 1 for n in values)

        check(cfg, "paradigm.num_steps", steps_ok, "an integer >= 1 or a non-empty list of them")
        number_in(cfg, "paradigm.t_start", 0.0, 1.0, low_open=True)
        one_of(cfg, "paradigm.loss", CRP_LOSSES)
        check(cfg, "paradigm.sampler", lambda v: isinstance(v, str) and sampler_from_name(v) is not None,
              "a conf/sampler name (euler, edm_heun, pc, ...)")
        return
    one_of(cfg, "paradigm.task.name", sorted(TASK_KINDS))
    _task_keys(cfg)
    if cfg.paradigm.task.name == "m5":
        from edm_se.tasks.models import M5

        int_at_least(cfg, ["paradigm.task.num_classes"], 2)
        one_of(cfg, "paradigm.task.norm", M5.NORMS)
    else:  # ctc: its SpecAugment settings, when given
        int_at_least(cfg, ["paradigm.task.freq_masks", "paradigm.task.time_masks", "paradigm.task.freq_mask_width",
                           "paradigm.task.time_mask_width"], 0, optional=True)
    one_of(cfg, "paradigm.enhancer_output.mode", EnhancerOutput.MODES)
    int_at_least(cfg, ["paradigm.enhancer_output.num_steps"], 1)
    check(cfg, "paradigm.task_grad_clip", lambda v: is_number(v) and v > 0, "a number > 0")
    check(cfg, "paradigm.loss_weight", lambda v: is_number(v) and v >= 0, "a number >= 0")
    check(cfg, "paradigm.optimizer.lr", lambda v: is_number(v) and v > 0, "a number > 0", optional=True)
    check(cfg, "paradigm.train_task", lambda v: isinstance(v, bool), "true or false")
    one_of(cfg, "paradigm.method", D4AM.METHODS)
    check(cfg, "paradigm.alpha", lambda v: is_number(v) and v >= 0, "a number >= 0")
    check(cfg, "paradigm.alpha_lr", lambda v: is_number(v) and v >= 0, "a number >= 0")
    int_at_least(cfg, ["paradigm.alpha_every"], 1)
    from edm_se.enhancers import PEERS

    check(cfg, "paradigm.front_end", lambda v: v in ("diffusion", *PEERS), "one of diffusion, " + ", ".join(PEERS))
    check(cfg, "paradigm.recogniser", lambda v: v in ("whisper", "sphinx"), "whisper or sphinx")
    train = cfg.data.get("train") if cfg.get("data") is not None else None
    if train is None or "TaskMixingDataset" not in str(train.get("_target_", "")):
        raise ConfigError(f"paradigm={known[target]}: needs task data (data=keywords or data=sentences), got "
                          f"data.train._target_={train.get('_target_') if train is not None else None}")
    want = "text" if cfg.paradigm.task.name == "ctc" or known[target] == "blackbox_iterative" else "label"
    check(cfg, "data.train.target", lambda v: v == want, f"{want} for paradigm={known[target]} with "
          f"task {cfg.paradigm.task.name} (data={'sentences' if want == 'text' else 'keywords'})")


def _task_keys(cfg: Any) -> None:
    """Every key of ``paradigm.task`` is an argument of the named task model's constructor: ``paradigm.task.name=ctc``
    keeps the M5 default's ``num_classes``, which the CTC recogniser does not take (it was a TypeError traceback)."""
    import inspect

    from edm_se.tasks.models import TASK_KINDS

    name = str(cfg.paradigm.task.name)
    accepted = [p for p in inspect.signature(TASK_KINDS[name].__init__).parameters if p != "self"]
    extra = [str(k) for k in cfg.paradigm.task if k != "name" and k not in accepted]
    if extra:
        raise ConfigError(f"paradigm.task.{extra[0]}: the {name} task model takes no {extra[0]} (it takes "
                          f"{', '.join(accepted)}); drop the other model's keys: "
                          + " ".join(f"'~paradigm.task.{k}'" for k in extra))
    # sizes: paradigm.task.channels=0 was a convolution's RuntimeError traceback in the first training step
    params = inspect.signature(TASK_KINDS[name].__init__).parameters
    for key in cfg.paradigm.task:
        if key in params and params[key].annotation in (int, "int"):
            int_at_least(cfg, [f"paradigm.task.{key}"], 0 if str(key).endswith("_masks") else 1)


def _device(cfg: Any) -> None:
    """Check ``device`` (``auto``, ``cpu``, ``cuda[:N]`` this machine has; :func:`edm_se.config.select_device`)."""
    if cfg.get("device") is not None:
        from edm_se.config import select_device

        select_device(str(cfg.device))


def enhance_config(cfg: DictConfig) -> None:
    """Check every user-facing value of ``edm-se enhance`` (``conf/enhance.yaml``)."""
    if cfg.get("input") is None or cfg.get("output") is None:
        raise ConfigError("input=FILE_OR_DIR and output=DIR are both required")
    _device(cfg)
    number_in(cfg, "t_start", 0.0, 1.0, low_open=True)
    number_in(cfg, "oa_weight", 0.0, 1.0)
    int_at_least(cfg, ["num_steps"], 1, optional=True)
    int_at_least(cfg, ["threads", "seed"], 0)
    one_of(cfg, "on_rate_mismatch", ("resample", "error"))
    from edm_se.enhancers import PEERS

    one_of(cfg, "enhancer", ("diffusion", *PEERS))
    int_at_least(cfg, ["sample_rate"], 8000)
    for key in ("resume", "progress", "estimates"):
        check(cfg, key, lambda v: isinstance(v, bool), "true or false")
    if cfg.get("estimates") and str(cfg.get("enhancer")) != "diffusion":
        raise ConfigError(f"estimates=true: enhancer={cfg.enhancer} makes no network calls to show "
                          "(estimates are the diffusion model's clean estimate after each call)")
    if str(cfg.get("enhancer")) != "diffusion":  # a peer would ignore them: the output would not be what was asked
        given = [key if key == "sampler" else f"{key}={cfg.get(key)}" for key, unset in
                 (("ckpt", None), ("sampler", None), ("num_steps", None), ("t_start", 1.0)) if cfg.get(key) != unset]
        if given:
            raise ConfigError(f"{given[0]}: enhancer={cfg.enhancer} is a pretrained peer with no checkpoint, sampler, "
                              "steps or start time (those are the diffusion model's; drop them or use "
                              "enhancer=diffusion)")
    if cfg.get("sampler") is not None:
        _prefixed(lambda: sampler(cfg.sampler), "sampler")
    given = command_line()
    if "num_steps" in given and "sampler.num_steps" in given and cfg.get("sampler") is not None \
            and cfg.num_steps != cfg.sampler.get("num_steps"):  # num_steps won without a word
        raise ConfigError(f"num_steps={cfg.num_steps} and sampler.num_steps={cfg.sampler.num_steps}: two step counts; "
                          "give one (num_steps= is the shortcut for sampler.num_steps=)")


def command_line() -> dict[str, str]:
    """The running Hydra app's command-line overrides (:func:`override_pairs`); {} outside one."""
    from hydra.core.hydra_config import HydraConfig

    return dict(override_pairs(HydraConfig.get().overrides.task)) if HydraConfig.initialized() else {}


def override_pairs(items: Iterable[Any]) -> list[tuple[str, str]]:
    """``hydra.overrides.task`` as ``(key, value)`` pairs, ``+``/``~`` stripped from the key."""
    pairs = []
    for item in items or []:
        key, _, value = str(item).partition("=")
        pairs.append((key.lstrip("+~"), value))
    return pairs


def evaluate_config(cfg: DictConfig) -> None:
    """Check ``edm-se evaluate`` (``conf/evaluate.yaml``)."""
    if cfg.get("estimates") is None or cfg.get("references") is None:
        raise ConfigError("estimates=DIR and references=DIR are required (noisy=DIR adds the improvement columns)")
    int_at_least(cfg, ["num_workers"], 1)
    _metrics(cfg, optional=True)
    one_of(cfg, "heldout_check", ("refuse", "warn", "off"))
    for key in ("partial", "progress"):
        check(cfg, key, lambda v: isinstance(v, bool), "true or false")
    check(cfg, "max_length_mismatch", lambda v: is_number(v) and 0 <= v < 1, "a fraction in [0, 1) or null",
          optional=True)
    dirs = {key: cfg.get(key) for key in ("estimates", "references", "noisy") if cfg.get(key) is not None}
    for i, (key, value) in enumerate(dirs.items()):
        for other, value2 in list(dirs.items())[i + 1:]:
            if Path(str(value)).resolve() == Path(str(value2)).resolve():
                raise ConfigError(f"{key}={value} and {other}={value2} are one directory: every file would be scored "
                                  "against itself")
    transcripts = cfg.get("transcripts")
    if transcripts is not None and not Path(str(transcripts)).expanduser().exists():  # it was never read without WER
        raise ConfigError(f"transcripts={transcripts}: no such file or directory")
    output = cfg.get("output")
    if output is not None and Path(str(output)).exists() and not Path(str(output)).is_dir():
        raise ConfigError(f"output={output}: is a file; the results (metrics.csv, summary.json) go into a directory")


def heldout_config(cfg: DictConfig) -> None:
    """Check ``edm-se heldout`` (``conf/heldout.yaml``)."""
    int_at_least(cfg, ["max_files"], 1, optional=True)
    one_of(cfg, "heldout_check", ("refuse", "warn"))
    check(cfg, "progress", lambda v: isinstance(v, bool), "true or false")
    if cfg.get("ckpt") is not None and cfg.get("train") is not None:
        raise ConfigError(f"ckpt={cfg.ckpt} and train={cfg.train}: give one, a model's training data or the data "
                          "itself")
    if cfg.get("train") is not None:  # data named on the command line must be there (else it is "not checked")
        from edm_se.audio import AudioError
        from edm_se.trained_on import resolve_source

        errors = []
        for kind in ("speech", "noise"):
            try:
                resolve_source(OmegaConf.to_container(cfg.train) if OmegaConf.is_config(cfg.train) else cfg.train,
                               kind, [])
            except AudioError as err:
                errors.append(str(err))
        if len(errors) == 2:
            raise ConfigError(f"train={cfg.train}: {errors[0]}")
    if cfg.get("ckpt") is not None:
        from edm_se.checkpoint import load_checkpoint

        load_checkpoint(Path(str(cfg.ckpt)).expanduser())  # a missing or corrupt file, named
    subset = cfg.get("held_out_subset")
    if subset is not None and Path(str(subset)).expanduser().exists():
        raise ConfigError(f"held_out_subset={subset}: exists; a test set is never written over (name a new directory)")
    output = cfg.get("output")
    if output is not None and Path(str(output)).is_dir():
        raise ConfigError(f"output={output}: is a directory; the report is one JSON file (e.g. output=heldout.json)")
    if output is not None and Path(str(output)).suffix.lower() != ".json":  # output=<a test file> overwrote it
        raise ConfigError(f"output={output}: the report is a JSON file; give a path ending in .json")


def _metrics(cfg: DictConfig, optional: bool = False) -> None:
    from edm_se.metrics import KNOWN_METRICS

    known = list(KNOWN_METRICS)
    value = config_value(cfg, "metrics")
    if value is not _MISSING and value is not None and not isinstance(value, str) and len(value) > 0:
        unknown = [m for m in value if m not in known]
        if unknown:  # name the one to fix, and what it may have meant (dnsmos -> dnsmos_ovrl, ...)
            near = [k for k in known if str(unknown[0]) and k.startswith(str(unknown[0]))] or \
                difflib.get_close_matches(str(unknown[0]), known, n=2, cutoff=0.6)
            raise ConfigError(f"metrics={value}: unknown metric {unknown[0]!r} ("
                              + (f"did you mean {' or '.join(near)}? " if near else "")
                              + "known: " + ", ".join(known) + ")")
    check(cfg, "metrics", lambda v: len(v) > 0 and all(m in known for m in v),
          "a non-empty list of " + ", ".join(known), optional)
    if value is not _MISSING and value is not None:
        twice = sorted({m for m in value if list(value).count(m) > 1})
        if twice:  # a metric named twice made a table with two columns of one name: a failed cell, a doubled row
            raise ConfigError(f"metrics={value}: {', '.join(twice)} named twice; name each metric once")


def plot_config(cfg: DictConfig, formats: Iterable[str]) -> None:
    """Check ``edm-se plot`` (``conf/plot.yaml``); ``formats`` are the file types matplotlib writes.

    Raises:
        ConfigError: ``results`` missing; ``formats`` / ``metrics`` not a list (``metrics=pesq``, read letter by
            letter, asked for the metrics p, e, s, q); ``spectrogram.enabled`` not a bool; ``spectrogram.nfe`` not
            an NFE or a list of NFEs (a number crashed the spectrogram figure); ``spectrogram.file`` / ``line`` not
            text.
    """
    if cfg.get("results") is None:
        raise ConfigError("results=PATH/results.csv (or the study's directory) is required")
    known = sorted(formats)
    list_of(cfg, "formats", lambda f: f in known, "a non-empty list of " + ", ".join(known))
    list_of(cfg, "metrics", lambda m: isinstance(m, str), "a non-empty list of metric names (metrics=[pesq,estoi]) "
            "or null", optional=True)
    check(cfg, "spectrogram.enabled", lambda v: isinstance(v, bool), "true or false")
    nfe = config_value(cfg, "spectrogram.nfe")
    if not (is_number(nfe) and nfe >= 1):  # one NFE, else a list of them
        list_of(cfg, "spectrogram.nfe", lambda n: is_number(n) and n >= 1,
                "an NFE >= 1, a non-empty list of them, or null", optional=True)
    for key in ("spectrogram.file", "spectrogram.line"):
        check(cfg, key, lambda v: isinstance(v, str), "a name or null", optional=True)


def data_tasks_config(cfg: DictConfig) -> None:
    """Check ``edm-se data tasks`` (``conf/data_tasks.yaml``): ``tasks=keywords`` (not a list) was a traceback."""
    from edm_se.tasks.data import VOICES

    list_of(cfg, "tasks", lambda t: t in ("keywords", "sentences"),
            "a non-empty list of keywords, sentences (tasks=[keywords])")
    list_of(cfg, "voices", lambda x: x in VOICES, f"a non-empty list of voices ({', '.join(VOICES)}) or null",
            optional=True)
    int_at_least(cfg, ["max_sentences"], 1, optional=True)
    int_at_least(cfg, ["sentence_takes"], 1)


def data_build_config(cfg: DictConfig) -> None:
    """Check ``edm-se data build`` (``conf/data_build.yaml``)."""
    from edm_se.data.sources import SOURCES

    int_at_least(cfg, ["seed"], 0)
    # sources=flite was a traceback (OmegaConf.to_container of a string); sources=[] built every source
    list_of(cfg, "sources", lambda x: x in SOURCES,
            f"a non-empty list of corpus sources ({', '.join(SOURCES)}) or null (all)", optional=True)
    check(cfg, "max_minutes", lambda v: is_number(v) and v > 0, "a number of minutes > 0 or null", optional=True)
    check(cfg, "out_dir", lambda v: isinstance(v, str) and v.strip() != "", "a directory path")
