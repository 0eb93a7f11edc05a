"""Merge LoRA adapters into their base model, and check every merge.

::

    python -m vin_ocr.training.merge run=RUN_DIR              # the run's adapter -> RUN_DIR/merged
    python -m vin_ocr.training.merge 'adapters=[RUN_A,RUN_B]' combination=ties \\
        'weights=[1.0,0.5]' density=0.5 out=merged/ab          # several adapters, one model
    python -m vin_ocr.training.merge run=RUN_DIR hub.push=true hub.repo_id=org/name
    python -m vin_ocr.training.merge run=FULL_RUN hub.push=true hub.repo_id=org/name  # push as is

The base is rebuilt from the run's ``run.json`` (``base=`` overrides it) in the run's dtype, never
in 4 bits: a QLoRA adapter is merged into a 16-bit reload of its base (``requantize=4bit`` can
quantise the merged model again afterwards, on a CUDA machine). Several adapters are combined with
PEFT's ``add_weighted_adapter`` (linear, cat, svd, TIES, DARE, magnitude pruning).

Every merge is verified (:func:`verify_merge`, also used at the end of a training run): on a
sample batch the merged model's logits must match the adapter model's within a relative tolerance
and its VIN predictions must be identical, or :class:`MergeVerificationError` is raised and
nothing is written. The output folder is a run folder (``model/``, ``run.json``, ``README.md``,
``eval/`` of the source run), written through a temporary folder renamed when complete, so
``engine=checkpoint engine.path=OUT`` and the Hub push read it like any run.

Everything that can be checked is checked before any work or write: the ``hub`` keys (a push
needs ``hub.repo_id`` and a token), the sources (LoRA runs; one family and base), an existing
``out``. A full (non-LoRA) fine-tune has nothing to merge: with ``hub.push`` / ``hub.dry_run`` its
``model/`` is published as it is, with its card. PP-OCR LoRA runs cannot be combined (their
classifier head is trained fully, PEFT ``modules_to_save``; see docs/publishing.md). The CLI ends
such cases with one ``error:`` line and exit code 1.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

import vin_ocr
import vin_ocr.hardware  # configure_platform() before torch is imported
from vin_ocr.config import register_configs
from vin_ocr.data.sample import Sample, atomic_write_text, read_manifest
from vin_ocr.errors import UserError, check_writable, exit_on_user_error
from vin_ocr.hub.push import HubConf, HubError, check_push, push_run, replace_dir
from vin_ocr.run_folder import (
    MODEL_DIR,
    RUN_FILE,
    RunFolderError,
    base_model_cfg,
    build_base,
    find_run,
    full_run,
)

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


@dataclass
class MergeResult:
    """What :func:`merge` returns."""

    out: Path
    verification: Verification | None  # None: a full fine-tune pushed as it is (no merge)
    sources: list[Path]
    pushed: Any = None  # a vin_ocr.hub.push.PushResult when hub.push / hub.dry_run


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
        if hasattr(family, "vin_logits"):  # PP-OCR: CTC logits over blank + VIN characters
            logits = family.vin_logits(model, batch["pixel_values"].to(_device(model)))
        else:
            logits = model(**to_model(batch, model)).logits
        predictions = list(family.predict(model, [s.load_image() for s in samples]))
    finally:
        model.train(was_training)
    return logits.float().cpu(), predictions


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


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


def _check_conf(conf: MergeConf) -> list[str]:
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


# -- the CLI's function ----------------------------------------------------------------------------
def merge(cfg: DictConfig) -> MergeResult:
    """Merge (and combine) adapters per ``cfg`` (``configs/merge.yaml``), verify, write the output
    run folder, push it when ``hub.push`` / ``hub.dry_run``."""
    from vin_ocr.hardware import resolve
    from vin_ocr.models.lora import load_adapter, quantization_config

    conf: MergeConf = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    sources = _check_conf(conf)
    check_push(conf.hub)  # no repo id / no token: say so now, not after the merge
    full = full_run(conf.run) if conf.run else None
    if full is not None:
        return _publish_full_run(full, conf)
    try:
        runs = [find_run(s) for s in sources]
    except RunFolderError as err:
        raise MergeError(str(err)) from None
    _same_base(runs)
    if len(runs) > 1:
        _no_trained_modules(runs)
    first_run, first_adapter, info = runs[0]
    out = Path(conf.out) if conf.out else _default_out(conf, first_run)
    if out.exists() and not conf.overwrite:
        raise MergeError(f"{out} exists; choose another out= or set overwrite=true")
    check_writable(out, "out")
    hardware = resolve(cfg.hardware)
    if conf.requantize == "4bit":  # fail now, not after the merge: CUDA + bitsandbytes only
        quantization_config("4bit", hardware.device, hardware.torch_dtype)

    family, model, processor = build_base(info, hardware, conf.base)
    peft_model = load_adapter(model, first_adapter)
    if len(runs) > 1:
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
    samples = verification_samples(conf.verify.samples, conf.verify.manifest)
    merged, check = merge_verified(
        family, peft_model, samples, tolerance=conf.verify.tolerance, inplace=True
    )
    _write_output(out, merged, processor, conf, runs, check, hardware, samples)
    result = MergeResult(out=out, verification=check, sources=[r for r, _, _ in runs])
    if conf.hub.push or conf.hub.dry_run:
        result.pushed = push_run(out, conf.hub)
    print(f"merged model: {out} (verified: {check.samples} samples identical)")
    return result


def _publish_full_run(run: Path, conf: MergeConf) -> MergeResult:
    """A full fine-tune: nothing to merge; push (or stage) its ``model/`` as is, with its card."""
    if not (conf.hub.push or conf.hub.dry_run):
        raise MergeError(
            f"{run} is a full fine-tune (model/ holds all the weights, no LoRA adapter): there is "
            "nothing to merge. To publish it: python -m vin_ocr.training.merge "
            f"run={run} hub.push=true hub.repo_id=org/name (or hub.dry_run=true)"
        )
    if conf.out or conf.base or conf.requantize != "none":
        raise MergeError(
            f"{run} is a full fine-tune: out=, base= and requantize= apply to merges only"
        )
    pushed = push_run(run, conf.hub)
    print(f"{run}: a full fine-tune, published as it is (no merge)")
    return MergeResult(out=run, verification=None, sources=[run], pushed=pushed)


def _default_out(conf: MergeConf, first_run: Path) -> Path:
    if conf.run:
        return first_run / "merged"
    return Path("merged") / f"{first_run.name}_{conf.combination}"


def _write_output(
    out: Path,
    merged: torch.nn.Module,
    processor: Any,
    conf: MergeConf,
    runs: Sequence[tuple[Path, Path, dict[str, Any]]],
    check: Verification,
    hardware: Any,
    samples: Sequence[Sample],
) -> None:
    from vin_ocr.hub.card import write_model_card

    first_run, _, info = runs[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp_{out.name}_", dir=out.parent))
    try:
        merged.save_pretrained(tmp / MODEL_DIR)
        if processor is not None and hasattr(processor, "save_pretrained"):
            processor.save_pretrained(tmp / MODEL_DIR)
        new = dict(info)
        new["model"] = OmegaConf.to_container(base_model_cfg(info, conf.base), resolve=True)
        new["merge"] = {
            "sources": [str(r) for r, _, _ in runs],
            "combination": conf.combination if len(runs) > 1 else None,
            "weights": list(conf.weights) if conf.weights is not None else None,
            "density": conf.density,
            "base": conf.base or info["model"].get("checkpoint"),
            "verification": check.to_dict(),
        }
        if len(runs) == 1:  # the same model, merged: the run's evaluation still describes it
            for name in ("eval", "config.yaml"):
                src = first_run / name
                if src.is_dir():
                    shutil.copytree(src, tmp / name)
                elif src.is_file():
                    shutil.copy2(src, tmp / name)
        else:  # a new model: no figures until it is evaluated
            new["metrics"] = {}
        if conf.requantize == "4bit":
            new["merge"]["requantized"] = _requantize(tmp, new, hardware, samples, check)
        atomic_write_text(tmp / RUN_FILE, json.dumps(new, indent=1))
        cfg = OmegaConf.load(tmp / "config.yaml") if (tmp / "config.yaml").is_file() else None
        write_model_card(tmp, new, cfg, name=out.name)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _requantize(
    folder: Path,
    info: dict[str, Any],
    hardware: Any,
    samples: Sequence[Sample],
    check: Verification,
) -> dict[str, Any]:
    """Load the merged 16-bit model back in 4 bits, save it in ``model_4bit/``, and count the
    verification samples it still reads as the merged model did (quantisation changes outputs:
    reported, not failed)."""
    from vin_ocr.models.registry import get_family

    model_cfg = OmegaConf.create(info["model"])
    model_cfg.checkpoint = str(folder / MODEL_DIR)
    model_cfg.quantization = "4bit"
    family = get_family(info["family"], model_cfg)
    model, processor = family.build(model_cfg, hardware)
    model.save_pretrained(folder / "model_4bit")
    processor.save_pretrained(folder / "model_4bit")
    predictions = family.predict(model, [s.load_image() for s in samples])
    kept = sum(a == b for a, b in zip(predictions, check.predictions, strict=True))
    return {"folder": "model_4bit", "samples": len(samples), "predictions_kept": kept}


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR), config_name="merge", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(MergeError, HubError, out="out"):  # bad input: one line
        merge(cfg)


if __name__ == "__main__":
    register_configs()  # every Hydra schema, before main() composes
    main()
