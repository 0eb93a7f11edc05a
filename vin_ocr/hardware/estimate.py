"""Will this model train here? Memory estimate from parameter counts, dtypes and the batch.

The memory model (see docs/hardware.md for its measured error):

- weights: every parameter in the run dtype (LoRA), 4-bit NF4 for the nn.Linear weights plus the
  run dtype for the rest (QLoRA), or fp32 master weights (full fine-tuning, also under bf16/fp16
  mixed precision);
- trainable parameters (full: all; LoRA/QLoRA: the adapters, in fp32): their fp32 gradients and
  the optimiser state (AdamW: two fp32 moments = 8 bytes per trainable parameter);
- activations autograd keeps for backward, per layer and token of each tower that gradients flow
  through, plus the logits over the vocabulary; with gradient checkpointing, only each layer's
  input plus one layer's activations;
- a fixed runtime overhead (CUDA context, or the imported libraries on CPU).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vin_ocr.hardware.catalog import PP_OCR_WIDTH, ModelSpec, Tower, model_spec
from vin_ocr.hardware.resolve import Hardware

GIB = 1024**3
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
OPTIMIZER_BYTES = {"adamw": 8, "sgd": 0}  # state per trainable parameter
METHODS = ("lora", "qlora", "full")
NF4_BYTES = 0.5 + 0.127 / 8  # 4-bit weights + double-quantised block constants
#: Memory a process uses before the model: CUDA context, or torch + transformers imported (CPU,
#: measured 0.73 GiB RSS here).
OVERHEAD_GB = {"cuda": 0.6, "mps": 0.5, "cpu": 0.75}
FITS_BELOW = 0.85  # estimate / available memory below this: fits
TIGHT_BELOW = 1.0  # ... below this: tight; above: does not fit
# Elements autograd keeps per token and layer: pre-norm decoder with a gated MLP, and a ViT block.
DECODER_H, DECODER_I = 8, 4
ENCODER_H, ENCODER_I = 8, 2
EAGER_SCORES = 2  # attention scores + softmax probabilities, per head and query-key pair
SAM_SCORES = 3  # ... plus SAM's decomposed relative-position terms
LOGIT_EXTRA_BYTES = 8  # fp32 log-softmax kept for backward + its fp32 gradient
#: Peak memory per byte of the activations counted above: backward transients, autograd's extra
#: saves (LoRA paths, conv blocks) and allocator slack. Fitted on CPU peak RSS with
#: scripts/bench_preflight.py (LFM2-VL-450M LoRA: 2.3 and 2.4; PP-OCRv6 full: 1.6 and 1.7);
#: see docs/hardware.md for the held-out check.
ACTIVATION_FACTOR = 2.35
MEASURED_ACTIVATION_FACTOR = 1.6
AUTO_ORDER = ("lfm2_5_vl", "deepseek_ocr", "lfm2_vl_450m", "pp_ocr")  # strongest first


class PreflightError(RuntimeError):
    """The run does not fit this machine (message: the full estimate and the ways out)."""


@dataclass(frozen=True)
class TrainingSpec:
    """The part of a ``training`` config the preflight reads."""

    method: str = "lora"
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    optimizer: str = "adamw"
    max_length: int = 64
    image_size: int | None = None
    lora_r: int = 16
    lora_target_modules: str | tuple[str, ...] = "all-linear"

    @classmethod
    def from_cfg(cls, cfg: Any) -> TrainingSpec:
        """Read a ``training`` config (DictConfig or dict); unknown keys are left to training."""

        def get(key: str, default: Any) -> Any:
            value = cfg.get(key, default) if cfg is not None else default
            return default if value is None and key != "image_size" else value

        lora = get("lora", {}) or {}
        targets = lora.get("target_modules", "all-linear")
        spec = cls(
            method=str(get("method", "lora")).lower(),
            batch_size=int(get("batch_size", 8)),
            gradient_accumulation_steps=int(get("gradient_accumulation_steps", 1)),
            gradient_checkpointing=bool(get("gradient_checkpointing", False)),
            optimizer=str(get("optimizer", "adamw")).lower(),
            max_length=int(get("max_length", 64)),
            image_size=None if get("image_size", None) is None else int(get("image_size", 0)),
            lora_r=int(lora.get("r", 16)),
            lora_target_modules=targets if isinstance(targets, str) else tuple(targets),
        )
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"training.method={self.method!r} is not one of {', '.join(METHODS)}")
        if self.optimizer not in OPTIMIZER_BYTES:
            known = ", ".join(OPTIMIZER_BYTES)
            raise ValueError(f"training.optimizer={self.optimizer!r} is not one of {known}")
        for key in ("batch_size", "gradient_accumulation_steps", "max_length", "lora_r"):
            if getattr(self, key) < 1:
                raise ValueError(f"training.{key} must be at least 1, got {getattr(self, key)}")
        if self.image_size is not None and self.image_size < 16:
            raise ValueError(f"training.image_size must be at least 16, got {self.image_size}")


@dataclass(frozen=True)
class Estimate:
    model: str
    method: str
    device: str
    dtype: str
    params: int
    trainable: int
    param_source: str
    download_gb: float
    weights_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    overhead_gb: float
    available_gb: float
    batch_size: int
    image_size: int
    blockers: tuple[str, ...] = ()
    ways_out: tuple[str, ...] = ()

    @property
    def total_gb(self) -> float:
        parts = (self.weights_gb, self.gradients_gb, self.optimizer_gb, self.activations_gb)
        return sum(parts) + self.overhead_gb

    @property
    def verdict(self) -> str:
        ratio = self.total_gb / self.available_gb if self.available_gb > 0 else math.inf
        if ratio <= FITS_BELOW:
            return "fits"
        return "tight" if ratio <= TIGHT_BELOW else "does not fit"

    @property
    def ok(self) -> bool:
        return not self.blockers and self.verdict != "does not fit"

    @property
    def status(self) -> str:
        """The one verdict a user reads: ``cannot run`` when something other than memory stops
        the run (``blockers``), else the memory :attr:`verdict`."""
        return "cannot run" if self.blockers else self.verdict

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(total_gb=self.total_gb, verdict=self.verdict, status=self.status)
        return data

    def report(self) -> str:
        memory = "GPU memory" if self.device == "cuda" else f"{self.device} memory"
        rows = [
            ("weights", self.weights_gb),
            ("gradients", self.gradients_gb),
            ("optimizer state", self.optimizer_gb),
            (
                f"activations (batch {self.batch_size}, image {self.image_size})",
                self.activations_gb,
            ),
            ("runtime overhead", self.overhead_gb),
        ]
        lines = [
            f"Preflight: {self.model}, {self.method} on {self.device} ({self.dtype})",
            f"  parameters      {self.params:,} (source: {self.param_source})",
            f"  trainable       {self.trainable:,}",
            f"  download        {self.download_gb:.2f} GiB",
        ]
        lines += [f"  {name:<40} {gb:8.2f} GiB" for name, gb in rows]
        lines.append(f"  {'total':<40} {self.total_gb:8.2f} GiB")
        lines.append(f"  {'available ' + memory:<40} {self.available_gb:8.2f} GiB")
        if self.blockers:  # memory is not the problem: say what is, and nothing else
            lines.append(f"  verdict: CANNOT RUN (memory alone would be {self.verdict})")
            lines += [f"  why: {b}" for b in self.blockers]
        else:
            lines.append(f"  verdict: {self.verdict.upper()}")
        if self.ways_out:
            lines.append("  ways out:")
            lines += [f"    - {w}" for w in self.ways_out]
        return "\n".join(lines)


def tower_tokens(spec: ModelSpec, image_size: int, max_length: int) -> dict[str, int]:
    """Tokens per sample that each tower processes for one image of side ``image_size``."""
    s = image_size
    if spec.family == "lfm2_vl":
        patches = min((s // 16) ** 2, spec.max_patches or (s // 16) ** 2)
        return {"vision": patches, "language": patches // 4 + max_length}
    if spec.family == "deepseek_ocr2":
        queries = math.ceil(s / 64) ** 2
        return {
            "sam": (s // 16) ** 2,
            "qwen2_encoder": 2 * queries,
            "language": queries + 1 + max_length,
        }
    if spec.family == "deepseek_ocr_v1":
        side = math.ceil(s / 64)
        return {"sam": (s // 16) ** 2, "clip": side**2 + 1, "language": side * (side + 1) + 1}
    return {tower.name: s for tower in spec.towers}  # measured towers: image width


def _tower_bytes(
    tower: Tower, tokens: int, batch: int, nbytes: int, attn: str, ckpt: bool
) -> float:
    if tower.kind == "measured":  # scales with batch and image width (tokens = width here)
        per_sample = tower.bytes_per_sample_fp32 * MEASURED_ACTIVATION_FACTOR / ACTIVATION_FACTOR
        return per_sample * batch * nbytes / 4 * tokens / PP_OCR_WIDTH
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
    alternatives: Sequence[str] = AUTO_ORDER,
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
    if training.method != "qlora" and hardware.device == "cuda" and spec.family != "pp_ocr":
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
    if spec.family != "pp_ocr" and est.image_size >= 256:
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
    candidates: Sequence[str] = AUTO_ORDER,
    spec_loader: Callable[[str], ModelSpec] = _spec_by_name,
) -> tuple[str, Estimate]:
    """``model=auto``: the strongest candidate that fits (else the first that is tight)."""
    training = TrainingSpec.from_cfg(training_cfg)
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
