"""Pieces shared by the two VLM families (``lfm2_vl``, ``deepseek_ocr``).

A training example is ``prompt tokens (with the image placeholders the processor expands)``
followed by ``answer tokens + end token``. The prompt is encoded by the family's processor exactly
as at inference; the answer is tokenised on its own and appended, so label positions are known
exactly (no search for where the answer starts) and only they carry a label: the prompt, the image
tokens and the padding are ``-100``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

from vin_ocr.config import CARD_KEYS
from vin_ocr.decoding.vlm import VinTokens, VlmDecoding, eos_ids, read_vins
from vin_ocr.reading import Reading, texts

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
_DTYPES = {
    **{name: torch.float32 for name in ("float32", "fp32")},
    **{name: torch.bfloat16 for name in ("bfloat16", "bf16")},
    **{name: torch.float16 for name in ("float16", "fp16")},
}
# vin_ocr.hardware.Hardware names dtypes by their short names
_DTYPES.update(fp32=torch.float32, bf16=torch.bfloat16, fp16=torch.float16)
#: Keys of a processor's output that hold images (cast to the model's dtype).
PIXEL_KEYS = ("pixel_values", "pixel_values_local")


class ModelLoadError(RuntimeError):
    """A model or processor could not be loaded; the message says which and why."""


@dataclass(frozen=True)
class Placement:
    """Where and how to run: resolved from a ``Hardware``-like object (or None: CPU)."""

    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    attn_implementation: str = "sdpa"


def load_pretrained(
    model_cls: type,
    model_type: str,
    label: str,
    s: Any,
    place: tuple[str, torch.dtype, Any],
    quant: Any,
) -> tuple[torch.nn.Module, Any]:
    """Load a family's real checkpoint (Hub id or local folder, ``s.checkpoint`` at
    ``s.revision``) as ``model_cls`` with its processor. ``place``: (device, dtype, attention
    implementation); ``quant``: a bitsandbytes config (QLoRA, CUDA) or None. A checkpoint of
    another ``model_type`` and every loading failure raise :class:`ModelLoadError` naming the
    checkpoint and the reason (``label``: the family's name for people, e.g. ``LFM2-VL``)."""
    from transformers import AutoConfig, AutoProcessor

    device, dtype, attn = place
    where = f"{s.checkpoint!r}" + (f" at revision {s.revision!r}" if s.revision else "")
    try:
        config = AutoConfig.from_pretrained(s.checkpoint, revision=s.revision)
        if config.model_type != model_type:
            raise ModelLoadError(
                f"{where} is a {config.model_type!r} model, not {model_type}: pick a {label} "
                "checkpoint"
            )
        kwargs: dict[str, Any] = {
            "revision": s.revision,
            "dtype": dtype,
            "attn_implementation": attn,
        }
        if quant is not None:
            kwargs.update(quantization_config=quant, device_map={"": torch.cuda.current_device()})
        model: torch.nn.Module = model_cls.from_pretrained(s.checkpoint, **kwargs)  # type: ignore[attr-defined]
        processor = AutoProcessor.from_pretrained(s.checkpoint, revision=s.revision)
    except ModelLoadError:
        raise
    except (OSError, ValueError, ImportError) as err:
        raise ModelLoadError(f"could not load {label} from {where}: {err}") from err
    if quant is None:
        model.to(device)
    return model, processor


def resolve_hardware(hardware: Any) -> Placement:
    """Read ``device``/``dtype``/``attn_implementation`` from any object that has them
    (``dtype`` as ``bf16``/``bfloat16``/``torch.bfloat16``, ...).

    >>> resolve_hardware(None)
    Placement(device='cpu', dtype=torch.float32, attn_implementation='sdpa')
    """
    if hardware is None:
        return Placement()
    dtype_name = str(getattr(hardware, "dtype", "float32")).removeprefix("torch.")
    if dtype_name not in _DTYPES:
        raise ValueError(f"hardware.dtype must be one of {sorted(_DTYPES)}, not {dtype_name!r}")
    return Placement(
        device=str(getattr(hardware, "device", "cpu")),
        dtype=_DTYPES[dtype_name],
        attn_implementation=str(getattr(hardware, "attn_implementation", None) or "sdpa"),
    )


def settings_from(cls: type, cfg: Any, family: str) -> Any:
    """Build the dataclass ``cls`` from a model config (dict or DictConfig); an unknown key fails
    naming the key (keys starting with ``_``, such as ``_target_``, are Hydra's and skipped, and
    so are :data:`vin_ocr.config.CARD_KEYS`, which the model card reads)."""
    if cfg is None:
        values: dict[str, Any] = {}
    elif isinstance(cfg, Mapping):
        values = dict(cfg)
    else:  # OmegaConf DictConfig
        from omegaconf import OmegaConf

        values = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    names = {f.name for f in fields(cls)}
    values = {
        k: v
        for k, v in values.items()
        if not str(k).startswith("_") and not (k in CARD_KEYS and k not in names)
    }
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"model config for family {family!r}: unknown key(s) {unknown}; known: {sorted(names)}"
        )
    return cls(**values)


def answer_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of the answer followed by the end-of-turn token (the tokenizer's eos)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token: the model could not learn to stop")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [*ids, tokenizer.eos_token_id]


def training_batch(
    prompts: Mapping[str, Any], answers: Sequence[Sequence[int]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Append each answer to its (left-padded) prompt, re-pad on the right, label the answers.

    ``prompts`` is a processor output with ``input_ids``/``attention_mask`` (left padding) and the
    image tensors, which are passed through unchanged. Any other per-token tensor of the prompt
    (same shape as ``input_ids``, e.g. ``mm_token_type_ids``) is moved with the ids; it is 0 on
    the answer and the padding.
    """
    input_ids, attention = prompts["input_ids"], prompts["attention_mask"]
    per_token = [
        k
        for k, v in prompts.items()
        if k not in ("input_ids", "attention_mask")
        and isinstance(v, torch.Tensor)
        and v.shape == input_ids.shape
    ]
    rows = []
    for i, answer in enumerate(answers):
        prompt = input_ids[i][attention[i].bool()]
        tail = torch.tensor(answer, dtype=prompt.dtype)
        rows.append((prompt, tail))
    length = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=input_ids.dtype)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=input_ids.dtype)
    mask = torch.zeros((len(rows), length), dtype=attention.dtype)
    for i, (prompt, tail) in enumerate(rows):
        n, m = len(prompt), len(tail)
        ids[i, :n], ids[i, n : n + m] = prompt, tail
        labels[i, n : n + m] = tail
        mask[i, : n + m] = 1
    batch = {k: v for k, v in prompts.items() if k not in ("input_ids", "attention_mask")}
    for key in per_token:
        batch[key] = torch.zeros((len(rows), length), dtype=prompts[key].dtype)
        for i, (prompt, _) in enumerate(rows):
            batch[key][i, : len(prompt)] = prompts[key][i][attention[i].bool()]
    batch.update(input_ids=ids, attention_mask=mask, labels=labels)
    return batch


def trim_patches(batch: Any) -> Any:
    """Cut the processor's patch padding down to the batch's longest image.

    The processor pads every image (tile) to ``max_image_tokens * 4`` patches (1024 by default)
    and the vision tower masks the padding out, so a 460 x 46 line crop (about 300 patches) pays
    for 1024. The tower reads the real patches the same without the padding
    (``pixel_attention_mask`` still marks them), at a fraction of the work. Other keys: unchanged.
    """
    mask = batch.get("pixel_attention_mask")
    if mask is None or mask.ndim != 2 or mask.shape[0] == 0:
        return batch
    n = max(int(mask.sum(dim=1).max()), 1)
    batch["pixel_values"] = batch["pixel_values"][:, :n]
    batch["pixel_attention_mask"] = mask[:, :n]
    return batch


def to_model(batch: Mapping[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    """Move tensors to the model's device and the pixel tensors to its floating dtype."""
    device = next(model.parameters()).device
    dtype = _float_dtype(model)
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device)
            if key in PIXEL_KEYS and value.is_floating_point():
                value = value.to(dtype)
        out[key] = value
    return out


def _float_dtype(model: torch.nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def causal_lm_loss(model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
    """The model's own shifted cross-entropy (mean over the labelled answer tokens), with the LM
    head computed only where a label follows instead of over the whole sequence.

    A VIN answer is about 18 of the sequence's 100-300 tokens (prompt and image tokens carry no
    label), and the head (vocabulary x hidden, 65k x 1024 for LFM2) over every position is a large
    share of a LoRA step and of its memory. ``logits_to_keep`` (a boolean mask: the model slices the
    hidden states before its head) gives the same logits at those positions, so the loss equals
    ``model(**batch).loss`` (tests/models/test_vlm_speed.py). A model whose forward has no
    ``logits_to_keep`` gets the full-sequence loss.
    """
    inputs = to_model(batch, model)
    labels = inputs.pop("labels", None)
    if labels is None:
        raise ValueError("the batch has no labels: build it with the family's collate()")
    if not accepts_logits_to_keep(model):
        out = model(**inputs, labels=labels)
        return out.loss
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX  # position t predicts token t + 1
    logits = model(**inputs, logits_to_keep=keep).logits
    return torch.nn.functional.cross_entropy(logits.float(), labels[:, 1:][keep[:, :-1]])


def accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the (unwrapped: DDP, PEFT) model's forward takes ``logits_to_keep``."""
    import inspect

    base: Any = getattr(model, "module", model)
    base = base.get_base_model() if hasattr(base, "get_base_model") else base
    return "logits_to_keep" in inspect.signature(type(base).forward).parameters


#: The question every VLM family asks of an image (its answer, the label, is the VIN alone).
PROMPT = "What is the VIN in this image? Answer with the 17 characters only."


class PromptedVlm:
    """What the VLM families share once ``_prompts(images)`` (processor output for the prompt)
    exists: the labelled batch, the causal-LM loss and the (VIN-constrained) generation of the
    answer, configured by the model config's ``decoding`` keys
    (:class:`vin_ocr.decoding.vlm.VlmDecoding`)."""

    name: str
    settings: Any
    processor: Any
    lora_targets: str  # the family's default target_modules: the language model's linears
    _vin_tokens: tuple[Any, VinTokens] | None = None

    def lora_settings(
        self, training: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None
    ) -> Any:
        """LoRA for this model (:func:`~vin_ocr.models.lora.resolve_lora`): ``training`` is
        ``training.lora``, ``model`` the model config's ``lora`` (default: this family's); the
        targets default to :attr:`lora_targets`."""
        from vin_ocr.models.lora import resolve_lora

        model = self.settings.lora if model is None else model
        return resolve_lora({"target_modules": self.lora_targets}, model, training)

    def _prompts(self, images: Sequence[Any]) -> Any:
        raise NotImplementedError

    def collate(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        tok = self._need_processor().tokenizer
        prompts = self._prompts([smp.load_image() for smp in samples])
        return training_batch(
            prompts, [answer_ids(tok, smp.vin) for smp in samples], tok.pad_token_id
        )

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return causal_lm_loss(model, batch)

    def logits(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        """The language model's logits over a collated batch (labels left out)."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**to_model(inputs, model)).logits

    def decoding(self) -> VlmDecoding:
        """The ``decoding`` keys of the model config; an unknown key fails naming it."""
        return settings_from(
            VlmDecoding, getattr(self.settings, "decoding", None), f"{self.name}.decoding"
        )

    def read(
        self,
        model: torch.nn.Module,
        images: Sequence[Any],
        crops: Sequence[bool | None] | None = None,
    ) -> list[Reading]:
        """One reading per image (whole image and the same prompt for line crops and scenes, so
        ``crops`` is not needed): text, per-character confidence and, where the check-digit
        search ran, the reading before it."""
        if not images:
            return []
        decoding = self.decoding()
        tok = self._need_processor().tokenizer
        was_training = model.training
        model.eval()
        try:
            return read_vins(
                model,
                tok,
                to_model(self._prompts(images), model),
                decoding,
                tokens=self._tokens(model, tok) if decoding.constrained else None,
                max_new_tokens=self.settings.max_new_tokens,
            )
        finally:
            model.train(was_training)

    def predict(self, model: torch.nn.Module, images: Sequence[Any]) -> list[str]:
        return texts(self.read(model, images))

    def _tokens(self, model: Any, tokenizer: Any) -> VinTokens:
        """The tokenizer's :class:`VinTokens`, built once (a pass over the whole vocabulary)."""
        ends = eos_ids(model, tokenizer)
        cached = self._vin_tokens
        if cached is None or cached[0] is not tokenizer or cached[1].eos_ids != ends:
            self._vin_tokens = cached = (tokenizer, VinTokens(tokenizer, ends))
        return cached[1]

    def _need_processor(self) -> Any:
        if self.processor is None:
            raise RuntimeError(f"{self.name}: call build() before collate()/predict()")
        return self.processor
