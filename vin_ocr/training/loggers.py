"""Experiment loggers for training runs: ``logger=none`` (the default) and ``logger=wandb``.

A logger receives, from the main process only: the resolved config and hardware at the start,
per-step values (``train/loss``, ``train/samples_per_s``, ``lr``, ``val/exact_match`` ...), each
test set's evaluation report with its worst predictions, and the adapter (or model) folder.

``logger=wandb`` with ``logger.mode=auto`` logs online when a W&B API key is found
(``WANDB_API_KEY`` or ``~/.netrc``) and offline otherwise, saying where the offline run lives
and the ``wandb sync`` command that uploads it. Secrets (``HF_TOKEN``, ``WANDB_API_KEY``,
anything key- or token-like) are replaced by ``***`` in everything sent to W&B.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from vin_ocr.data.sample import jsonl_rows
from vin_ocr.evaluation.wandb_access import import_wandb, wandb_api_key_available

log = logging.getLogger(__name__)

#: Report keys logged for each test set (``eval/<set>/<key>``); ``compare`` reads them back.
EVAL_KEYS = (
    "exact_match",
    "exact_match_lenient",
    "char_accuracy",
    "cer",
    "norm_edit_dis",
    "valid_rate",
    "empty_rate",
    "ms_per_image",
    "ms_p50",
    "ms_p95",
    "images_per_s",
    "n",
    "per_position",
)
REDACTED = "***"
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
_SECRET_KEY = re.compile(
    r"(^|[_.-])(token|secret|password|passwd|api_?key|access_?key|private_?key|credentials?)$",
    re.IGNORECASE,
)
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")


class WandbMode(StrEnum):
    """``logger.mode``: ``auto`` is online with an API key, else offline."""

    auto = "auto"
    online = "online"
    offline = "offline"


MODES = tuple(m.value for m in WandbMode)


class Logger(Protocol):
    """What ``train`` calls; every method is a no-op in :class:`NullLogger`."""

    def start(self, config: Mapping[str, Any], hardware: Mapping[str, Any]) -> None: ...

    def log(self, values: Mapping[str, float], step: int) -> None: ...

    def log_eval(
        self, name: str, report: Mapping[str, Any], worst: Sequence[Mapping[str, Any]]
    ) -> None: ...

    def log_artifact(self, path: Path, kind: str) -> None: ...

    def finish(self) -> None: ...


class NullLogger:
    """``logger=none``, and every process but the main one."""

    def __init__(self, **_: Any) -> None:
        pass

    def start(self, config: Mapping[str, Any], hardware: Mapping[str, Any]) -> None:
        pass

    def log(self, values: Mapping[str, float], step: int) -> None:
        pass

    def log_eval(
        self, name: str, report: Mapping[str, Any], worst: Sequence[Mapping[str, Any]]
    ) -> None:
        pass

    def log_artifact(self, path: Path, kind: str) -> None:
        pass

    def finish(self) -> None:
        pass


# --------------------------------------------------------------------------- secrets
def _secret_values() -> list[str]:
    values = [os.environ.get(k, "") for k in SECRET_ENV]
    with contextlib.suppress(Exception):  # the user's Hugging Face login, if any
        from huggingface_hub import get_token

        values.append(get_token() or "")
    return sorted({v for v in values if len(v) >= 8}, key=len, reverse=True)


def _scrub_text(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return _HF_TOKEN.sub(REDACTED, text)


def scrub_secrets(obj: Any, secrets: Sequence[str] | None = None) -> Any:
    """A copy of ``obj`` (dicts, lists, scalars) with the values of secret-looking keys, the
    current tokens' values (``HF_TOKEN``, ``WANDB_API_KEY``, the Hugging Face login) and
    ``hf_...`` tokens replaced by ``***``.

    >>> scrub_secrets({"hub": {"token": "abc", "repo_id": "me/vin"}, "max_new_tokens": 24})
    {'hub': {'token': '***', 'repo_id': 'me/vin'}, 'max_new_tokens': 24}
    """
    secrets = _secret_values() if secrets is None else secrets
    if isinstance(obj, Mapping):
        return {
            k: REDACTED
            if _SECRET_KEY.search(str(k)) and obj[k] not in (None, "")
            else scrub_secrets(obj[k], secrets)
            for k in obj
        }
    if isinstance(obj, list | tuple):
        return [scrub_secrets(v, secrets) for v in obj]
    if isinstance(obj, str):
        return _scrub_text(obj, secrets)
    return obj


def _scrub_arg(arg: str, secrets: Sequence[str]) -> str:
    key, eq, _ = arg.partition("=")
    if eq and _SECRET_KEY.search(key.lstrip("+~-")):
        return f"{key}={REDACTED}"
    return _scrub_text(arg, secrets)


@contextlib.contextmanager
def _scrubbed_argv() -> Iterator[None]:
    """W&B records ``sys.argv`` as the run's command: hide secrets given as overrides."""
    saved, secrets = sys.argv, _secret_values()
    sys.argv = [saved[0], *(_scrub_arg(a, secrets) for a in saved[1:])]
    try:
        yield
    finally:
        sys.argv = saved


# --------------------------------------------------------------------------- W&B
def worst_predictions(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The wrong predictions of an evaluation run (``report["files"]["predictions"]``), worst
    first (highest CER), each with ``image_path``: the image file resolved from the manifest."""
    preds = Path(report["files"]["predictions"])
    manifest = (report.get("data") or {}).get("path")
    root = Path(manifest).parent if manifest else Path(".")
    rows = [row for _, row in jsonl_rows(preds) if row.get("exact") is False]
    rows.sort(key=lambda r: (-(r.get("cer") or 0.0), r["image"]))
    return [{**r, "image_path": root / r["image"]} for r in rows]


class WandbLogger:
    """``logger=wandb``: config, hardware, per-step values, eval metrics (summary
    ``eval/<set>/<metric>``), a table of the worst predictions with their images
    (``eval/<set>/worst``) and the adapter as a ``model`` artifact."""

    def __init__(
        self,
        project: str = "vin-ocr",
        entity: str | None = None,
        name: str | None = None,
        tags: Sequence[str] = (),
        mode: str | WandbMode = "auto",
        dir: str | None = None,
        worst_rows: int = 16,
        log_model: bool = True,
        run_dir: str | None = None,
    ) -> None:
        mode = str(getattr(mode, "value", mode))
        if mode not in MODES:
            raise ValueError(f"logger.mode={mode!r}: expected one of {', '.join(MODES)}")
        self.project, self.entity, self.name, self.tags = project, entity, name, list(tags)
        self.mode, self.worst_rows, self.log_model = mode, worst_rows, log_model
        #: where W&B writes its ``wandb/`` folder: ``logger.dir``, else WANDB_DIR, else the run
        self.dir = dir or os.environ.get("WANDB_DIR") or run_dir
        self.run: Any = None
        self._step = 0

    def _mode(self) -> tuple[str | None, str]:
        """The mode to pass to ``wandb.init`` (None: W&B reads WANDB_MODE) and why."""
        if self.mode != "auto":
            if self.mode == "online" and not wandb_api_key_available():
                raise RuntimeError(
                    "logger.mode=online but no W&B API key was found: set WANDB_API_KEY or run "
                    "`wandb login` (or use logger.mode=auto to log offline)"
                )
            return self.mode, f"logger.mode={self.mode}"
        if os.environ.get("WANDB_MODE"):
            return None, f"WANDB_MODE={os.environ['WANDB_MODE']}"
        if wandb_api_key_available():
            return "online", "API key found"
        return "offline", "no W&B API key (WANDB_API_KEY or ~/.netrc)"

    def start(self, config: Mapping[str, Any], hardware: Mapping[str, Any]) -> None:
        wandb = import_wandb()
        mode, why = self._mode()
        if self.dir:
            Path(self.dir).mkdir(parents=True, exist_ok=True)
        with _scrubbed_argv():
            self.run = wandb.init(
                project=self.project,
                entity=self.entity,
                name=self.name,
                tags=self.tags or None,
                mode=mode,
                dir=self.dir,
                config=scrub_secrets({**config, "machine": dict(hardware)}),
            )
        # sweeps optimise the best validation score, not the last one
        self.run.define_metric("val/exact_match", summary="max")
        self.run.define_metric("val/cer", summary="min")
        if self.run.offline:
            sync_dir = self.run.settings.sync_dir
            log.info(
                "W&B: %s, logging offline to %s; upload it later with: wandb sync %s",
                why, sync_dir, sync_dir,
            )  # fmt: skip
        elif not self.run.disabled:
            log.info("W&B: logging online (%s): %s", why, self.run.url)

    def log(self, values: Mapping[str, float], step: int) -> None:
        self._step = max(self._step, step)
        self.run.log(dict(values), step=step)

    def log_eval(
        self, name: str, report: Mapping[str, Any], worst: Sequence[Mapping[str, Any]]
    ) -> None:
        wandb = import_wandb()
        prefix = f"eval/{name}"
        self.run.summary.update(
            {f"{prefix}/{k}": report[k] for k in EVAL_KEYS if report.get(k) is not None}
        )
        columns = ["image", "truth", "prediction", "raw", "cer", "valid"]
        table = wandb.Table(columns=columns)
        for row in worst[: self.worst_rows]:
            image = wandb.Image(str(row["image_path"]), caption=str(row["image"]))
            raw = scrub_secrets(row.get("raw", ""))
            table.add_data(image, row["truth"], row["pred"], raw, row["cer"], row["valid"])
        values: dict[str, Any] = {f"{prefix}/worst": table}
        chart = (report.get("files") or {}).get("per_position")
        if chart and Path(chart).is_file():
            values[f"{prefix}/per_position_chart"] = wandb.Image(str(chart))
        self.run.log(values, step=self._step)

    def log_artifact(self, path: Path, kind: str) -> None:
        if not self.log_model:
            return
        wandb = import_wandb()
        path = Path(path)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.run.name or self.run.id}-{path.name}")
        artifact = wandb.Artifact(name, type=kind, metadata={"folder": path.name})
        if path.is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def build_logger(cfg: Any, run_dir: Path, is_main: bool = True) -> Logger:
    """The logger named by the ``logger`` config group (None: :class:`NullLogger`); every
    process but the main one gets a :class:`NullLogger`."""
    if cfg is None or not is_main:
        return NullLogger()
    from hydra.utils import instantiate

    return instantiate(cfg, run_dir=str(run_dir))


# --------------------------------------------------------------------------- config schemas
@dataclass
class WandbConf:
    """Schema of ``configs/logger/wandb.yaml``: a mistyped key fails at start-up, naming it."""

    _target_: str = "vin_ocr.training.loggers.WandbLogger"
    project: str = "vin-ocr"
    entity: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    mode: WandbMode = WandbMode.auto
    dir: str | None = None
    worst_rows: int = 16
    log_model: bool = True
