"""A training run's logs: ``log.csv`` (one row per logged step and per validation) and, with the ``logging`` extra,
TensorBoard events in ``tb/``. Used by :class:`edm_se.train.Trainer` on the main process."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

from edm_se.atomic import atomic_path

__all__ = ["CSVLog", "RunLog"]

log = logging.getLogger("edm_se.train")


class CSVLog:
    """Append-only CSV log whose columns grow as new keys appear; rewritten atomically (a temporary file replaced)
    on every append, so an interrupted run never leaves a torn file.

    Args:
        path: the CSV file; an existing one is read and continued.
        truncate_after_step: drop the rows of an existing file whose ``step`` is above it (a run resumed from an
            earlier checkpoint logs those steps again).
    """

    def __init__(self, path: Path, truncate_after_step: int | None = None):
        self.path = Path(path)
        self.rows: list[dict] = []
        if self.path.exists():
            with open(self.path, newline="") as fh:
                self.rows = list(csv.DictReader(fh))
            if truncate_after_step is not None:
                self.rows = [r for r in self.rows if int(float(r.get("step", 0))) <= truncate_after_step]
            self._rewrite()

    def _fields(self) -> list[str]:
        fields: list[str] = []
        for row in self.rows:
            fields += [k for k in row if k not in fields]
        return fields

    def _rewrite(self) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._fields())
            writer.writeheader()
            writer.writerows(self.rows)

    def append(self, row: dict) -> None:
        self.rows.append(row)
        self._rewrite()


class RunLog:
    """``log.csv`` of a run directory and, when ``tensorboard`` is True and the package is installed, TensorBoard
    scalars under ``tb/`` (``train/<key>`` for training rows, ``valid/<key>`` for validations).

    Training values are gathered step by step with :meth:`record` and written as one row per :meth:`flush`: the
    mean of each value over the steps since the last row (the last ``grad_norm``), the learning rate and the
    steps per second.

    Args:
        run_dir: the run directory (it must exist).
        resumed_step: the step the run starts from; rows logged after it by an interrupted run are dropped.
        tensorboard: write TensorBoard events too.
    """

    def __init__(self, run_dir: Path, resumed_step: int, tensorboard: bool) -> None:
        self.csv = CSVLog(Path(run_dir) / "log.csv", truncate_after_step=resumed_step)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(run_dir) / "tb"))
            except ImportError:
                log.info("tensorboard not installed (pip install 'edm_se[logging]'): CSV log only")
        self._values: dict[str, list[float]] = {}
        self._steps, self._since = 0, time.perf_counter()

    def _scalars(self, prefix: str, step: int, values: dict) -> None:
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def record(self, values: dict[str, float]) -> None:
        """Gather one training step's values (``loss``, ``grad_norm``, a paradigm's own)."""
        self._steps += 1
        for k, v in values.items():
            self._values.setdefault(k, []).append(float(v))

    def flush(self, step: int, lr: float) -> dict:
        """Write the row of the steps recorded since the last one; returns it (``step``, ``loss``, ``lr``,
        [``grad_norm``], the other values, ``steps_per_s``)."""
        now = time.perf_counter()
        values, self._values = self._values, {}
        row = {"step": step, "loss": _mean(values.pop("loss", [])), "lr": lr}
        if "grad_norm" in values:
            row["grad_norm"] = values.pop("grad_norm")[-1]
        row.update({k: _mean(v) for k, v in values.items()})
        row["steps_per_s"] = self._steps / max(now - self._since, 1e-9)
        self._steps, self._since = 0, now
        self.csv.append(row)
        self._scalars("train", step, {k: v for k, v in row.items() if k != "step"})
        return row

    def validation(self, step: int, metrics: dict[str, float]) -> None:
        """Log the validation ``metrics`` (``val_pesq``, ...) of ``step``."""
        self.csv.append({"step": step, **metrics})
        self._scalars("valid", step, metrics)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
