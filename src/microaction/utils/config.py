"""Config helpers shared by train.py and eval.py."""

from __future__ import annotations

import logging
import os
import hashlib
import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def safe_dirname(text: str, max_len: int = 150) -> str:
    """Text as one folder name: no path separators; if too long, cut with a hash so names stay distinct."""
    text = re.sub(r"[/\\:\s]+", "_", str(text)).strip("_") or "default"
    if len(text) > max_len:
        text = f"{text[: max_len - 9]}~{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return text


SWEPT_KEYS_ENV = "MICROACTION_SWEPT_KEYS"


def swept_keys(argv: list[str] | None = None) -> set[str]:
    """Keys the command line sweeps over (``loss.alpha=0,1``, ``seed=range(3)``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception:  # not our job to report a bad command line; Hydra does
        return set()
    return {o.key_or_group for o in parsed if o.is_sweep_override()}


def export_swept_keys() -> None:
    """Record the sweep's keys for the job processes: under a launcher such as
    submitit a job's own ``sys.argv`` is the launcher's, not the user's command."""
    if SWEPT_KEYS_ENV not in os.environ:
        os.environ[SWEPT_KEYS_ENV] = ",".join(sorted(swept_keys()))


def sweeper_param_keys() -> set[str]:
    """Keys a sweeper searches by its own config (``hydra.sweeper.params``, e.g. the Optuna sweeper of
    ``hparams_search=...``): they are swept although the command line does not sweep them."""
    try:
        from hydra.core.hydra_config import HydraConfig

        params = HydraConfig.get().sweeper.get("params")
    except (ImportError, ValueError, AttributeError):
        return set()
    return {str(k) for k in params} if params else set()


def sweep_job_dirname(task_overrides) -> str:
    """A sweep job's folder name: the values of the swept keys, e.g. ``loss.alpha=0.1``
    (all of the job's overrides when nothing is swept)."""
    overrides = [str(o) for o in task_overrides]
    recorded = os.environ.get(SWEPT_KEYS_ENV)
    swept = set(filter(None, recorded.split(","))) if recorded is not None else swept_keys()
    swept |= sweeper_param_keys()
    chosen = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in swept] if swept else overrides
    return safe_dirname(",".join(chosen))


def launch_dir() -> str:
    """The folder the command was started from.

    ``${hydra:runtime.cwd}`` says the same inside a job, but Hydra resolves
    ``hydra.sweep.dir`` before any job exists, where that resolver fails; this one
    answers in both places (and in a job under a launcher such as submitit, whose
    own working folder may differ, it is Hydra's recorded value).
    """
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().runtime.cwd)
    except (ImportError, ValueError):
        return os.getcwd()


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("sweep_job_dirname"):
        OmegaConf.register_new_resolver("sweep_job_dirname", sweep_job_dirname)
    if not OmegaConf.has_resolver("launch_dir"):
        OmegaConf.register_new_resolver("launch_dir", launch_dir)


def print_config(cfg: DictConfig, path: Path | None = None) -> None:
    """Print the composed config as a rich tree; save the resolved YAML beside the run."""
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("config", guide_style="dim")
    for key, value in cfg.items():
        branch = tree.add(str(key))
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)


def save_resolved_config(cfg: DictConfig, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "config_resolved.yaml"
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path


WANDB_DEFAULT_BASE_URL = "https://api.wandb.ai"
# How long the check that the W&B server answers may take before a run logs offline instead.
WANDB_CHECK_TIMEOUT_S = 5.0


def wandb_base_url() -> str:
    """The W&B server this process would use: ``WANDB_BASE_URL``, else wandb's settings
    (``wandb login --host``, settings files), else the public server."""
    url = os.environ.get("WANDB_BASE_URL")
    if not url:
        try:
            from wandb.sdk import wandb_setup

            url = str(wandb_setup.singleton().settings.base_url)
        except Exception:  # wandb missing or its settings unreadable: wandb.init reports that itself
            url = WANDB_DEFAULT_BASE_URL
    return url.rstrip("/")


def wandb_has_credentials() -> bool:
    """An API key in ``WANDB_API_KEY``, or a ``wandb login`` entry in the netrc file for the
    configured server (or the public one)."""
    import netrc
    from urllib.parse import urlsplit

    if os.environ.get("WANDB_API_KEY"):
        return True
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if not path.is_file():
        return False
    try:
        machines = netrc.netrc(str(path)).hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any(host in machines for host in {urlsplit(wandb_base_url()).netloc, "api.wandb.ai"})


def wandb_unreachable(base_url: str, timeout: float = WANDB_CHECK_TIMEOUT_S) -> str | None:
    """Why the W&B server at ``base_url`` cannot be used right now, or None when it answers.

    One HTTP HEAD request to the server's address (proxy settings from the environment apply, as
    they do for W&B), bounded as a whole, name lookup included, by ``timeout`` seconds. Any HTTP
    answer below 500 counts: the server is there (whether the key is valid is W&B's to say).
    """
    import threading

    import requests

    outcome: list[str | None] = []

    def probe() -> None:
        try:
            response = requests.head(base_url, timeout=timeout, allow_redirects=False)
        except requests.Timeout:
            outcome.append(f"no answer within {timeout:g} s")
        except requests.RequestException as err:
            found = re.search(r"\[Errno -?\d+\][^'\")]*", str(err))
            outcome.append(found.group(0).strip() if found else type(err).__name__)
        else:
            outcome.append(None if response.status_code < 500 else f"HTTP {response.status_code}")

    thread = threading.Thread(target=probe, name="wandb-reachability", daemon=True)
    thread.start()
    thread.join(timeout + 1)
    if not outcome:
        return f"no answer within {timeout:g} s"
    return outcome[0]


def sweep_identity() -> tuple[str | None, str | None]:
    """(sweep folder name, job folder name) when running under a Hydra multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return None, None
    output_dir = OmegaConf.select(hc, "runtime.output_dir", default=None, throw_on_missing=False)
    job = Path(output_dir).name if output_dir and output_dir != "???" else None  # None: a config composed, not run
    if hc.mode != RunMode.MULTIRUN:
        return None, job
    return Path(hc.sweep.dir).name, job


def instantiate_dict(section: DictConfig | None, what: str) -> list[Any]:
    """Instantiate each named entry (``{name: {_target_: ...}}``) of a config section."""
    from hydra.utils import instantiate

    objects: list[Any] = []
    if not section:
        return objects
    if not isinstance(section, DictConfig):
        raise TypeError(f"{what} config must be a mapping of named entries, got {type(section).__name__}")
    for name, entry in section.items():
        if isinstance(entry, DictConfig) and "_target_" in entry:
            objects.append(instantiate(entry))
            log.info("%s: %s", what, name)
    return objects


def _wandb_offline_reason() -> str | None:
    """Why a W&B run whose ``offline`` is left to us (null) should log offline; None: go online."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun", "disabled"):
        return None  # W&B follows WANDB_MODE itself: nothing to decide or to check
    if not wandb_has_credentials():
        return "no API key configured"
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank != 0:
        return None  # only rank 0 starts a W&B run
    url = wandb_base_url()
    reason = wandb_unreachable(url)
    return None if reason is None else f"the server {url} cannot be reached ({reason})"


def _set_offline(entry: DictConfig) -> None:
    entry.offline = True
    # Said to wandb.init as well: Lightning's WANDB_MODE variable is ignored once wandb has read its
    # settings in this process (e.g. an earlier job of the sweep, or the server address looked up here).
    entry.mode = "offline"
    # Lightning refuses log_model offline; RunLogs.log_checkpoints logs the checkpoints as artifacts at the end
    # of training instead, uploaded with the rest by `wandb sync`
    entry.log_model = False


def _wandb_dir(entry: DictConfig) -> str:
    """Where W&B writes the run's files (``<save_dir>/wandb``)."""
    save_dir = entry.get("save_dir") or entry.get("dir")
    return str(Path(save_dir) / "wandb") if save_dir else "./wandb"


def _start_wandb(logger, entry: DictConfig):
    """Start an online W&B run now; if W&B cannot start it, log offline instead of failing the job."""
    import wandb
    from hydra.utils import instantiate
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank != 0:
        return logger  # other ranks never start a W&B run
    try:
        _ = logger.experiment
        return logger
    except wandb.errors.Error as err:
        reason = str(err).strip()
        reason = f"{type(err).__name__}: {reason}" if reason and reason != "<no message>" else type(err).__name__
    if wandb.run is not None:
        wandb.finish()
    _set_offline(entry)
    log.warning("W&B: the online run could not start (%s); logging offline to %s instead "
                "(upload later with `wandb sync`)", reason, _wandb_dir(entry))
    return instantiate(entry)


def wandb_run_name(group: str | None, job: str | None, max_len: int = 128) -> str | None:
    """A W&B run's name when the config leaves it null: in a sweep the job's folder name (its number and
    swept values, e.g. ``3_loss.alpha=5``); in a single run its command-line overrides, else its folder name."""
    if group:
        return job
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = [str(o) for o in HydraConfig.get().overrides.task]
    except (ImportError, ValueError):
        overrides = []
    name = ",".join(overrides) or job
    if name and len(name) > max_len:
        name = f"{name[: max_len - 9]}~{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


def instantiate_loggers(section: DictConfig | None, wandb_id: str | None = None) -> list[Any]:
    """Like ``instantiate_dict``, filling W&B's group/name/offline from the sweep.

    W&B with ``offline: null`` logs online when an API key is configured and the server answers
    within ``WANDB_CHECK_TIMEOUT_S`` seconds, and offline otherwise (said in the log); an online run
    that W&B then fails to start falls back to offline as well, so the job goes on either way.
    ``wandb_id``: continue that W&B run (a job resumed in its folder), unless the config sets an ``id``.
    """
    if not section:
        return []
    section = section.copy()
    auto_wandb: set[str] = set()
    log_model: dict[str, Any] = {}
    for name, entry in section.items():
        if isinstance(entry, DictConfig) and str(entry.get("_target_", "")).endswith("WandbLogger"):
            group, job = sweep_identity()
            OmegaConf.set_struct(entry, False)
            log_model[str(name)] = entry.get("log_model") or False
            if log_model[str(name)] is True:
                # the best and last checkpoints at the end of training, with those aliases, online or offline:
                # RunLogs.log_checkpoints (Lightning's own would alias every ModelCheckpoint's file "best")
                entry.log_model = False
            if entry.get("offline") is True:
                _set_offline(entry)
            if entry.get("group") is None and group:
                entry.group = group
            if entry.get("name") is None:
                entry.name = wandb_run_name(group, job)
            if wandb_id and entry.get("id") is None and entry.get("version") is None:
                entry.id = wandb_id
                entry.resume = "allow"
                log.info("W&B: continuing run %s (its id is kept in the run folder)", wandb_id)
            if entry.get("offline") is None:
                reason = _wandb_offline_reason()
                entry.offline = reason is not None
                if entry.offline:
                    _set_offline(entry)
                    log.warning("W&B: %s; logging offline to %s (upload later with `wandb sync`)",
                                reason, _wandb_dir(entry))
                else:
                    auto_wandb.add(str(name))
    loggers = instantiate_dict(section, "logger")
    named = [str(n) for n, e in section.items() if isinstance(e, DictConfig) and "_target_" in e]
    if auto_wandb:
        loggers = [_start_wandb(lg, section[n]) if n in auto_wandb else lg for n, lg in zip(named, loggers)]
    for n, lg in zip(named, loggers):
        # log_model true, or "all" in an offline run (Lightning refuses it there): RunLogs.log_checkpoints
        if log_model.get(n) is True or (log_model.get(n) and section[n].get("offline") is True):
            lg.microaction_log_model = log_model[n]
    return loggers
