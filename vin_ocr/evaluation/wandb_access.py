"""W&B access shared by the training logger (``logger=wandb``) and ``compare`` (``wandb:`` runs):
whether credentials exist, and the package with an install hint."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any


def wandb_api_key_available() -> bool:
    """Whether W&B would find credentials: ``WANDB_API_KEY``, an identity token file, or a
    ``.netrc`` entry for the W&B host (``WANDB_BASE_URL``, default api.wandb.ai)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    from urllib.parse import urlsplit

    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").netloc
    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def import_wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise ImportError(
            "logger=wandb needs the wandb package: pip install 'vin-ocr[wandb]'"
        ) from None
    return wandb
