"""Training checkpoints (``run_dir/checkpoints/step_NNNNNN``): written whole or not at all,
checked before a resume, pruned to the newest few.

A checkpoint holds the model or adapter, the optimiser, the scheduler, every process's RNG state
(``Accelerator.save_state``), the best model so far (``best_model.safetensors``) and
``trainer_state.json`` (step, best step and scores, history, the size of every file), written
last: a folder is written under a hidden temporary name and renamed when complete, so a folder
with a final name is always whole. ``resume="auto"`` continues from the newest one whose files are
intact (:func:`find_resume`).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vin_ocr.data.sample import atomic_write_text
from vin_ocr.run_folder import CHECKPOINTS_DIR

if TYPE_CHECKING:
    from accelerate import Accelerator

log = logging.getLogger(__name__)

CHECKPOINTS = CHECKPOINTS_DIR
STATE_FILE = "trainer_state.json"
BEST_FILE = "best_model.safetensors"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders with a state file, oldest first (temporary folders never have one)."""
    root = Path(run_dir) / CHECKPOINTS
    return sorted(p for p in root.glob("step_*") if (p / STATE_FILE).is_file())


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, or None (temporary folders are never complete)."""
    done = complete_checkpoints(run_dir)
    return done[-1] if done else None


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why ``ckpt`` cannot be resumed (a missing or truncated file, an unreadable state), or None.

    Each file must have the size recorded in ``trainer_state.json`` when it was written, and each
    ``.safetensors`` file a readable header."""
    try:
        state = json.loads((ckpt / STATE_FILE).read_text())
    except (OSError, ValueError) as err:
        return f"{STATE_FILE} unreadable ({err})"
    for name, size in (state.get("files") or {}).items():
        f = ckpt / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, {size} were written (truncated?)"
    for f in ckpt.rglob("*.safetensors"):
        from safetensors import safe_open

        try:
            with safe_open(str(f), framework="pt") as st:
                st.keys()
        except Exception as err:  # safetensors raises its own error type
            return f"{f.relative_to(ckpt)} is not readable ({err})"
    return None


def find_resume(run_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint a ``resume`` setting continues from (None: start afresh).

    ``auto``: the newest intact checkpoint of ``run_dir``; a damaged newer one is skipped with a
    warning naming it. A path: that checkpoint, which must be intact."""
    if resume in ("none", "", None):
        return None
    if resume != "auto":
        path = Path(resume)
        if not (path / STATE_FILE).is_file():
            raise FileNotFoundError(f"{path}: not a complete checkpoint (no {STATE_FILE})")
        problem = checkpoint_problem(path)
        if problem:
            raise ValueError(f"checkpoint {path} is damaged: {problem}")
        return path
    done = complete_checkpoints(run_dir)
    damaged: list[tuple[Path, str]] = []
    for ckpt in reversed(done):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            for bad, why in damaged:
                log.warning("resume=auto: skipping damaged checkpoint %s (%s)", bad, why)
            if damaged:
                log.warning("resume=auto: resuming from the previous intact one, %s", ckpt.name)
            return ckpt
        damaged.append((ckpt, problem))
    if damaged:
        listed = "; ".join(f"{p.name}: {why}" for p, why in damaged)
        raise ValueError(
            f"resume=auto: no intact checkpoint in {Path(run_dir) / CHECKPOINTS} ({listed}); "
            "set overwrite=true to train again from the start"
        )
    return None


def save_checkpoint(
    accelerator: Accelerator,
    run_dir: Path,
    step: int,
    state: dict,
    best_weights: dict[str, torch.Tensor] | None = None,
) -> Path:
    root = run_dir / CHECKPOINTS
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if best_weights is not None:
            from safetensors.torch import save_file

            save_file(best_weights, str(tmp / BEST_FILE))
        files = {
            p.relative_to(tmp).as_posix(): p.stat().st_size for p in tmp.rglob("*") if p.is_file()
        }
        # the state file is written last: a folder without it is never taken for complete
        atomic_write_text(tmp / STATE_FILE, json.dumps({**state, "files": files}, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    accelerator.wait_for_everyone()
    return final


def prune(run_dir: Path, keep: int) -> None:
    done = sorted(p for p in (run_dir / CHECKPOINTS).glob("step_*") if (p / STATE_FILE).is_file())
    for old in done[: max(len(done) - keep, 0)]:
        shutil.rmtree(old, ignore_errors=True)
