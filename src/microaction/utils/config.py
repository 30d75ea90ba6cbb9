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


def sweep_job_dirname(task_overrides) -> str:
    """A sweep job's folder name: the values of the swept keys, e.g. ``loss.alpha=0.1``
    (all of the job's overrides when nothing is swept)."""
    overrides = [str(o) for o in task_overrides]
    recorded = os.environ.get(SWEPT_KEYS_ENV)
    swept = set(filter(None, recorded.split(","))) if recorded is not None else swept_keys()
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


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def sweep_identity() -> tuple[str | None, str | None]:
    """(sweep folder name, job folder name) when running under a Hydra multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return None, None
    if hc.mode != RunMode.MULTIRUN:
        return None, Path(hc.runtime.output_dir).name
    return Path(hc.sweep.dir).name, Path(hc.runtime.output_dir).name


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


def instantiate_loggers(section: DictConfig | None) -> list[Any]:
    """Like ``instantiate_dict``, filling W&B's group/name/offline from the sweep."""
    if not section:
        return []
    section = section.copy()
    for name, entry in section.items():
        if isinstance(entry, DictConfig) and str(entry.get("_target_", "")).endswith("WandbLogger"):
            group, job = sweep_identity()
            OmegaConf.set_struct(entry, False)
            if entry.get("group") is None and group:
                entry.group = group
            if entry.get("name") is None and job:
                entry.name = job
            if entry.get("offline") is None:
                entry.offline = not wandb_has_credentials()
                if entry.offline:
                    log.info("W&B: no API key configured, logging offline (upload later with `wandb sync`)")
    return instantiate_dict(section, "logger")
