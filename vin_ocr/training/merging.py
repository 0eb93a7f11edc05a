"""Merging LoRA adapters into their base, and checking every merge: the library behind
``python -m vin_ocr.training.merge`` (:mod:`vin_ocr.training.merge`) and the end of a training run.

Every merge is verified (:func:`verify_merge`): on a sample batch the merged model's logits must
match the adapter model's within a relative tolerance and its VIN predictions must be identical,
or :class:`MergeVerificationError` is raised and nothing is written. Several adapters are combined
with PEFT's ``add_weighted_adapter`` (:func:`combine_adapters`).
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

import vin_ocr
from vin_ocr.data.sample import Sample, read_manifest
from vin_ocr.errors import UserError
from vin_ocr.hub.push import HubConf
from vin_ocr.models.base import Logits
from vin_ocr.models.registry import supports
from vin_ocr.run_folder import RunFolderError, build_base, find_run

log = logging.getLogger(__name__)

#: PEFT ``add_weighted_adapter`` combination types.
COMBINATIONS = (
    "linear",
    "cat",
    "svd",
    "ties",
    "ties_svd",
    "dare_linear",
    "dare_ties",
    "dare_linear_svd",
    "dare_ties_svd",
    "magnitude_prune",
    "magnitude_prune_svd",
)
#: Default relative tolerance (max |merged - adapter| / max |adapter| over the logits) per dtype.
TOLERANCE = {torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 3e-2}
COMBINED = "combined"


class MergeError(UserError):
    """A merge that cannot be done as asked; the message says why and what to do."""


class MergeVerificationError(MergeError):
    """The merged model does not reproduce the adapter model: the merge is not written."""


@dataclass
class VerifyConf:
    """``verify.*``: the check every merge passes."""

    samples: int = 8  # line crops of the manifest below fed to both models
    manifest: str | None = None  # null: the bundled samples (data/samples/manifest.jsonl)
    tolerance: float | None = None  # relative logit tolerance; null: TOLERANCE of the dtype


@dataclass
class MergeConf:
    """``configs/merge.yaml``; a mistyped key fails at start-up naming it."""

    run: str | None = None  # a training run folder: its model/adapter on its base
    adapters: list[str] = field(default_factory=list)  # run folders or adapter folders to combine
    combination: str = "linear"  # see COMBINATIONS (several adapters only)
    weights: list[float] | None = None  # one per adapter; null: 1.0 each
    density: float | None = None  # TIES / DARE / magnitude pruning: share of each update kept
    majority_sign_method: str = "total"  # TIES: total | frequency
    seed: int = 0  # DARE drops entries at random
    base: str | None = None  # base model (Hub id or folder) instead of the run's model.checkpoint
    requantize: str = "none"  # none | 4bit: also write model_4bit/ (CUDA + bitsandbytes)
    out: str | None = None  # null: RUN/merged (run=) or merged/<first adapter's run name>
    overwrite: bool = False  # replace an existing output folder
    verify: VerifyConf = field(default_factory=VerifyConf)
    hardware: Any = None
    hub: HubConf = field(default_factory=HubConf)


@dataclass
class Verification:
    """What :func:`verify_merge` measured (``run.json``'s ``merge`` entry keeps it)."""

    samples: int
    max_abs_diff: float
    relative_diff: float
    tolerance: float
    predictions_identical: bool
    predictions: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- verification ----------------------------------------------------------------------------------
def verification_samples(n: int = 8, manifest: str | Path | None = None) -> list[Sample]:
    """The first ``n`` line crops of ``manifest`` (default: the bundled samples)."""
    path = Path(manifest) if manifest else vin_ocr.SAMPLES_DIR / "manifest.jsonl"
    crops = [s for s in read_manifest(path) if s.crop is not False]
    if not crops:
        raise MergeError(f"{path}: no line crops to verify the merge on")
    return crops[:n]


@torch.no_grad()
def _outputs(family: Any, model: Any, samples: Sequence[Sample]) -> tuple[torch.Tensor, list[str]]:
    """Logits on the samples' training batch and the VIN predictions on their images."""
    from vin_ocr.models.vlm import to_model

    was_training = model.training
    model.eval()
    try:
        batch = family.collate(samples)
        if supports(family, Logits):  # e.g. PP-OCR: CTC logits over blank + VIN characters
            logits = family.logits(model, batch)
        else:
            logits = model(**to_model(batch, model)).logits
        predictions = list(family.predict(model, [s.load_image() for s in samples]))
    finally:
        model.train(was_training)
    return logits.float().cpu(), predictions


def compare_outputs(
    reference: tuple[torch.Tensor, list[str]],
    merged: tuple[torch.Tensor, list[str]],
    tolerance: float,
) -> Verification:
    """Compare (logits, predictions) of the adapter model and the merged model; raise
    :class:`MergeVerificationError` unless logits agree within ``tolerance`` (relative to the
    largest reference logit) and every prediction is identical."""
    (ref, ref_pred), (got, got_pred) = reference, merged
    if ref.shape != got.shape:
        raise MergeVerificationError(f"merged logits {tuple(got.shape)} != {tuple(ref.shape)}")
    diff = float((ref - got).abs().max())
    relative = diff / max(float(ref.abs().max()), 1e-12)
    check = Verification(
        samples=len(ref_pred),
        max_abs_diff=diff,
        relative_diff=relative,
        tolerance=tolerance,
        predictions_identical=ref_pred == got_pred,
        predictions=got_pred,
    )
    problems = []
    if not relative <= tolerance:  # also catches NaN
        problems.append(f"logits differ by {relative:.3g} (relative) > tolerance {tolerance:g}")
    if ref_pred != got_pred:
        i = next(i for i, (a, b) in enumerate(zip(ref_pred, got_pred, strict=True)) if a != b)
        problems.append(
            f"predictions differ (sample {i}: adapter {ref_pred[i]!r}, merged {got_pred[i]!r})"
        )
    if problems:
        raise MergeVerificationError(
            f"merge verification failed on {len(ref_pred)} samples: {'; '.join(problems)}; "
            "nothing was written"
        )
    return check


def verify_merge(
    family: Any,
    adapter_model: Any,
    merged_model: Any,
    samples: Sequence[Sample],
    tolerance: float | None = None,
) -> Verification:
    """Check ``merged_model`` against ``adapter_model`` on ``samples`` (see
    :func:`compare_outputs`); ``tolerance`` None: :data:`TOLERANCE` of the models' dtype."""
    reference = _outputs(family, adapter_model, samples)
    return compare_outputs(
        reference, _outputs(family, merged_model, samples), _tol(merged_model, tolerance)
    )


def _tol(model: Any, tolerance: float | None) -> float:
    if tolerance is not None:
        return float(tolerance)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return TOLERANCE.get(dtype, 1e-2)


def merge_verified(
    family: Any,
    peft_model: Any,
    samples: Sequence[Sample] | None = None,
    *,
    tolerance: float | None = None,
    base_loader: Callable[[], Any] | None = None,
    inplace: bool = False,
) -> tuple[torch.nn.Module, Verification]:
    """Merge the active adapter of ``peft_model`` into its base and verify the merge.

    A 4-bit base (QLoRA) is never merged into: ``base_loader()`` must return the base rebuilt in
    16 bits, the adapter is moved onto it, and the merge is verified against that 16-bit adapter
    model. Otherwise the merge happens on a copy (``inplace=False``) so ``peft_model`` stays usable.
    """
    from vin_ocr.models.lora import is_quantized, load_adapter, merge_lora

    samples = list(samples) if samples is not None else verification_samples()
    if is_quantized(peft_model):
        if base_loader is None:
            raise MergeError(
                "the adapter sits on a 4-bit base: merging needs the base reloaded in 16 bits "
                "(pass base_loader, or run python -m vin_ocr.training.merge run=RUN_DIR)"
            )
        with tempfile.TemporaryDirectory() as tmp:
            peft_model.save_pretrained(tmp)
            peft_model = load_adapter(base_loader(), tmp)
    elif not inplace:
        peft_model = copy.deepcopy(peft_model)
    reference = _outputs(family, peft_model, samples)
    merged = merge_lora(peft_model)
    check = compare_outputs(reference, _outputs(family, merged, samples), _tol(merged, tolerance))
    log.info(
        "merge verified on %d samples: max |diff| %.3g (relative %.3g <= %g), same predictions",
        check.samples, check.max_abs_diff, check.relative_diff, check.tolerance,
    )  # fmt: skip
    return merged, check


def merge_run_model(
    family: Any, peft_model: Any, model_cfg: Any, hardware: Any, seed: int, run_dir: Path
) -> tuple[torch.nn.Module | None, dict[str, Any]]:
    """The end of a training run (``training.merge=true``): the verified merge of the trained
    adapter (a 4-bit base rebuilt in 16 bits from ``model_cfg``) and what ``run.json`` records.
    A failed verification does not lose the run: (None, the error) and ``model/`` keeps the
    adapter only."""
    info = {"family": model_cfg.family, "model": OmegaConf.to_container(model_cfg), "seed": seed}
    record: dict[str, Any] = {"sources": [str(run_dir)], "base": model_cfg.get("checkpoint")}
    try:
        merged, check = merge_verified(
            family, peft_model, base_loader=lambda: build_base(info, hardware)[1]
        )
    except MergeVerificationError as err:
        log.error("%s; model/ keeps the adapter only (model/adapter/)", err)
        return None, {**record, "error": str(err)}
    return merged, {**record, "verification": check.to_dict()}


# -- the adapters of runs (the run folder itself: vin_ocr.run_folder) -----------------------------
def _base_name(info: dict[str, Any]) -> str:
    tiny = " (tiny random)" if info["model"].get("tiny") else ""
    return f"{info['family']} {info['model'].get('checkpoint')}{tiny}"


def _same_base(runs: Sequence[tuple[Path, Path, dict[str, Any]]]) -> None:
    first, _, info = runs[0]
    key = (info["family"], info["model"].get("checkpoint"), info["model"].get("tiny"))
    for run, _, other in runs[1:]:
        theirs = (other["family"], other["model"].get("checkpoint"), other["model"].get("tiny"))
        if theirs != key:
            what = "model families" if theirs[0] != key[0] else "base models"
            raise MergeError(
                f"adapters of different {what} cannot be combined: {first} is "
                f"{_base_name(info)}, {run} is {_base_name(other)}; combine runs of one base"
            )


def _no_trained_modules(runs: Sequence[tuple[Path, Path, dict[str, Any]]]) -> None:
    """Refuse to combine adapters that carry fully trained modules (PEFT ``modules_to_save``,
    e.g. PP-OCR's classifier head): ``add_weighted_adapter`` cannot weight them, and averaging
    independently trained heads has no meaning."""
    for run, adapter, _ in runs:
        config = json.loads((adapter / "adapter_config.json").read_text())
        if config.get("modules_to_save"):
            raise MergeError(
                f"{run}: its adapter also trains {config['modules_to_save']} fully (PEFT "
                "modules_to_save, as every PP-OCR LoRA run does for its VIN head); such adapters "
                "cannot be combined (PEFT's add_weighted_adapter refuses them and two separately "
                "trained heads cannot be averaged). Merge each run alone (run=RUN), or train one "
                "run on both data sets"
            )


def find_runs(sources: Sequence[str]) -> list[tuple[Path, Path, dict[str, Any]]]:
    """(run folder, adapter folder, run.json) of each source, refused unless they share one base
    and, when several, carry no fully trained modules."""
    try:
        runs = [find_run(s) for s in sources]
    except RunFolderError as err:
        raise MergeError(str(err)) from None
    _same_base(runs)
    if len(runs) > 1:
        _no_trained_modules(runs)
    return runs


def combine_adapters(
    peft_model: Any, runs: Sequence[tuple[Path, Path, dict[str, Any]]], conf: MergeConf
) -> Any:
    """Load the other runs' adapters beside the first and replace them all by their weighted
    combination (``conf.combination``); one run: ``peft_model`` as it is."""
    from vin_ocr.models.lora import load_adapter

    if len(runs) < 2:
        return peft_model
    names = ["default"]
    for i, (_, adapter, _) in enumerate(runs[1:], start=1):
        names.append(f"adapter_{i}")
        load_adapter(peft_model, adapter, adapter_name=names[-1])
    torch.manual_seed(conf.seed)  # DARE's random drops
    peft_model.add_weighted_adapter(
        names,
        list(conf.weights) if conf.weights is not None else [1.0] * len(names),
        COMBINED,
        combination_type=conf.combination,
        density=conf.density,
        majority_sign_method=conf.majority_sign_method,
    )
    peft_model.set_adapter(COMBINED)
    for name in names:
        peft_model.delete_adapter(name)
    return peft_model


def check_conf(conf: MergeConf) -> list[str]:
    sources = [conf.run] if conf.run else list(conf.adapters)
    if bool(conf.run) == bool(conf.adapters):
        raise MergeError("give either run=RUN_DIR or adapters=[A,B,...], not both or neither")
    if len(sources) > 1:
        if conf.combination not in COMBINATIONS:
            raise MergeError(f"combination={conf.combination!r}; one of {', '.join(COMBINATIONS)}")
        if conf.weights is not None and len(conf.weights) != len(sources):
            raise MergeError(f"{len(sources)} adapters but {len(conf.weights)} weights")
        needs_density = conf.combination.startswith(("ties", "dare", "magnitude"))
        if needs_density and not (conf.density is not None and 0 < conf.density <= 1):
            raise MergeError(f"combination={conf.combination} needs density in (0, 1]")
    if conf.requantize not in ("none", "4bit"):
        raise MergeError(f"requantize must be none or 4bit, not {conf.requantize!r}")
    return sources
