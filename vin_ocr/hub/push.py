"""Publish a run folder to the Hugging Face Hub in one commit, or stage it (dry run).

``hub.push=true hub.repo_id=org/name`` at the end of a training run (or of
``python -m vin_ocr.training.merge``) uploads the run folder in the layout ``load_run`` reads::

    README.md          the model card (metadata + results), rendered for the repo id
    run.json           family, model config, hardware, metrics (what load_run reads)
    config.yaml        the resolved config, secret-looking keys removed
    model/             merged weights (hub.upload=merged) or model/adapter/ (hub.upload=adapter),
                       safetensors only, plus the processor / tokenizer files
    eval/<set>/        the evaluation reports (report.json, report.md, predictions, chart)

``hub.dry_run=true`` writes exactly that folder (``hub.staging_dir``, default ``RUN/hub_upload``)
and prints where, without a token or a network. The token comes from ``HF_TOKEN`` or the user's
``hf auth login`` (``huggingface_hub.get_token``); it is passed to ``HfApi`` only and never
written or logged. Failures (no token, no network, a repo holding something else) raise
:class:`HubError` with the reason; the run folder is never modified.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vin_ocr.run_folder import (
    ADAPTER_DIR,
    CARD_FILE,
    CONFIG_FILE,
    EVAL_DIR,
    MODEL_DIR,
    RUN_FILE,
    STAGING_DIR,
    has_adapter,
    has_merged_weights,
    is_finished,
    read_info,
)

log = logging.getLogger(__name__)

#: The marker (card tag) that says a Hub repo was written by vin-ocr.
MARKER = "vin-ocr"
#: Files copied from model/ (weights must be safetensors; .bin / .pt / pickles never go).
MODEL_FILES = ("*.safetensors", "*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken")
EVAL_FILES = ("*.json", "*.jsonl", "*.md", "*.png")
#: Keys dropped from the uploaded config.yaml (any nesting level, case-insensitive).
SECRET_KEY = re.compile(r"token|secret|password|passwd|api[_-]?key|credential|auth", re.I)


class HubError(RuntimeError):
    """A push that cannot be done; the message says why and that the run folder is intact."""


@dataclass
class HubConf:
    """``configs/hub/default.yaml`` (the ``hub`` group); a mistyped key fails naming it."""

    push: bool = False  # upload at the end (main process only)
    repo_id: str | None = None  # org/name
    private: bool = False  # create the repo private (an existing repo keeps its visibility)
    dry_run: bool = False  # write the folder that would be uploaded, print where; no network
    upload: str = "auto"  # auto (merged when model/ has it, else adapter) | merged | adapter
    overwrite: bool = False  # push over a repo that holds something else (other files deleted)
    staging_dir: str | None = None  # dry run folder; null: RUN/hub_upload
    commit_message: str | None = None  # null: "vin-ocr: <run name>"


@dataclass
class PushResult:
    """What :func:`push_run` did: the staged folder (dry run) or the commit made."""

    repo_id: str | None
    files: list[str]
    staged: Path | None = None  # the dry run's folder
    commit_url: str | None = None
    deleted: list[str] = field(default_factory=list)


def replace_dir(tmp: Path, out: Path) -> Path:
    """Put the complete folder ``tmp`` at ``out`` (an older ``out`` is removed only after)."""
    old = out.with_name(f".old_{out.name}")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def scrub(value: Any) -> Any:
    """``value`` (nested dicts/lists) without keys that look secret.

    >>> scrub({"hub": {"repo_id": "a/b", "token": "x"}, "logger": [{"api_key": 1, "k": 2}]})
    {'hub': {'repo_id': 'a/b'}, 'logger': [{'k': 2}]}
    """
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not SECRET_KEY.search(str(k))}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _upload_kind(model_dir: Path, upload: str) -> str:
    merged, adapter = has_merged_weights(model_dir), has_adapter(model_dir)
    if upload == "auto":
        upload = "merged" if merged else "adapter"
    if upload not in ("merged", "adapter"):
        raise HubError(f"hub.upload must be auto, merged or adapter, not {upload!r}")
    if upload == "merged" and not merged:
        bins = [p.name for p in model_dir.glob("*") if p.suffix in (".bin", ".pt", ".pth")]
        why = f" (only {bins}: safetensors only are uploaded)" if bins else ""
        raise HubError(f"{model_dir}: no merged safetensors weights{why}")
    if upload == "adapter" and not adapter:
        raise HubError(f"{model_dir}/adapter: no LoRA adapter to upload (hub.upload=merged?)")
    return upload


def stage(run_dir: str | Path, conf: HubConf, dest: str | Path) -> list[str]:
    """Write into ``dest`` (created; must not exist) exactly what a push of ``run_dir`` uploads;
    return the repo paths, sorted."""
    from omegaconf import OmegaConf

    from vin_ocr.hub.card import render_model_card

    run, dest = Path(run_dir), Path(dest)
    if not is_finished(run):
        raise HubError(f"{run}: not a finished run folder (no {RUN_FILE}); nothing to push")
    model_dir = run / MODEL_DIR
    kind = _upload_kind(model_dir, conf.upload)
    dest.mkdir(parents=True)
    for path in sorted(model_dir.rglob("*")):
        rel = path.relative_to(model_dir)
        in_adapter = rel.parts[0] == ADAPTER_DIR
        if not path.is_file() or not _matches(path.name, MODEL_FILES):
            continue
        if in_adapter and (kind != "adapter" or path.name == "README.md"):
            continue
        if not in_adapter and kind == "adapter" and path.name.startswith("model"):
            continue  # merged weights (and their shard index) stay home
        _copy(path, dest / MODEL_DIR / rel)
    for path in sorted((run / EVAL_DIR).rglob("*")):
        if path.is_file() and _matches(path.name, EVAL_FILES):
            _copy(path, dest / path.relative_to(run))
    info = read_info(run)
    info["hub"] = {"repo_id": conf.repo_id, "upload": kind}
    (dest / RUN_FILE).write_text(json.dumps(scrub(info), indent=1))
    cfg = None
    if (run / CONFIG_FILE).is_file():
        cfg = OmegaConf.create(scrub(OmegaConf.to_container(OmegaConf.load(run / CONFIG_FILE))))
        (dest / CONFIG_FILE).write_text(OmegaConf.to_yaml(cfg))
    card = render_model_card(info, run.name, cfg, repo_id=conf.repo_id)
    (dest / CARD_FILE).write_text(card)
    return sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def hub_conf(values: Any) -> HubConf:
    """``values`` (a ``hub`` config, dict or :class:`HubConf`) checked against :class:`HubConf`:
    an unknown key or a wrong type raises naming it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(values, HubConf):
        return values
    try:
        merged = OmegaConf.merge(OmegaConf.structured(HubConf), values)
    except OmegaConfBaseException as err:
        raise HubError(f"hub config: {err}") from err
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def check_repo_id(repo_id: str | None) -> str:
    """``repo_id`` if it is a valid ``org/name`` Hub id, else :class:`HubError` saying so."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not repo_id:
        raise HubError("hub.push=true needs hub.repo_id=org/name (or hub.dry_run=true to stage)")
    try:
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1:
            raise HFValidationError("expected one '/'")
    except HFValidationError as err:
        raise HubError(f"hub.repo_id must be org/name, not {repo_id!r} ({err})") from None
    return repo_id


def check_push(values: Any) -> HubConf:
    """The checks a push needs, made before any expensive work (a training run, a merge): the
    ``hub`` keys, and for a real push (not a dry run) a valid ``hub.repo_id`` and a token."""
    conf = hub_conf(values)
    if conf.push and not conf.dry_run:
        check_repo_id(conf.repo_id)
        from huggingface_hub import get_token

        if not get_token():
            raise HubError(
                "hub.push=true but no Hugging Face token: set HF_TOKEN or run `hf auth login` "
                "first (hub.dry_run=true stages the upload without a token)"
            )
    return conf


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def push_run(run_dir: str | Path, conf: Any, api: Any = None) -> PushResult | None:
    """Stage ``run_dir`` and push it to ``conf.repo_id`` in one commit (``conf.dry_run``: stage
    only). ``api``: an ``HfApi``-like object (tests inject one); default ``HfApi(token=...)``.
    Returns None on processes other than the main one."""
    conf = hub_conf(conf)
    if not _is_main_process():
        return None
    run = Path(run_dir)
    if conf.dry_run:
        out = Path(conf.staging_dir) if conf.staging_dir else run / STAGING_DIR
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp_{out.name}_", dir=out.parent))
        try:
            files = stage(run, conf, tmp / "stage")
            replace_dir(tmp / "stage", out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        target = conf.repo_id or "(no hub.repo_id set)"
        print(f"hub dry run: the folder that would be uploaded to {target} is {out}")
        log.info("hub dry run: %d files in %s: %s", len(files), out, ", ".join(files))
        return PushResult(repo_id=conf.repo_id, files=files, staged=out)
    check_repo_id(conf.repo_id)
    if api is None:
        from huggingface_hub import HfApi, get_token

        token = get_token()
        if not token:
            raise HubError(
                "no Hugging Face token: set HF_TOKEN or run `hf auth login`, then push again "
                f"(the run folder {run} is intact; hub.dry_run=true stages without a token)"
            )
        api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as folder:
        files = stage(run, conf, Path(folder) / "stage")
        return _commit(api, Path(folder) / "stage", files, conf, run)


def _commit(api: Any, folder: Path, files: list[str], conf: HubConf, run: Path) -> PushResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    repo = check_repo_id(conf.repo_id)
    intact = f"the run folder {run} is intact"
    try:
        api.create_repo(repo, private=conf.private, exist_ok=True, repo_type="model")
        remote = [f for f in api.list_repo_files(repo, repo_type="model") if f != ".gitattributes"]
        if remote and not conf.overwrite:
            _check_ours(api, repo, remote, run)
        deleted = sorted(set(remote) - set(files))
        operations: list[Any] = [
            CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(folder / f)) for f in files
        ]
        operations += [CommitOperationDelete(path_in_repo=f) for f in deleted]
        info = api.create_commit(
            repo_id=repo,
            operations=operations,
            commit_message=conf.commit_message or f"vin-ocr: {run.name}",
            repo_type="model",
        )
    except HubError:
        raise
    except Exception as err:  # network, permissions, rate limits: say so, keep the run
        raise HubError(f"push to {repo} failed ({type(err).__name__}: {err}); {intact}") from err
    url = getattr(info, "commit_url", None) or str(info)
    log.info("pushed %d files to %s (%s)", len(files), repo, url)
    print(f"pushed {run} to https://huggingface.co/{repo}")
    return PushResult(repo_id=repo, files=files, commit_url=url, deleted=deleted)


def _check_ours(api: Any, repo: str, remote: list[str], run: Path) -> None:
    """Refuse a repo whose content vin-ocr did not write, or that holds another model."""
    refuse = f"{repo} already holds other content"
    advice = (
        f"; push to another hub.repo_id or set hub.overwrite=true (the run folder {run} is intact)"
    )
    if CARD_FILE not in remote or RUN_FILE not in remote:
        raise HubError(f"{refuse} (no vin-ocr model card and run.json){advice}")
    readme = Path(api.hf_hub_download(repo, CARD_FILE, repo_type="model")).read_text()
    if MARKER not in readme:
        raise HubError(f"{refuse} (its README.md has no {MARKER} tag){advice}")
    theirs = json.loads(Path(api.hf_hub_download(repo, RUN_FILE, repo_type="model")).read_text())
    mine = read_info(run)
    for key in ("family", "checkpoint"):
        a = theirs.get(key, theirs.get("model", {}).get(key))
        b = mine.get(key, mine.get("model", {}).get(key))
        if a != b:
            raise HubError(f"{repo} holds another model ({key} {a!r}, this run {b!r}){advice}")
