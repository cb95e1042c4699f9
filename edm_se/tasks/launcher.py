"""Train the paradigms study's cells side by side: ``workers=N`` of ``conf/paradigms.yaml``.

Every cell of every task and training seed is one job; a job whose task model starts from another cell's (a joint
cell after ``task_init``, D4AM after the baseline: :func:`edm_se.tasks.study._task_source`) waits for that cell.
The jobs run in ``workers`` spawned processes, each with its share of the study's ``threads`` (at least one), and
train exactly what the study would train in its own process: the same overrides, run directory, seed and
``resume=true`` (``trainer.threads`` and ``trainer.progress``, which differ, are not part of the training
configuration a resume compares). The study then finds every cell trained and scores them in its own process.

On 2 cores two one-thread cells train faster than one two-thread cell after the other (session 39, 2-core Intel
Xeon VM, the keyword M5 baseline cell: 36.7 steps/s alone on two threads, 26.7 alone on one, about 23 each with two
side by side, so 1.25x the throughput).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

__all__ = ["CellJob", "cell_jobs", "next_job", "train_cells", "worker_threads"]


@dataclass(frozen=True)
class CellJob:
    """One cell of one task and training seed.

    Attributes:
        task: the task (``keywords``, ``sentences``).
        seed: the training seed.
        cell: the cell's name (a key of ``cells``).
        out: the task's directory for this seed (``out_dir/<task>`` for the study's seed, else ``.../seed<k>``).
        after: the cell of the same task and seed whose task model this one starts from; None: none.
    """
    task: str
    seed: int
    cell: str
    out: str
    after: str | None = None

    @property
    def label(self) -> str:
        return f"{self.task}/seed{self.seed}/{self.cell}"


def cell_jobs(cfg: DictConfig, tasks: Mapping[str, DictConfig], seeds: Mapping[str, list[int]]) -> list[CellJob]:
    """Every cell of every task, for the study's seed and each task's extra ``seeds``, in the order the study
    trains them (per task and seed: the cells other cells start from first).

    Args:
        cfg: the study config (``out_dir``, ``seed``, ``cells``).
        tasks: task name -> its config (``cells``, ``task_init``).
        seeds: task name -> its extra training seeds (not the study's own ``seed``).
    """
    from edm_se.tasks.study import _task_source, seed_dir, training_order

    return [CellJob(task, k, str(n), str(seed_dir(cfg, task, k)), _task_source(n, cfg, tcfg))
            for task, tcfg in tasks.items() for k in [int(cfg.seed), *seeds.get(task, [])]
            for n in training_order(cfg, tcfg)]


def worker_threads(threads: int, workers: int) -> int:
    """Torch threads of each of ``workers`` processes sharing the study's ``threads`` (0: every core), at least 1."""
    total = int(threads) if int(threads) > 0 else (os.cpu_count() or 1)
    return max(1, total // max(1, int(workers)))


def _job_args(cfg: Any, job: CellJob) -> tuple:
    """The arguments of :func:`edm_se.tasks.study._train_cell` for ``job``: name, config at the job's seed, task
    config, the seed's directory and the checkpoint the cell starts from."""
    kcfg = OmegaConf.create(cfg)
    kcfg.seed = job.seed
    out = Path(job.out)
    deps = {job.after: out / "cells" / job.after / "checkpoints" / "last.pt"} if job.after else {}
    return job.cell, kcfg, kcfg.tasks[job.task], out, deps


def _trained(cfg: Any, job: CellJob) -> bool:
    """Whether ``job``'s cell is finished (with its training config; :func:`edm_se.tasks.study._finished`), read in
    this process: a study whose cells are all trained starts no worker."""
    from edm_se.tasks.study import _cell_config, _finished

    if not (Path(job.out) / "cells" / job.cell / "checkpoints" / "last.pt").exists():
        return False
    name, kcfg, tcfg, out, deps = _job_args(cfg, job)
    return _finished(name, *_cell_config(name, kcfg, tcfg, out, deps))


def _train_job(cfg: dict, job: CellJob) -> str:
    """Worker: train one cell as the study would (:func:`edm_se.tasks.study._train_cell`); returns its checkpoint."""
    from edm_se.tasks.study import _train_cell

    logging.basicConfig(level=logging.INFO, format=f"[{job.label}] %(message)s", force=True)
    return str(_train_cell(*_job_args(cfg, job)))


def next_job(waiting: list[CellJob], done: set[tuple], keys: set[tuple]) -> CellJob | None:
    """The job of ``waiting`` to start next: one whose ``after`` cell is trained (in ``done``) or not a job of this
    run (``keys``); of those, one that another waiting job starts from first (so the next seed's baseline does not
    wait behind this seed's joint cells), then the earliest. None: no job is ready. Keys are (task, seed, cell)."""
    def ready(j: CellJob) -> bool:
        return j.after is None or (j.task, j.seed, j.after) in done or (j.task, j.seed, j.after) not in keys

    needed = {(j.task, j.seed, j.after) for j in waiting if j.after}
    ready_jobs = [(i, j) for i, j in enumerate(waiting) if ready(j)]
    if not ready_jobs:
        return None
    return min(ready_jobs, key=lambda ij: ((ij[1].task, ij[1].seed, ij[1].cell) not in needed, ij[0]))[1]


def train_cells(cfg: DictConfig, jobs: list[CellJob], workers: int) -> None:
    """Train ``jobs`` in ``workers`` spawned processes, each job once the cell it starts from (``after``) is trained,
    in the order :func:`next_job` gives.

    Cells already trained (:func:`_trained`, read here) are not sent to a worker, and no more workers start than
    there are cells to train (none when all are trained). Each worker trains with ``trainer.threads`` =
    :func:`worker_threads` of the workers started and no progress bar (log lines carry the job's label instead).

    Raises:
        the first failed job's exception (:class:`edm_se.validate.ConfigError`, ...; a log line names its cell);
        no further job starts, those running finish first (every cell resumes where it stopped).
    """
    from edm_se.metrics import spawn_pool

    keys = {(j.task, j.seed, j.cell) for j in jobs}
    plain: Any = OmegaConf.to_container(cfg, resolve=True)
    done = {(j.task, j.seed, j.cell) for j in jobs if _trained(plain, j)}
    waiting = [j for j in jobs if (j.task, j.seed, j.cell) not in done]
    if not waiting:
        log.info("all %d cells trained", len(jobs))
        return
    workers = min(workers, len(waiting))
    per = worker_threads(int(cfg.threads), workers)
    plain["train_overrides"] = [*plain["train_overrides"], f"trainer.threads={per}", "trainer.progress=false"]
    log.info("training %d of %d cells in %d processes (%d thread%s each)", len(waiting), len(jobs), workers, per,
             "" if per == 1 else "s")
    running: dict[Future, CellJob] = {}
    failure: BaseException | None = None
    with spawn_pool(workers, initializer=None) as pool:
        while waiting or running:
            while failure is None and len(running) < workers:
                job = next_job(waiting, done, keys)
                if job is None:
                    break
                waiting.remove(job)
                log.info("cell %s: started", job.label)
                running[pool.submit(_train_job, plain, job)] = job
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                job = running.pop(fut)
                err = fut.exception()
                if err is not None:
                    log.error("cell %s failed: %s", job.label, str(err).splitlines()[0] if str(err) else repr(err))
                    failure = failure or err
                    continue
                done.add((job.task, job.seed, job.cell))
                log.info("cell %s: trained (%d of %d)", job.label, len(done), len(jobs))
    if failure is not None:
        raise failure
