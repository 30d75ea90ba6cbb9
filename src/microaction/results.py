"""From run folders and sweeps to the paper's tables, and the history of one run.

A sweep (``python train.py -m ...``) leaves one folder per job under ``logs/train/multiruns/<time>/``:
Hydra's ``.hydra/{overrides,config,hydra}.yaml``, the run's ``config_resolved.yaml``, its log
(``train.log``) and, once it has finished, ``metrics.json`` (``val`` / ``test``: the benchmark's metrics
as fractions). This module reads those folders (``collect``), or the runs of a W&B project
(``load_wandb_jobs``), into ``Job`` records and makes a ``Table`` of them: the swept keys as rows (the
``seed`` folded into mean ± sample standard deviation, with the count of runs), the benchmark's metrics
in % as columns, written as markdown, CSV and LaTeX, plus a plot of a metric against a numeric swept key
with error bars over seeds (``plot_metric``). ``LAYOUTS`` reproduce the paper's Tables II-V.

A job without metrics is never dropped silently: it is ``failed`` (its log ends with a traceback:
conf/hydra/default.yaml's callback writes it there), ``running`` (files written recently), ``stopped``
(neither: killed, or out of time) or ``missing`` (listed by the sweep's ``multirun.yaml`` but not
started), and the table names it.

For one run: ``load_run_history`` reads its logged values from whichever logger wrote them (CSV,
TensorBoard event files, or the W&B run file of an offline or online run) as one tidy table of
(step, epoch, key, value); ``per_class_f1``, ``head_tail_f1`` and ``confusion_changes`` read its per-clip
predictions.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from .utils.atomic import save_figure, write_text_atomic

# --- jobs ---------------------------------------------------------------------------------------------------

DONE, FAILED, RUNNING, STOPPED, MISSING = "done", "failed", "running", "stopped", "missing"
# a job without metrics.json whose folder saw no write for this long is taken as stopped, not running
STALE_AFTER_S = 3600.0
SPLITS = ("val", "test")
# microaction.metrics.METRIC_KEYS (the order of its table), named here so that reading results needs no torch
METRIC_KEYS = ("F1_mean", "body_top1", "body_F1_micro", "body_F1_macro", "action_top1", "action_top5",
               "action_F1_micro", "action_F1_macro")
# the paper's order of the metrics (Tables II-V), our metric names
PAPER_METRICS = ("F1_mean", "body_F1_macro", "action_F1_macro", "body_F1_micro", "action_F1_micro", "body_top1",
                 "action_top1", "action_top5")


@dataclass
class Job:
    """One run: a job of a sweep, a single run folder, or a W&B run.

    ``overrides``: the command line's ``key=value`` (as typed, key without ``+``/``~``); ``choices``:
    the config groups Hydra chose (``experiment``, ``model``, ...); ``config``: the resolved config when
    readable; ``metrics``: ``metrics.json`` (``{"val": {...}, "test": {...}, ...}``), empty without one;
    ``status``: done, failed, running, stopped or missing, with ``detail`` saying why.
    """

    name: str
    path: Path | None = None
    number: int | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    choices: dict[str, str] = field(default_factory=dict)
    config: dict | None = None
    metrics: dict = field(default_factory=dict)
    status: str = DONE
    detail: str = ""
    sweep: Path | None = None

    def value(self, key: str) -> str | None:
        """What ``key`` was for this job: the override as typed, else the config group chosen, else the
        resolved config's value; None when unknown."""
        if key in self.overrides:
            return self.overrides[key]
        if key in self.choices:
            return self.choices[key]
        found = _dotted(self.config, key)
        return None if found is _ABSENT else _as_text(found)

    def split_metrics(self, split: str) -> dict[str, float] | None:
        """The metrics of ``split`` ({name: fraction}), None when the run has none (not finished, hidden
        test labels, ``test=false``)."""
        values = self.metrics.get(split)
        return values if isinstance(values, dict) and values else None

    @property
    def label(self) -> str:
        """How the job is named in reports: its folder relative to its sweep, or its name."""
        return self.name if self.sweep is None else f"{self.sweep.name}/{self.name}"


_ABSENT = object()


def _dotted(config: Any, key: str) -> Any:
    node = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_as_text(v) for v in value) + "]"
    return "null" if value is None else str(value)


def parse_override(text: str) -> tuple[str, str]:
    """(key, value as typed) of one Hydra override; ``+``/``++``/``~`` prefixes are dropped from the key."""
    key, sep, value = str(text).partition("=")
    return key.lstrip("+~"), value if sep else ""


def _read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: not readable as YAML ({err})") from None


def _job_number(name: str) -> int | None:
    head = name.split("_", 1)[0]
    return int(head) if head.isdigit() else None


def _newest_write(path: Path) -> float:
    newest = path.stat().st_mtime
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
            except OSError:
                pass
    return newest


def job_logs(path: Path) -> list[Path]:
    """A run folder's own log files (Hydra's ``<task>.log``: ``train.log``, ``eval.log``)."""
    return sorted(p for p in path.glob("*.log") if p.is_file())


_TRACEBACK = "Traceback (most recent call last):"
_LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d[ T]")


def failure_in_log(text: str) -> str | None:
    """The error a job log ends with (its traceback's exception line(s), at most 300 characters), or None
    when the log shows no traceback."""
    at = text.rfind(_TRACEBACK)
    if at < 0:
        return None
    lines = text[at:].splitlines()[1:]
    i = 0
    while i < len(lines) and (lines[i].startswith((" ", "\t")) or not lines[i].strip()):
        i += 1  # the frames
    message = []
    for line in lines[i:]:
        if _LOG_LINE.match(line) or line.startswith(_TRACEBACK):
            break
        if line.startswith(("The above exception", "During handling")):
            break
        message.append(line.strip())
    reason = " ".join(m for m in message if m) or "a traceback without a message"
    return reason if len(reason) <= 300 else reason[:297] + "..."


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def load_job(path: str | Path, sweep: Path | None = None, now: float | None = None,
             stale_after: float = STALE_AFTER_S) -> Job:
    """The ``Job`` of a run folder written by train.py (or eval.py), whatever state it is in.

    Status: ``done`` with a readable ``metrics.json``; else ``failed`` when its log shows a traceback
    (``detail``: the error), ``running`` when a file in it changed within ``stale_after`` seconds,
    ``stopped`` otherwise.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run folder")
    job = Job(name=path.name, path=path, sweep=sweep, number=_job_number(path.name) if sweep else None)
    hydra_dir = path / ".hydra"
    if (hydra_dir / "overrides.yaml").is_file():
        listed = _read_yaml(hydra_dir / "overrides.yaml") or []
        if not isinstance(listed, list):
            raise ValueError(f"{hydra_dir / 'overrides.yaml'}: expected a list of overrides, got {type(listed).__name__}")
        job.overrides = dict(parse_override(o) for o in listed)
    if (hydra_dir / "hydra.yaml").is_file():
        hydra_cfg = (_read_yaml(hydra_dir / "hydra.yaml") or {}).get("hydra") or {}
        choices = (hydra_cfg.get("runtime") or {}).get("choices") or {}
        job.choices = {str(k): _as_text(v) for k, v in choices.items() if not str(k).startswith("hydra/")}
        number = (hydra_cfg.get("job") or {}).get("num")
        if isinstance(number, int) and sweep is not None:
            job.number = number
    for name in ("config_resolved.yaml", ".hydra/config.yaml"):
        if (path / name).is_file():
            try:
                job.config = _read_yaml(path / name)
            except ValueError:
                continue
            break

    metrics_file = path / "metrics.json"
    if metrics_file.is_file():
        try:
            job.metrics = json.loads(metrics_file.read_text())
        except (OSError, ValueError) as err:
            job.status, job.detail = FAILED, f"metrics.json is not readable JSON ({err})"
        else:
            job.status = DONE
        return job
    for log in job_logs(path):
        reason = failure_in_log(log.read_text(errors="replace"))
        if reason:
            job.status, job.detail = FAILED, f"{reason} (see {log.name})"
            return job
    now = time.time() if now is None else now
    idle = max(0.0, now - _newest_write(path))
    if idle < stale_after:
        job.status, job.detail = RUNNING, f"no metrics.json yet; last write {_ago(idle)}"
    else:
        job.status, job.detail = STOPPED, (f"no metrics.json and no error in its log; last write {_ago(idle)} "
                                           "(killed, or out of time?)")
    return job


def _is_run_dir(path: Path) -> bool:
    return (path / ".hydra").is_dir() or (path / "metrics.json").is_file() or (path / "config_resolved.yaml").is_file()


def expected_jobs(multirun_yaml: str | Path) -> list[dict[str, str]] | None:
    """The overrides of every job a sweep was to run, in job-number order (Hydra's basic sweeper: the
    product of the swept values, in the order of the command line), or None when that cannot be known
    (another sweeper, a sweep syntax that needs the config to expand)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    data = _read_yaml(Path(multirun_yaml)) or {}
    hydra_cfg = data.get("hydra") or {}
    sweeper = hydra_cfg.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    task = list((hydra_cfg.get("overrides") or {}).get("task") or [])
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        parsed = OverridesParser.create().parse_overrides([*params, *task])
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception:  # a sweep only the config can expand (e.g. glob over a group): count unknown
        return None
    return [dict(parse_override(o) for o in job) for batch in batches for job in batch]


def load_sweep(path: str | Path, now: float | None = None, stale_after: float = STALE_AFTER_S) -> list[Job]:
    """Every job of a sweep folder: its job folders, and the jobs ``multirun.yaml`` lists that have
    none yet (``missing``), in job-number order."""
    path = Path(path)
    folders = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and _is_run_dir(p)]
    jobs = [load_job(p, sweep=path, now=now, stale_after=stale_after) for p in folders]
    expected = expected_jobs(path / "multirun.yaml") if (path / "multirun.yaml").is_file() else None
    if expected is not None:
        present = {j.number for j in jobs}
        for number, overrides in enumerate(expected):
            if number not in present:
                jobs.append(Job(name=f"{number}_(not started)", number=number, overrides=overrides, status=MISSING,
                                detail=f"job {number} of the {len(expected)} in multirun.yaml has no folder yet",
                                sweep=path))
    return sorted(jobs, key=lambda j: (j.number is None, j.number if j.number is not None else 0, j.name))


def collect(paths: Iterable[str | Path], now: float | None = None, stale_after: float = STALE_AFTER_S) -> list[Job]:
    """The jobs of ``paths``: sweep folders (holding ``multirun.yaml`` or job folders) and single run
    folders, in the order given."""
    jobs: list[Job] = []
    for p in paths:
        p = Path(p)
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such folder (expected a sweep folder, e.g. logs/train/multiruns/<time>, "
                                    "or a run folder)")
        if _is_run_dir(p):
            jobs.append(load_job(p, now=now, stale_after=stale_after))
        elif (p / "multirun.yaml").is_file() or any(c.is_dir() and _is_run_dir(c) for c in p.iterdir()):
            jobs.extend(load_sweep(p, now=now, stale_after=stale_after))
        else:
            raise ValueError(f"{p}: neither a sweep folder (multirun.yaml, job folders with .hydra/) nor a run folder "
                             "(metrics.json, .hydra/)")
    return jobs


def swept_keys(jobs: Sequence[Job], exclude: Iterable[str] = ("seed",)) -> list[str]:
    """The override keys whose values differ between ``jobs`` (a key some jobs lack counts as differing),
    in the order they first appear; ``exclude`` (the seed) left out."""
    skip = set(exclude)
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job.overrides if k not in keys and k not in skip]
    return [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]


# --- tables ---------------------------------------------------------------------------------------------------

@dataclass
class Stat:
    """Values of one cell (one per run, in display units), with their mean and sample standard deviation."""

    values: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / self.n if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1); None for fewer than two values."""
        if self.n < 2:
            return None
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    def text(self, digits: int = 2, pm: str = " ± ") -> str:
        if not self.values:
            return "-"
        out = f"{self.mean:.{digits}f}"
        return out if self.std is None else f"{out}{pm}{self.std:.{digits}f}"


@dataclass
class Column:
    """A value column: ``key`` (the metric), ``header`` as printed, ``digits`` after the point."""

    key: str
    header: str | None = None
    digits: int = 2

    @property
    def title(self) -> str:
        return self.header or self.key


@dataclass
class Row:
    """One row: its label cells, its value cells, the jobs behind it (any status) and, for a paper
    layout, the paper's figures (%)."""

    labels: list[str]
    cells: dict[str, Stat] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)
    paper: dict[str, float] | None = None
    count: int | None = None

    @property
    def n(self) -> int:
        """The runs the row's figures come from (``count``, else the fullest cell's)."""
        return self.count if self.count is not None else max((s.n for s in self.cells.values()), default=0)


@dataclass
class Table:
    """A results table: label columns, value columns, rows; ``notes`` (jobs without metrics, say) are
    printed under it. ``show_n``: a column with the number of runs behind each row; ``paper``: a
    column with the paper's figure of ``paper`` (a metric) when rows carry them."""

    title: str
    label_columns: list[str]
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    show_n: bool = True
    paper: str | None = None

    def _n_cell(self, row: Row) -> str:
        """The row's run count; when some of its jobs have no figures, "n of N (1 failed, ...)"."""
        if not row.jobs or row.n >= len(row.jobs):
            return str(row.n)
        others = Counter(j.status for j in row.jobs if j.status != DONE)
        if row.n + sum(others.values()) < len(row.jobs):
            others["without metrics"] += len(row.jobs) - row.n - sum(others.values())
        return f"{row.n} of {len(row.jobs)} ({', '.join(f'{c} {s}' for s, c in sorted(others.items()))})"

    def header(self) -> list[str]:
        return [*self.label_columns, *(c.title for c in self.columns), *(["n"] if self.show_n else []),
                *([f"paper {self.paper}"] if self.paper else [])]

    def text_rows(self, pm: str = " ± ") -> list[list[str]]:
        out = []
        for row in self.rows:
            cells = [*row.labels, *(row.cells.get(c.key, Stat()).text(c.digits, pm) for c in self.columns)]
            if self.show_n:
                cells.append(self._n_cell(row))
            if self.paper:
                value = (row.paper or {}).get(self.paper)
                cells.append("-" if value is None else f"{value:.2f}")
            out.append(cells)
        return out

    def to_markdown(self, title: bool = False, notes: bool = False) -> str:
        """A markdown (GitHub) table; with ``title`` a heading line before it, with ``notes`` the notes after."""
        head = self.header()
        lines = [f"**{self.title}**", ""] if title else []
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cells) + " |" for cells in self.text_rows()]
        if notes and self.notes:
            lines += ["", *(f"- {n}" for n in self.notes)]
        return "\n".join(lines)

    def to_csv(self) -> str:
        """CSV text: label columns, then per value column its mean and ``<key>_std`` (sample; empty for
        one run), ``n``, the jobs behind the row, and the paper's figures as ``paper_<metric>``."""
        paper_keys = list(dict.fromkeys(k for r in self.rows for k in (r.paper or {})))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([*self.label_columns, *(x for c in self.columns for x in (c.key, f"{c.key}_std")), "n", "jobs",
                    *(f"paper_{k}" for k in paper_keys)])
        for row in self.rows:
            values = []
            for c in self.columns:
                s = row.cells.get(c.key, Stat())
                values += ["" if s.mean is None else f"{s.mean:.6g}", "" if s.std is None else f"{s.std:.6g}"]
            jobs = " ".join(f"{j.label}:{j.status}" for j in row.jobs)
            w.writerow([*row.labels, *values, row.n, jobs,
                        *("" if (row.paper or {}).get(k) is None else row.paper[k] for k in paper_keys)])
        return buf.getvalue()

    def to_latex(self) -> str:
        """A booktabs ``table``: the best mean of each value column in bold (when the rows' means differ)."""
        best = {}
        for c in self.columns:
            means = [r.cells[c.key].mean for r in self.rows if c.key in r.cells and r.cells[c.key].mean is not None]
            if len({round(m, c.digits) for m in means}) > 1:  # a best to mark: not all alike
                best[c.key] = round(max(means), c.digits)
        head = [latex_escape(h) for h in self.header()]
        body = []
        for row, cells in zip(self.rows, self.text_rows(pm=" $\\pm$ ")):
            out = [latex_escape(x) for x in cells[: len(self.label_columns)]]
            for c, text in zip(self.columns, cells[len(self.label_columns):]):
                mean = row.cells.get(c.key, Stat()).mean
                bold = c.key in best and mean is not None and round(mean, c.digits) == best[c.key]
                text = text.replace("-", "--") if text == "-" else text
                out.append(f"\\textbf{{{text}}}" if bold else text)
            out += [latex_escape(x) for x in cells[len(self.label_columns) + len(self.columns):]]
            body.append(" & ".join(out) + " \\\\")
        spec = "l" * len(self.label_columns) + "r" * (len(head) - len(self.label_columns))
        return "\n".join([
            "% needs \\usepackage{booktabs}",
            "\\begin{table}[t]", "\\centering", f"\\caption{{{latex_escape(self.title)}}}",
            f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(head) + " \\\\", "\\midrule", *body,
            "\\bottomrule", "\\end{tabular}", "\\end{table}", ""])


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "α": r"$\alpha$", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def number_text(value: Any) -> str:
    """A value as the table shows it: numbers without trailing zeros (``5.0`` -> ``5``), the rest as is."""
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def _sort_key(text: str) -> tuple:
    try:
        return (0, float(text), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(text))


def _job_line(job: Job) -> str:
    where = job.label
    return f"{where}: {job.status}" + (f": {job.detail}" if job.detail else "")


def choose_split(jobs: Sequence[Job], split: str = "auto") -> str:
    """``split`` itself, or for ``auto``: test when every finished job has test metrics, else val."""
    if split in SPLITS:
        return split
    if split != "auto":
        raise ValueError(f"split={split!r}: expected val, test or auto")
    done = [j for j in jobs if j.status == DONE]
    return "test" if done and all(j.split_metrics("test") for j in done) else "val"


# --- the paper's layouts ----------------------------------------------------------------------------------------

def _paper(rows: dict[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    return {name: dict(zip(PAPER_METRICS, values)) for name, values in rows.items()}


# The paper's test figures (%), in PAPER_METRICS order (Table II's coarse and fine top-1 equal their micro F1).
PAPER_TABLE2 = _paper({
    "TSN": (43.67, 52.50, 28.52, 59.22, 34.46, 59.22, 34.46, 73.34),
    "TSM": (61.39, 70.98, 40.19, 77.64, 56.75, 77.64, 56.75, 87.47),
    "TIN": (58.22, 66.99, 39.82, 73.26, 52.81, 73.26, 52.81, 85.37),
    "C3D": (58.43, 66.60, 40.86, 74.04, 52.22, 74.04, 52.22, 86.97),
    "I3D": (61.66, 71.56, 39.84, 78.16, 57.07, 78.16, 57.07, 88.67),
    "SlowFast": (63.09, 70.61, 44.96, 77.18, 59.60, 77.18, 59.60, 88.54),
    "VSwinT": (61.24, 71.25, 38.53, 77.95, 57.23, 77.95, 57.23, 87.99),
    "TimeSformer": (51.53, 61.90, 34.38, 69.17, 40.67, 69.17, 40.67, 82.62),
    "UniFormer": (64.43, 71.80, 48.01, 79.03, 58.89, 79.03, 58.89, 87.29),
    "MANet": (65.59, 72.87, 49.22, 78.95, 61.33, 78.95, 61.33, 88.83),
})
PAPER_TABLE3 = _paper({
    "4": (61.20, 69.22, 45.72, 75.30, 54.57, 75.30, 54.57, 87.54),
    "8": (65.59, 72.87, 49.22, 78.95, 61.33, 78.95, 61.33, 88.83),
    "16": (64.66, 71.77, 47.78, 78.32, 60.76, 78.32, 60.76, 88.95),
})
PAPER_TABLE4 = _paper({
    "0": (63.55, 70.76, 47.97, 76.94, 58.54, 76.94, 58.54, 89.12),
    "0.1": (63.65, 70.70, 48.38, 77.16, 58.80, 77.17, 58.80, 88.36),
    "1": (63.77, 71.02, 48.10, 77.72, 58.50, 77.72, 58.50, 88.47),
    "2": (62.51, 71.73, 47.56, 78.12, 58.96, 78.12, 58.96, 88.31),
    "5": (65.59, 72.87, 49.22, 78.95, 61.33, 78.95, 61.33, 88.83),
    "10": (64.11, 72.18, 47.16, 78.31, 59.71, 78.31, 59.71, 86.74),
})
PAPER_TABLE5 = _paper({
    "Baseline": (61.39, 70.98, 40.19, 77.64, 56.75, 77.64, 56.75, 87.47),
    "w/o SE": (64.77, 72.22, 48.07, 78.48, 60.31, 78.48, 60.31, 89.01),
    "w/o emb": (63.55, 70.76, 47.97, 76.94, 58.54, 76.94, 58.54, 89.12),
    "MANet": (65.59, 72.87, 49.22, 78.95, 61.33, 78.95, 61.33, 88.83),
})

# Table II's methods by experiment, and by model (a sweep over `model=` in another recipe)
EXPERIMENT_METHODS = {"ma52_tsn": "TSN", "ma52_tsm": "TSM", "ma52_tin": "TIN", "ma52_c3d": "C3D", "ma52_i3d": "I3D",
                      "ma52_slowfast": "SlowFast", "ma52_vswin_t": "VSwinT", "ma52_timesformer": "TimeSformer",
                      "ma52_uniformer": "UniFormer", "ma52_manet": "MANet"}
MODEL_METHODS = {"tsn": "TSN", "tsm": "TSM", "tin": "TIN", "c3d": "C3D", "i3d": "I3D", "slowfast": "SlowFast",
                 "vswin_t": "VSwinT", "timesformer": "TimeSformer", "uniformer": "UniFormer", "manet": "MANet",
                 "manet_r18": "MANet"}
EXPERIMENT_VARIANTS = {"ma52_tsm": "Baseline", "ma52_wo_se": "w/o SE", "ma52_wo_emb": "w/o emb", "ma52_manet": "MANet"}


def _method(job: Job) -> str | None:
    experiment, model = job.value("experiment"), job.value("model")
    if experiment in EXPERIMENT_METHODS:
        return EXPERIMENT_METHODS[experiment]
    if model in MODEL_METHODS:
        return MODEL_METHODS[model]
    return model if model not in (None, "null") else experiment


def _variant(job: Job) -> str | None:
    """Table V's variant: by experiment, else from the network (``model.name``: tsm without SE, manet
    with) and the loss (alpha 0: without the embedding loss)."""
    experiment = job.value("experiment")
    if experiment in EXPERIMENT_VARIANTS:
        return EXPERIMENT_VARIANTS[experiment]
    name, alpha = job.value("model.name"), job.value("loss.alpha")
    try:
        emb = float(alpha) > 0
    except (TypeError, ValueError):
        return None
    return {("tsm", False): "Baseline", ("tsm", True): "w/o SE", ("manet", False): "w/o emb",
            ("manet", True): "MANet"}.get((name, emb))


def _numeric(key: str) -> Callable[[Job], str | None]:
    def value(job: Job) -> str | None:
        v = job.value(key)
        return None if v is None else number_text(v)
    return value


@dataclass(frozen=True)
class Layout:
    """A paper table: what makes a row (``row_of``: a job's row value), the row column's header, how a value
    is printed, the override keys whose variation the rows stand for (any other varying key is refused),
    the paper's rows in its order with their figures, and the numeric key to plot against (if any)."""

    name: str
    title: str
    column: str
    row_of: Callable[[Job], str | None]
    covers: tuple[str, ...]
    paper: dict[str, dict[str, float]]
    row_text: Callable[[str], str] = str
    plot_key: str | None = None
    sweep: str = ""

    def order(self, values: Iterable[str]) -> list[str]:
        known = [v for v in self.paper if v in values]
        return known + sorted((v for v in values if v not in self.paper), key=_sort_key)


LAYOUTS = {
    "table2": Layout("table2", "Table II: methods on MA-52", "method", _method, ("experiment", "model"), PAPER_TABLE2,
                     sweep="python train.py -m experiment=ma52_tsn,ma52_tsm,ma52_tin,ma52_c3d,ma52_i3d,ma52_slowfast,"
                           "ma52_vswin_t,ma52_timesformer,ma52_uniformer,ma52_manet"),
    "table3": Layout("table3", "Table III: frames per clip T", "T", _numeric("data.num_segments"),
                     ("data.num_segments",), PAPER_TABLE3, lambda v: f"T={v}", "data.num_segments",
                     sweep="python train.py -m experiment=ma52_manet data.num_segments=4,8,16"),
    "table4": Layout("table4", "Table IV: loss weight alpha", "alpha", _numeric("loss.alpha"), ("loss.alpha", "loss"),
                     PAPER_TABLE4, lambda v: f"α={v}", "loss.alpha",
                     sweep="python train.py -m experiment=ma52_manet loss.alpha=0,0.1,1,2,5,10"),
    "table5": Layout("table5", "Table V: MANet's components", "variant", _variant,
                     ("experiment", "model", "loss", "loss.alpha"), PAPER_TABLE5,
                     sweep="python train.py -m experiment=ma52_tsm,ma52_wo_se,ma52_wo_emb,ma52_manet"),
}


def get_layout(name: str) -> Layout:
    if name not in LAYOUTS:
        raise ValueError(f"layout {name!r}: expected one of {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


def build_table(jobs: Sequence[Job], split: str = "auto", layout: str | Layout | None = None,
                metrics: Sequence[str] | None = None) -> Table:
    """The table of ``jobs`` on ``split`` (val, test, or auto: ``choose_split``).

    Rows: without ``layout``, one per combination of the swept keys (``swept_keys``: overrides that
    differ between jobs, the seed excluded), in numeric order; with a layout, one per row value of the
    paper's table (``LAYOUTS``), which refuses jobs that differ in another key. Cells: mean ± sample
    standard deviation over the row's finished runs (in %), ``n`` their count. Jobs without the split's
    metrics stay in their row's count and are named in ``notes``.
    """
    if not jobs:
        raise ValueError("no jobs to tabulate")
    split = choose_split(jobs, split)
    layout = get_layout(layout) if isinstance(layout, str) else layout
    metric_keys = list(metrics or (PAPER_METRICS if layout else METRIC_KEYS))
    seeds = len({j.overrides.get("seed") for j in jobs}) > 1
    if layout is not None:
        other = [k for k in swept_keys(jobs) if k not in layout.covers]
        if other:
            differ = "; ".join(f"{k} ({', '.join(sorted({str(j.overrides.get(k, '-')) for j in jobs}))})" for k in other)
            raise ValueError(f"--layout {layout.name}: the jobs also differ in {differ}; "
                             f"{layout.title} varies only {' / '.join(layout.covers)} (and the seed). Give the "
                             "sweeps of one table, or leave out --layout")
        unknown = [j for j in jobs if layout.row_of(j) is None]
        if unknown:
            raise ValueError(f"--layout {layout.name}: no {layout.column} for {', '.join(j.label for j in unknown[:5])}"
                             f" (from {' / '.join(layout.covers)})")
        keyed = [(layout.row_of(j), j) for j in jobs]
        order = layout.order({k for k, _ in keyed})
        label_columns = [layout.column]
    else:
        keys = swept_keys(jobs)
        keyed = [(tuple(j.overrides.get(k, "-") for k in keys), j) for j in jobs]
        order = sorted(dict.fromkeys(k for k, _ in keyed), key=lambda t: tuple(_sort_key(v) for v in t))
        label_columns = keys or ["run"]
    rows = []
    for value in order:
        members = [j for k, j in keyed if k == value]
        if layout is not None:
            labels = [layout.row_text(value)]
        else:
            labels = list(value) if label_columns != ["run"] else [members[0].label if len(members) == 1 else "all"]
        row = Row(labels=labels, jobs=members, paper=layout.paper.get(value) if layout else None,
                  count=sum(1 for j in members if j.split_metrics(split)))
        for m in metric_keys:
            row.cells[m] = Stat([100.0 * float(j.split_metrics(split)[m]) for j in members
                                 if j.split_metrics(split) and m in j.split_metrics(split)])
        rows.append(row)
    notes = []
    for j in jobs:
        if j.status != DONE:
            notes.append(_job_line(j))
        elif not j.split_metrics(split):
            found = j.metrics.get(split)
            notes.append(f"{j.label}: done, but no {split} metrics" + (f" ({found})" if isinstance(found, str) else ""))
    if layout is not None:
        absent = [layout.row_text(v) for v in layout.paper if v not in order]
        if absent:
            notes.append(f"rows of the paper without a run here: {', '.join(absent)} (the paper's sweep: "
                         f"{layout.sweep})")
    over = "mean ± sample std over seeds" if seeds else "one run per row unless n says more"
    title = f"{layout.title if layout else 'MA-52 metrics'}, {split} split (%), {over}"
    return Table(title, label_columns, [Column(m) for m in metric_keys], rows, notes,
                 paper="F1_mean" if layout and "F1_mean" in metric_keys else None)


def write_table(table: Table, out_dir: str | Path, stem: str, title: bool = True) -> dict[str, Path]:
    """``<stem>.md`` (the title when ``title``, the table, its notes), ``<stem>.csv`` and ``<stem>.tex`` in
    ``out_dir``, each written whole or not at all."""
    out_dir = Path(out_dir)
    return {
        "markdown": write_text_atomic(out_dir / f"{stem}.md", table.to_markdown(title=title, notes=True) + "\n"),
        "csv": write_text_atomic(out_dir / f"{stem}.csv", table.to_csv(), newline=""),
        "latex": write_text_atomic(out_dir / f"{stem}.tex", table.to_latex()),
    }


def jobs_csv(jobs: Sequence[Job]) -> str:
    """One line per job: name, status, detail, folder, overrides."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["job", "status", "detail", "path", "overrides"])
    for j in jobs:
        w.writerow([j.label, j.status, j.detail, "" if j.path is None else str(j.path),
                    " ".join(f"{k}={v}" for k, v in j.overrides.items())])
    return buf.getvalue()


# --- plots ----------------------------------------------------------------------------------------------------

def numeric_keys(jobs: Sequence[Job], keys: Sequence[str]) -> list[str]:
    """Those of ``keys`` whose values are numbers in every job that has one."""
    out = []
    for k in keys:
        values = [j.value(k) for j in jobs if j.value(k) is not None]
        if values and all(_sort_key(v)[0] == 0 for v in values):
            out.append(k)
    return out


def metric_points(jobs: Sequence[Job], key: str, metric: str, split: str,
                  group_keys: Sequence[str] = ()) -> dict[tuple, dict[float, list[float]]]:
    """{group (values of ``group_keys``): {value of ``key``: [the metric in % of each finished run]}}."""
    points: dict[tuple, dict[float, list[float]]] = {}
    for j in jobs:
        values = j.split_metrics(split)
        x = j.value(key)
        if not values or metric not in values or x is None or _sort_key(x)[0] != 0:
            continue
        group = tuple(j.overrides.get(k, "-") for k in group_keys)
        points.setdefault(group, {}).setdefault(float(x), []).append(100.0 * float(values[metric]))
    return points


def plot_metric(jobs: Sequence[Job], key: str, path: str | Path, metric: str = "F1_mean", split: str = "auto",
                layout: str | Layout | None = None, title: str | None = None) -> Path:
    """A PNG of ``metric`` (%) against the numeric ``key``: per value the mean over seeds with the sample
    standard deviation as error bar, each run as a dot; one line per combination of the other swept
    keys; the paper's figures dashed when ``layout`` has them. The values sit at equal spacing in their
    numeric order (alpha 0, 0.1, 1, ... would crowd on a linear axis, and 0 has no logarithm)."""
    # a bare Figure, not pyplot: no backend is chosen or changed (a notebook's inline plots keep working)
    from matplotlib.figure import Figure

    split = choose_split(jobs, split)
    layout = get_layout(layout) if isinstance(layout, str) else layout
    others = [k for k in swept_keys(jobs) if k != key and not (layout and k in layout.covers)]
    points = metric_points(jobs, key, metric, split, others)
    if not points:
        raise ValueError(f"no finished run has {split}/{metric} and a numeric {key}")
    xs = sorted({x for group in points.values() for x in group}
                | ({float(v) for v in layout.paper} if layout and layout.plot_key == key else set()))
    pos = {x: i for i, x in enumerate(xs)}
    fig = Figure(figsize=(max(4.5, 0.9 * len(xs) + 2), 3.6))
    ax = fig.add_subplot()
    for group, by_x in sorted(points.items()):
        order = sorted(by_x)
        stats = [Stat(by_x[x]) for x in order]
        label = ", ".join(f"{k}={v}" for k, v in zip(others, group)) or "runs"
        line = ax.errorbar([pos[x] for x in order], [s.mean for s in stats],
                           yerr=[s.std or 0.0 for s in stats], marker="o", capsize=4, label=label)
        for x in order:
            ax.plot([pos[x]] * len(by_x[x]), by_x[x], ".", color=line[0].get_color(), alpha=0.5)
    if layout and layout.plot_key == key and metric in PAPER_METRICS:
        px = sorted(float(v) for v in layout.paper)
        ax.plot([pos[x] for x in px], [layout.paper[number_text(x)][metric] for x in px], "--", color="grey",
                marker="s", label="paper (test)")
    ax.set_xticks(range(len(xs)), [number_text(x) for x in xs])
    ax.set_xlabel(key)
    ax.set_ylabel(f"{split} {metric} (%)")
    ax.set_title(title or f"{metric} against {key}" + (" (mean ± std over seeds)" if any(
        len(v) > 1 for g in points.values() for v in g.values()) else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    return Path(path)


# --- W&B as the source -----------------------------------------------------------------------------------------

class WandbUnavailable(RuntimeError):
    """The W&B API could not be used (no key, no network, no such project)."""


_JOB_NAME = re.compile(r"^(\d+)_(.*)$")
_OVERRIDE_START = re.compile(r"(?:^|,)([+~]*[A-Za-z_][\w./@-]*)=")
_WANDB_STATUS = {"finished": DONE, "failed": FAILED, "crashed": FAILED, "killed": STOPPED, "running": RUNNING}


def overrides_from_name(name: str) -> tuple[int | None, dict[str, str]]:
    """(job number, swept overrides) from a sweep job's folder name (``3_seed=1,loss.alpha=5``)."""
    m = _JOB_NAME.match(name or "")
    number, rest = (int(m.group(1)), m.group(2)) if m else (None, name or "")
    starts = list(_OVERRIDE_START.finditer(rest))
    out = {}
    for i, s in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(rest)
        out[s.group(1).lstrip("+~")] = rest[s.end():end]
    return number, out


def _summary_split(summary: Mapping[str, Any], split: str) -> dict[str, float]:
    """A split's metrics in a W&B run summary: the final evaluation's ``eval/<split>/<name>`` (the best
    checkpoint's, as in metrics.json), else the last logged ``<split>/<name>``; numbers only (a summary
    may hold ``{"max": ...}`` for a tracked metric)."""
    def numbers(prefix: str) -> dict[str, float]:
        return {k[len(prefix):]: float(v) for k, v in summary.items() if k.startswith(prefix)
                and isinstance(v, (int, float)) and not isinstance(v, bool)}

    return numbers(f"eval/{split}/") or numbers(f"{split}/")


def load_wandb_jobs(project: str, group: str | None = None, api: Any = None, timeout: int = 30) -> list[Job]:
    """The runs of the W&B ``project`` (``entity/project``), optionally of one ``group`` (a sweep's folder
    name, as ``logger=wandb`` groups them), as jobs: overrides from the run's name (the job folder's),
    config from the run, metrics from its summary (``eval/val/...``, ``eval/test/...``: the final evaluation;
    else ``val/...``, ``test/...``), status from its state.

    ``api``: an object with ``runs(path, filters=...)`` (default ``wandb.Api``). Any failure of the API is
    raised as ``WandbUnavailable`` with what to do instead.
    """
    if "/" not in project:
        raise ValueError(f"--wandb {project!r}: expected ENTITY/PROJECT")
    hint = ("collect from the run folders instead (python scripts/collect_results.py logs/train/multiruns/<sweep>), "
            "or check WANDB_API_KEY / `wandb login` and the network")
    try:
        if api is None:
            import wandb

            api = wandb.Api(timeout=timeout)
        runs = list(api.runs(project, filters={"group": group} if group else None))
    except Exception as err:  # whatever the client raises: no key, no network, no such project
        raise WandbUnavailable(f"W&B {project}{f' group {group}' if group else ''}: the API failed "
                               f"({type(err).__name__}: {err}); {hint}") from err
    jobs = []
    for run in runs:
        name = str(getattr(run, "name", "") or getattr(run, "id", ""))
        number, overrides = overrides_from_name(name)
        summary = dict(getattr(run, "summary_metrics", None) or getattr(run, "summary", {}) or {})
        metrics = {s: _summary_split(summary, s) for s in SPLITS}
        metrics = {s: v for s, v in metrics.items() if v}
        state = str(getattr(run, "state", "finished"))
        status = _WANDB_STATUS.get(state, STOPPED)
        if status == DONE and not metrics:
            status = STOPPED
        run_group = getattr(run, "group", None) or group
        jobs.append(Job(name=name, number=number, overrides=overrides, config=dict(getattr(run, "config", {}) or {}),
                        metrics=metrics, status=status, detail="" if status == DONE else f"W&B state {state}",
                        sweep=Path(str(run_group)) if run_group else None))
    if not jobs:
        raise WandbUnavailable(f"W&B {project}{f' group {group}' if group else ''}: no runs")
    return sorted(jobs, key=lambda j: (str(j.sweep), j.number if j.number is not None else 1 << 30, j.name))


# --- where runs are -------------------------------------------------------------------------------------------

def repo_root(start: str | Path | None = None) -> Path | None:
    """The checkout a notebook or script runs in: the first folder upwards from ``start`` (default: the
    working folder) holding ``train.py`` and ``conf/train.yaml``, else the package's own checkout; None
    for an installed package outside any checkout."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "train.py").is_file() and (folder / "conf" / "train.yaml").is_file():
            return folder
    own = Path(__file__).resolve().parents[2]
    return own if (own / "conf" / "train.yaml").is_file() else None


def logs_dir(start: str | Path | None = None) -> Path:
    """Where train.py writes runs, as ``paths.log_dir`` says: ``MICROACTION_LOGS`` (relative to the
    checkout), else ``MICROACTION_ROOT``/logs, else the checkout's logs/ (``repo_root``)."""
    root = repo_root(start)
    env = os.environ.get("MICROACTION_LOGS")
    if env:
        path = Path(env).expanduser()
        return path if path.is_absolute() else (root or Path.cwd()) / path
    if os.environ.get("MICROACTION_ROOT"):
        return Path(os.environ["MICROACTION_ROOT"]).expanduser() / "logs"
    return (root or Path.cwd()) / "logs"


def newest_run(logs: str | Path | None = None) -> Path:
    """The most recently finished run (a folder with ``metrics.json``) under ``logs`` (default ``logs_dir()``),
    single runs and sweep jobs alike."""
    logs = Path(logs) if logs else logs_dir()
    found = list(logs.glob("*/runs/*/metrics.json")) + list(logs.glob("*/multiruns/*/*/metrics.json"))
    if not found:
        raise FileNotFoundError(f"no finished run (metrics.json) under {logs}; set the run folder, or "
                                "MICROACTION_LOGS to the logs folder")
    return max(found, key=lambda p: p.stat().st_mtime).parent


def newest_sweep(logs: str | Path | None = None) -> Path:
    """The most recently started sweep (a folder with ``multirun.yaml``) under ``logs``."""
    logs = Path(logs) if logs else logs_dir()
    found = list(logs.glob("*/multiruns/*/multirun.yaml"))
    if not found:
        raise FileNotFoundError(f"no sweep (multirun.yaml) under {logs}; set the sweep folder, or "
                                "MICROACTION_LOGS to the logs folder")
    return max(found, key=lambda p: p.stat().st_mtime).parent


def best_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint a run's figures come from: ``best_checkpoint`` of its metrics.json when that file is
    there, else its ``checkpoints/best*.ckpt`` (a moved folder), else ``checkpoints/last.ckpt``."""
    run_dir = Path(run_dir)
    try:
        named = json.loads((run_dir / "metrics.json").read_text()).get("best_checkpoint")
    except (OSError, ValueError):
        named = None
    if named and Path(named).is_file():
        return Path(named)
    found = sorted((run_dir / "checkpoints").glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
    if found:
        return found[-1]
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return run_dir / "checkpoints" / "last.ckpt"
    raise FileNotFoundError(f"{run_dir}: no checkpoint (checkpoints/best*.ckpt or last.ckpt)")


# --- one run's history ----------------------------------------------------------------------------------------

HISTORY_SOURCES = ("csv", "tensorboard", "wandb")


@dataclass
class History:
    """A run's logged values as a tidy table: ``rows`` of (step, epoch, key, value); epoch None where the
    logger recorded none. ``source``: the logger it was read from; ``files``: the files read."""

    source: str
    rows: list[tuple[int | None, int | None, str, float]]
    files: list[Path] = field(default_factory=list)

    def keys(self) -> list[str]:
        return sorted({r[2] for r in self.rows})

    def series(self, key: str, x: str = "epoch") -> tuple[list[int], list[float]]:
        """(x values, values) of ``key`` in logging order; ``x``: ``epoch`` or ``step`` (rows without it skipped)."""
        at = {"step": 0, "epoch": 1}[x]
        pts = [(r[at], r[3]) for r in self.rows if r[2] == key and r[at] is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    def last(self, key: str) -> float | None:
        values = [r[3] for r in self.rows if r[2] == key]
        return values[-1] if values else None

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["step", "epoch", "key", "value"])
        w.writerows(["" if v is None else v for v in r] for r in self.rows)
        return buf.getvalue()


def _skip_dir(path: Path, run_dir: Path) -> bool:
    return "checkpoints" in path.relative_to(run_dir).parts


def history_files(run_dir: str | Path) -> dict[str, list[Path]]:
    """The files each logger left in ``run_dir``: CSV ``metrics.csv`` (``csv/``), TensorBoard event files,
    W&B run files (``wandb/*run-*/run-*.wandb``), each list in writing order."""
    run_dir = Path(run_dir)
    csvs = sorted((p for p in run_dir.rglob("metrics.csv") if not _skip_dir(p, run_dir)
                   and "wandb" not in p.relative_to(run_dir).parts), key=lambda p: p.stat().st_mtime)
    events = sorted((p for p in run_dir.rglob("events.out.tfevents.*") if not _skip_dir(p, run_dir)),
                    key=lambda p: (p.name.split(".")[3] if len(p.name.split(".")) > 3 else "", p.name))
    runs = sorted(p for p in run_dir.rglob("run-*.wandb") if not _skip_dir(p, run_dir))
    return {"csv": csvs, "tensorboard": events, "wandb": runs}


def _number(text: str) -> int | None:
    if text in ("", None):
        return None
    return int(float(text))


def _csv_history(files: Sequence[Path]) -> list[tuple]:
    rows = []
    for path in files:
        with path.open(newline="") as f:
            for line, rec in enumerate(csv.DictReader(f), start=2):
                step, epoch = _number(rec.get("step", "")), _number(rec.get("epoch", ""))
                for key, text in rec.items():
                    if key in ("step", "epoch") or key is None or text in ("", None):
                        continue
                    try:
                        rows.append((step, epoch, key, float(text)))
                    except ValueError:
                        raise ValueError(f"{path}, line {line}: {key}={text!r} is not a number") from None
    return rows


def _tensorboard_history(files: Sequence[Path]) -> list[tuple]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = []
    for path in files:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0}, purge_orphaned_data=False)
        acc.Reload()
        tags = acc.Tags().get("scalars", [])
        epochs = [(e.step, e.wall_time, int(e.value)) for e in acc.Scalars("epoch")] if "epoch" in tags else []
        events = sorted(((e.wall_time, e.step, tag, float(e.value)) for tag in tags if tag != "epoch"
                         for e in acc.Scalars(tag)), key=lambda t: t[0])
        for wall, step, tag, value in events:
            # Lightning logs `epoch` with every metric dict: the one written with this value's step, nearest in time
            same = [(abs(w - wall), ep) for s, w, ep in epochs if s == step]
            rows.append((step, min(same)[1] if same else None, tag, value))
    return rows


_W_BLOCK, _W_HEADER = 32768, 7
_W_FULL, _W_FIRST, _W_MIDDLE, _W_LAST = 1, 2, 3, 4


def wandb_records(path: str | Path) -> Iterable[bytes]:
    """The serialized records of a W&B run file (``run-<id>.wandb``, online or offline). Its format is
    LevelDB's log format: 32 KiB blocks of records, each ``crc32 (of type + data), length, type, data``
    (type full, first, middle or last piece), after a 7-byte header ``:W&B``, 0xBEE1, version 0. A
    record cut off or corrupted at the end (a run still writing, a killed one) ends the reading."""
    data = Path(path).read_bytes()
    if len(data) < _W_HEADER or data[:4] != b":W&B" or struct.unpack("<H", data[4:6])[0] != 0xBEE1:
        raise ValueError(f"{path}: not a W&B run file (no ':W&B' header)")
    pos, pieces = _W_HEADER, b""
    while pos + _W_HEADER <= len(data):
        left = _W_BLOCK - pos % _W_BLOCK
        if left < _W_HEADER:
            pos += left  # the block's zero-filled trailer
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos:pos + _W_HEADER])
        body = data[pos + _W_HEADER:pos + _W_HEADER + length]
        if kind == 0 and length == 0:
            pos += left  # zero padding
            continue
        if len(body) < length or zlib.crc32(body, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != checksum:
            return
        pos += _W_HEADER + length
        if kind == _W_FULL:
            yield body
        elif kind == _W_FIRST:
            pieces = body
        elif kind == _W_MIDDLE:
            pieces += body
        elif kind == _W_LAST:
            yield pieces + body
            pieces = b""
        else:
            return


def _wandb_history(files: Sequence[Path]) -> list[tuple]:
    from wandb.proto import wandb_internal_pb2

    rows = []
    for path in files:
        for raw in wandb_records(path):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(raw)
            if record.WhichOneof("record_type") != "history":
                continue
            items, media = {}, set()
            for item in record.history.item:
                path = list(item.nested_key) or [item.key]
                if len(path) > 1 and path[-1] == "_type":
                    media.add(path[0])  # an image or table: its fields are no values
                try:
                    items[".".join(path)] = json.loads(item.value_json)
                except ValueError:
                    continue
            items = {k: v for k, v in items.items() if k.split(".", 1)[0] not in media}
            step = items.get("trainer/global_step", items.get("_step"))
            epoch = items.get("epoch")
            for key, value in items.items():
                if key.startswith("_") or key in ("trainer/global_step", "epoch") or isinstance(value, bool) \
                        or not isinstance(value, (int, float)):
                    continue  # W&B's own counters, and media (dicts)
                rows.append((None if step is None else int(step), None if epoch is None else int(epoch), key,
                             float(value)))
    return rows


def load_run_history(run_dir: str | Path, source: str = "auto") -> History:
    """The values a run logged, from ``source`` (csv, tensorboard, wandb; auto: the first of these the run
    has). Works on a finished, running or stopped run; W&B files are read directly (no account, no
    network: offline runs included)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    files = history_files(run_dir)
    if source == "auto":
        source = next((s for s in HISTORY_SOURCES if files[s]), "")
        if not source:
            raise FileNotFoundError(f"{run_dir}: no logger's files (csv/metrics.csv, TensorBoard events.out.tfevents.*, "
                                    "wandb/*/run-*.wandb); was it run with logger=none?")
    if source not in HISTORY_SOURCES:
        raise ValueError(f"source={source!r}: expected auto or one of {', '.join(HISTORY_SOURCES)}")
    if not files[source]:
        raise FileNotFoundError(f"{run_dir}: no {source} files (found: "
                                f"{', '.join(s for s in HISTORY_SOURCES if files[s]) or 'none'})")
    reader = {"csv": _csv_history, "tensorboard": _tensorboard_history, "wandb": _wandb_history}[source]
    return History(source, reader(files[source]), files[source])


# --- per-clip predictions -------------------------------------------------------------------------------------

def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """The labelled rows of a ``predictions_<split>.csv``: video, label, pred and their names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no predictions file (the run writes predictions_val.csv and "
                                "predictions_test.csv at its end)")
    rows = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"video", "label", "pred"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: no column {', '.join(sorted(missing))} (a predictions CSV has video,label,pred,...)")
        for line, rec in enumerate(reader, start=2):
            if rec["label"] == "":
                continue  # hidden test labels
            try:
                rows.append({"video": rec["video"], "label": int(rec["label"]), "pred": int(rec["pred"]),
                             "label_name": rec.get("label_name") or rec["label"],
                             "pred_name": rec.get("pred_name") or rec["pred"]})
            except ValueError:
                raise ValueError(f"{path}, line {line}: label/pred must be class ids, got "
                                 f"{rec['label']!r}/{rec['pred']!r}") from None
    return rows


def per_class_f1(path: str | Path) -> dict[int, dict[str, Any]]:
    """Per fine class of a predictions CSV: ``{class: {"name", "support", "f1"}}``, F1 = 2TP / (2TP + FP + FN)
    over the classes present in labels or predictions (sklearn's macro semantics: the mean of these is
    the run's action_F1_macro)."""
    tp, fp, fn, support, names = Counter(), Counter(), Counter(), Counter(), {}
    for r in read_predictions(path):
        names[r["label"]], names[r["pred"]] = r["label_name"], r["pred_name"]
        support[r["label"]] += 1
        if r["label"] == r["pred"]:
            tp[r["label"]] += 1
        else:
            fp[r["pred"]] += 1
            fn[r["label"]] += 1
    return {c: {"name": names[c], "support": support[c], "f1": 2 * tp[c] / (2 * tp[c] + fp[c] + fn[c])}
            for c in sorted(names)}


def head_tail_f1(path: str | Path, train_counts: Sequence[int], third: int | None = None) -> dict[str, float]:
    """Macro F1 of a predictions CSV over the fine classes with the most training clips (``F1_head``) and
    over those with the fewest (``F1_tail``): what the long tail costs, in one pair of figures.

    Classes are ranked by ``train_counts`` (ties by class id); head and tail are the first and last
    ``third`` of that order (default: a third of the classes, 17 of MA-52's 52). Per-class F1 is
    2 TP / (2 TP + FP + FN), 0 for a class with no clip and no prediction, so both sets always average
    ``third`` classes (unlike ``per_class_f1``, which knows only the classes present).
    """
    k = len(train_counts)
    third = third or k // 3
    if not 0 < third <= k:
        raise ValueError(f"third={third}: expected 1 to {k} (the classes of train_counts)")
    rows = read_predictions(path)
    if not rows:
        raise ValueError(f"{path}: no labelled clip (hidden test labels?): head and tail F1 need the labels")
    tp, fp, fn = [0] * k, [0] * k, [0] * k
    for r in rows:
        label, pred = r["label"], r["pred"]
        if not (0 <= label < k and 0 <= pred < k):
            raise ValueError(f"{path}: clip {r['video']} has label/pred {label}/{pred}, outside the {k} classes of "
                             "the training counts")
        if label == pred:
            tp[label] += 1
        else:
            fp[pred] += 1
            fn[label] += 1
    order = sorted(range(k), key=lambda c: (-train_counts[c], c))

    def macro(classes: Sequence[int]) -> float:
        f1 = [2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) if tp[c] + fp[c] + fn[c] else 0.0 for c in classes]
        return sum(f1) / len(f1)

    return {"F1_head": macro(order[:third]), "F1_tail": macro(order[-third:])}


def train_class_counts(job: Job) -> tuple[list[int], str]:
    """Training clips per fine class for ``job``: counted in its data's training list when that is readable
    (``data.root`` of its config), else MA-52's published counts; and where they came from."""
    from .labels import LabelSpace

    root = job.value("data.root")
    if root not in (None, "null") and (Path(root) / "train_list_videos.txt").is_file():
        from .data.annotations import read_list

        path = Path(root) / "train_list_videos.txt"
        counts = Counter(r.label for r in read_list(path))
        size = max(LabelSpace.ma52().num_classes, max(counts, default=-1) + 1)
        return [counts.get(c, 0) for c in range(size)], str(path)
    return list(LabelSpace.ma52().train_counts), "MA-52's published training counts"


def confusion_changes(before: str | Path, after: str | Path) -> dict[str, Any]:
    """What changed between two runs' predictions of the same clips (``predictions_<split>.csv``): the
    (true class, predicted class) confusions ``after`` fixed (wrong before, right after: the pair is the
    earlier mistake) and those it broke (right before, wrong after: the new mistake), each a list of
    ``{"true", "pred", "true_name", "pred_name", "clips"}`` by count; and the clips compared."""
    a = {r["video"]: r for r in read_predictions(before)}
    b = {r["video"]: r for r in read_predictions(after)}
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError(f"{before} and {after} share no labelled clip: are they predictions of the same split?")
    fixed, broken, names = Counter(), Counter(), {}
    for v in common:
        ra, rb = a[v], b[v]
        if ra["label"] != rb["label"]:
            raise ValueError(f"{v}: label {ra['label']} in {before} but {rb['label']} in {after}")
        for r in (ra, rb):
            names[r["label"]], names[r["pred"]] = r["label_name"], r["pred_name"]
        right_a, right_b = ra["pred"] == ra["label"], rb["pred"] == rb["label"]
        if not right_a and right_b:
            fixed[(ra["label"], ra["pred"])] += 1
        elif right_a and not right_b:
            broken[(rb["label"], rb["pred"])] += 1

    def listed(counts: Counter) -> list[dict[str, Any]]:
        return [{"true": t, "pred": p, "true_name": names[t], "pred_name": names[p], "clips": n}
                for (t, p), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]

    return {"fixed": listed(fixed), "broken": listed(broken), "clips": len(common),
            "right_before": sum(a[v]["pred"] == a[v]["label"] for v in common),
            "right_after": sum(b[v]["pred"] == b[v]["label"] for v in common)}
