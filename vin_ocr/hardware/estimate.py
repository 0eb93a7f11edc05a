"""Will this model train here? Memory estimate from parameter counts, dtypes and the batch.

The memory model and its constants are in :mod:`vin_ocr.hardware.memory`; here it is computed
for a :class:`~vin_ocr.models.spec.ModelSpec` (the family's, via the registry), with the ways out
of a run that does not fit, the preflight and ``model=auto``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from vin_ocr.hardware.catalog import ModelSpec, Tower, model_spec
from vin_ocr.hardware.memory import (
    ACTIVATION_FACTOR,
    BYTES,
    DECODER_H,
    DECODER_I,
    EAGER_SCORES,
    ENCODER_H,
    ENCODER_I,
    FITS_BELOW,
    GIB,
    LOGIT_EXTRA_BYTES,
    MEASURED_ACTIVATION_FACTOR,
    METHODS,
    NF4_BYTES,
    OPTIMIZER_BYTES,
    OVERHEAD_GB,
    SAM_SCORES,
    TIGHT_BELOW,
    Estimate,
    PreflightError,
    TrainingSpec,
)
from vin_ocr.hardware.resolve import Hardware

__all__ = [
    "ACTIVATION_FACTOR", "BYTES", "FITS_BELOW", "GIB", "METHODS", "NF4_BYTES",
    "OPTIMIZER_BYTES", "OVERHEAD_GB", "TIGHT_BELOW", "Estimate", "PreflightError",
    "TrainingSpec", "activation_bytes", "auto_order", "estimate", "load_model_cfg", "pick_auto",
    "preflight", "tower_tokens", "trainable_params",
]  # fmt: skip


def auto_order() -> tuple[str, ...]:
    """``model=auto`` candidates, strongest first (each family's ``FamilyFacts.auto``)."""
    from vin_ocr.models.registry import auto_order as registered_order

    return registered_order()


def __getattr__(name: str) -> Any:
    if name == "AUTO_ORDER":  # computed from the registry on first use
        return auto_order()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tower_tokens(spec: ModelSpec, image_size: int, max_length: int) -> dict[str, int]:
    """Tokens per sample that each tower processes for one image of side ``image_size`` (the
    family's own count, ``ModelSpec.tokens``; measured towers: the image width)."""
    if spec.tokens is not None:
        return spec.tokens(image_size, max_length)
    return {tower.name: image_size for tower in spec.towers}


def _tower_bytes(
    tower: Tower, tokens: int, batch: int, nbytes: int, attn: str, ckpt: bool
) -> float:
    if tower.kind == "measured":  # scales with batch and image width (tokens = width here)
        per_sample = tower.bytes_per_sample_fp32 * MEASURED_ACTIVATION_FACTOR / ACTIVATION_FACTOR
        return per_sample * batch * nbytes / 4 * tokens / tower.measured_width
    coef_h, coef_i = (DECODER_H, DECODER_I) if tower.kind == "decoder" else (ENCODER_H, ENCODER_I)
    per_layer = batch * tokens * (coef_h * tower.hidden + coef_i * tower.intermediate) * nbytes
    scores_per_layer = [0.0] * tower.layers
    if tower.eager_only or attn == "eager":
        factor = SAM_SCORES if tower.eager_only else EAGER_SCORES
        if tower.window:
            side = math.ceil(math.sqrt(tokens) / tower.window) * tower.window
            windowed = (side // tower.window) ** 2 * tower.window**4
            scores_per_layer = [windowed] * (tower.layers - tower.global_layers)
            scores_per_layer += [tokens**2] * tower.global_layers
        else:
            scores_per_layer = [tokens**2] * tower.layers
        scores_per_layer = [batch * tower.heads * n * nbytes * factor for n in scores_per_layer]
    if ckpt:
        return (
            batch * tokens * tower.hidden * nbytes * tower.layers
            + per_layer
            + max(scores_per_layer, default=0)
        )
    return per_layer * tower.layers + sum(scores_per_layer)


def trainable_params(spec: ModelSpec, training: TrainingSpec) -> int:
    if training.method == "full":
        return spec.params
    return spec.lora_params(training.lora_r, training.lora_target_modules)


def _tower_trainable(spec: ModelSpec, training: TrainingSpec) -> list[bool]:
    if training.method == "full":
        return [True] * len(spec.towers)
    hit = [name for name, _, _ in spec.linears if spec.targets(name, training.lora_target_modules)]
    return [
        (not tower.prefix and bool(hit)) or any(n.startswith(tower.prefix + ".") for n in hit)
        for tower in spec.towers
    ]


def activation_bytes(
    spec: ModelSpec, training: TrainingSpec, dtype: str, attn: str = "sdpa"
) -> float:
    """Bytes of activations kept for backward at the configured batch and image size."""
    nbytes = BYTES[dtype]
    image_size = training.image_size or spec.default_image_size
    tokens = tower_tokens(spec, image_size, training.max_length)
    trainable = _tower_trainable(spec, training)
    total = 0.0
    for i, tower in enumerate(spec.towers):
        if not any(trainable[: i + 1]):  # no gradient flows through this tower
            continue
        total += _tower_bytes(
            tower,
            tokens.get(tower.name, 1),
            training.batch_size,
            nbytes,
            attn,
            training.gradient_checkpointing,
        )
    if spec.vocab_size:
        total += (
            training.batch_size
            * tokens.get("language", 0)
            * spec.vocab_size
            * (nbytes + LOGIT_EXTRA_BYTES)
        )
    return total * ACTIVATION_FACTOR


def estimate(
    spec: ModelSpec,
    training: TrainingSpec,
    hardware: Hardware,
    *,
    ways_out: bool = True,
    alternatives: Sequence[str] | None = None,
    spec_loader: Callable[[str], ModelSpec] | None = None,
) -> Estimate:
    """Memory needed to train ``spec`` with ``training`` on ``hardware``, and the verdict."""
    dtype = hardware.dtype
    nbytes = BYTES[dtype]
    trainable = trainable_params(spec, training)
    weights: float
    if training.method == "full":
        weights = spec.params * 4  # fp32 master weights (also under bf16/fp16 autocast)
    elif training.method == "qlora":
        quantized = spec.quantizable_params
        weights = quantized * NF4_BYTES + (spec.params - quantized) * nbytes + trainable * 4
    else:
        weights = spec.params * nbytes + trainable * 4
    blockers = []
    if training.method == "qlora" and hardware.device != "cuda":
        blockers.append("QLoRA 4-bit needs bitsandbytes on a CUDA GPU; use training=lora here")
    if spec.needs_cuda and hardware.device != "cuda":
        blockers.append(spec.needs_cuda)
    image_size = training.image_size or spec.default_image_size
    est = Estimate(
        model=spec.name,
        method=training.method,
        device=hardware.device,
        dtype=dtype,
        params=spec.params,
        trainable=trainable,
        param_source=spec.source,
        download_gb=spec.params * BYTES[spec.checkpoint_dtype] / GIB,
        weights_gb=weights / GIB,
        gradients_gb=trainable * 4 / GIB,
        optimizer_gb=trainable * OPTIMIZER_BYTES[training.optimizer] / GIB,
        activations_gb=activation_bytes(spec, training, dtype, hardware.attn_implementation) / GIB,
        overhead_gb=OVERHEAD_GB.get(hardware.device, 0.5),
        available_gb=hardware.memory_gb,
        batch_size=training.batch_size,
        image_size=image_size,
        blockers=tuple(blockers),
    )
    if ways_out and (est.verdict != "fits" or blockers):
        alternatives = auto_order() if alternatives is None else alternatives
        found = _ways_out(est, spec, training, hardware, alternatives, spec_loader)
        est = dataclasses.replace(est, ways_out=tuple(found))
    return est


def _ways_out(
    est: Estimate,
    spec: ModelSpec,
    training: TrainingSpec,
    hardware: Hardware,
    alternatives: Sequence[str],
    spec_loader: Callable[[str], ModelSpec] | None,
) -> list[str]:
    """Concrete changes that make the run smaller, each with its own estimate. With a blocker
    (QLoRA or a CUDA-only model off CUDA) only changes that remove it are offered: a smaller
    batch or image cannot help there."""
    replace = dataclasses.replace
    if est.blockers:
        return _unblocking(spec, training, hardware, alternatives, spec_loader)
    options: list[tuple[str, TrainingSpec]] = []
    if training.method != "qlora" and hardware.device == "cuda" and spec.qlora:
        options.append(("QLoRA 4-bit (training=qlora)", replace(training, method="qlora")))
    if training.method == "full":
        options.append(
            ("LoRA instead of full fine-tuning (training=lora)", replace(training, method="lora"))
        )
    if not training.gradient_checkpointing:
        options.append(
            (
                "gradient checkpointing (training.gradient_checkpointing=true)",
                replace(training, gradient_checkpointing=True),
            )
        )
    if training.batch_size > 1:
        steps = training.batch_size * training.gradient_accumulation_steps
        options.append(
            (
                f"batch 1 with gradient accumulation (training.batch_size=1 "
                f"training.gradient_accumulation_steps={steps}, same effective batch)",
                replace(training, batch_size=1, gradient_accumulation_steps=steps),
            )
        )
    if spec.image_budget and est.image_size >= 256:
        smaller = est.image_size // 2
        options.append(
            (
                f"a smaller image budget (training.image_size={smaller})",
                replace(training, image_size=smaller),
            )
        )
    lines = []
    for label, changed in options:
        alt = estimate(spec, changed, hardware, ways_out=False)
        if alt.total_gb < est.total_gb and not (alt.blockers and not est.blockers):
            lines.append(f"{label}: {alt.total_gb:.1f} GiB, {alt.verdict}")
    if len(options) > 1:
        combined = training
        for _, changed in options:
            if changed.method != training.method:
                combined = replace(combined, method=changed.method)
            combined = replace(
                combined,
                gradient_checkpointing=combined.gradient_checkpointing
                or changed.gradient_checkpointing,
                batch_size=min(combined.batch_size, changed.batch_size),
                gradient_accumulation_steps=max(
                    combined.gradient_accumulation_steps, changed.gradient_accumulation_steps
                ),
                image_size=changed.image_size or combined.image_size,
            )
        alt = estimate(spec, combined, hardware, ways_out=False)
        lines.append(f"all of the above together: {alt.total_gb:.1f} GiB, {alt.verdict}")
    if spec.name in alternatives and spec_loader is not None:
        for name in alternatives[alternatives.index(spec.name) + 1 :]:
            alt = estimate(spec_loader(name), training, hardware, ways_out=False)
            if alt.ok:
                lines.append(
                    f"a smaller family (model={name}): {alt.total_gb:.1f} GiB, {alt.verdict}"
                )
                break
    return lines


def _unblocking(
    spec: ModelSpec,
    training: TrainingSpec,
    hardware: Hardware,
    alternatives: Sequence[str],
    spec_loader: Callable[[str], ModelSpec] | None,
) -> list[str]:
    lines = []
    if training.method == "qlora":
        alt = estimate(spec, dataclasses.replace(training, method="lora"), hardware, ways_out=False)
        if not alt.blockers:
            lines.append(
                f"LoRA without 4-bit (training=lora): {alt.total_gb:.1f} GiB, {alt.verdict}"
            )
    if spec.name in alternatives and spec_loader is not None:
        for name in alternatives[alternatives.index(spec.name) + 1 :]:
            alt = estimate(spec_loader(name), training, hardware, ways_out=False)
            if not alt.blockers or training.method == "qlora":
                lora = dataclasses.replace(training, method="lora")
                alt = estimate(spec_loader(name), lora, hardware, ways_out=False)
            if alt.ok:
                how = f"model={name}" + (" training=lora" if alt.method != training.method else "")
                lines.append(f"a smaller family ({how}): {alt.total_gb:.1f} GiB, {alt.verdict}")
                break
    if hardware.device != "cuda":
        lines.append("a CUDA GPU (hardware.device=cuda on a machine that has one)")
    return lines


def load_model_cfg(name: str) -> Any:
    """``configs/model/<name>.yaml`` as a DictConfig (as Hydra would compose it)."""
    from omegaconf import OmegaConf

    import vin_ocr

    path = vin_ocr.CONFIG_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model config")
    return OmegaConf.load(path)


def _spec_by_name(name: str) -> ModelSpec:
    return model_spec(load_model_cfg(name))


def preflight(
    model_cfg: Any, training_cfg: Any, hardware: Hardware, force: bool | None = None
) -> Estimate:
    """Estimate the run; raise :class:`PreflightError` when it cannot fit, unless forced.

    ``force`` defaults to ``hardware.force`` (``hardware.force=true`` on the command line).
    """
    spec = model_spec(model_cfg)
    training = TrainingSpec.from_cfg(training_cfg)
    est = estimate(spec, training, hardware, spec_loader=_spec_by_name)
    forced = hardware.force if force is None else force
    if est.blockers:  # not a memory estimate: forcing cannot make it run
        raise PreflightError(est.report())
    if not est.ok and not forced:
        raise PreflightError(est.report() + "\n(to start anyway, pass hardware.force=true)")
    return est


def pick_auto(
    training_cfg: Any,
    hardware: Hardware,
    candidates: Sequence[str] | None = None,
    spec_loader: Callable[[str], ModelSpec] = _spec_by_name,
) -> tuple[str, Estimate]:
    """``model=auto``: the strongest candidate that fits (else the first that is tight); the
    candidates default to every family's (:func:`vin_ocr.models.registry.auto_order`)."""
    training = TrainingSpec.from_cfg(training_cfg)
    candidates = auto_order() if candidates is None else candidates
    estimates = [
        (name, estimate(spec_loader(name), training, hardware, ways_out=False))
        for name in candidates
    ]
    for wanted in ("fits", "tight"):
        for name, est in estimates:
            if not est.blockers and est.verdict == wanted:
                return name, est
    summary = "; ".join(f"{n}: {e.total_gb:.1f} GiB" for n, e in estimates)
    raise PreflightError(
        f"model=auto: no candidate fits {hardware.memory_gb:.1f} GiB on {hardware.device} "
        f"({summary})"
    )
