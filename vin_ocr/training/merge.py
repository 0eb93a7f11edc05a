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

import hydra
from omegaconf import DictConfig, OmegaConf

import vin_ocr
import vin_ocr.hardware  # configure_platform() before torch is imported
from vin_ocr.config import register_configs
from vin_ocr.errors import exit_on_user_error
from vin_ocr.hub.push import HubError, check_push, push_run
from vin_ocr.run_folder import base_model_cfg, build_base, find_run, full_run
from vin_ocr.training.merge_output import (
    MergeResult,
    output_folder,
    publish_full_run,
    write_output,
)
from vin_ocr.training.merging import (
    COMBINATIONS,
    TOLERANCE,
    MergeConf,
    MergeError,
    MergeVerificationError,
    Verification,
    VerifyConf,
    check_conf,
    combine_adapters,
    compare_outputs,
    find_runs,
    merge_run_model,
    merge_verified,
    verification_samples,
    verify_merge,
)

__all__ = ["COMBINATIONS", "TOLERANCE", "MergeConf", "MergeError", "MergeResult",
           "MergeVerificationError", "Verification", "VerifyConf", "base_model_cfg", "build_base",
           "compare_outputs", "find_run", "main", "merge", "merge_run_model", "merge_verified",
           "verification_samples", "verify_merge"]  # fmt: skip


def merge(cfg: DictConfig) -> MergeResult:
    """Merge (and combine) adapters per ``cfg`` (``configs/merge.yaml``), verify, write the output
    run folder, push it when ``hub.push`` / ``hub.dry_run``."""
    from vin_ocr.hardware import resolve
    from vin_ocr.models.lora import load_adapter, quantization_config

    conf: MergeConf = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    sources = check_conf(conf)
    check_push(conf.hub)  # no repo id / no token: say so now, not after the merge
    full = full_run(conf.run) if conf.run else None
    if full is not None:
        return publish_full_run(full, conf)
    runs = find_runs(sources)
    first_run, first_adapter, info = runs[0]
    out = output_folder(conf, first_run)
    hardware = resolve(cfg.hardware)
    if conf.requantize == "4bit":  # fail now, not after the merge: CUDA + bitsandbytes only
        quantization_config("4bit", hardware.device, hardware.torch_dtype)

    family, model, processor = build_base(info, hardware, conf.base)
    peft_model = combine_adapters(load_adapter(model, first_adapter), runs, conf)
    samples = verification_samples(conf.verify.samples, conf.verify.manifest)
    merged, check = merge_verified(
        family, peft_model, samples, tolerance=conf.verify.tolerance, inplace=True
    )
    write_output(out, merged, processor, conf, runs, check, hardware, samples)
    result = MergeResult(out=out, verification=check, sources=[r for r, _, _ in runs])
    if conf.hub.push or conf.hub.dry_run:
        result.pushed = push_run(out, conf.hub)
    print(f"merged model: {out} (verified: {check.samples} samples identical)")
    return result


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR), config_name="merge", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(MergeError, HubError, out="out"):  # bad input: one line
        merge(cfg)


if __name__ == "__main__":
    register_configs()  # every Hydra schema, before main() composes
    main()
