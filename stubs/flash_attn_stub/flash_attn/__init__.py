"""vin-ocr's stand-in for ``flash_attn``: importable everywhere, every call fails loudly.

Remote model code often imports flash-attn at module level; this package lets that import work on
machines where flash-attn cannot be built. Use ``attn_implementation="sdpa"`` (or ``"eager"``).
"""

from flash_attn._stub import HELP, FlashAttnStubError
from flash_attn.flash_attn_interface import (
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
    flash_attn_varlen_kvpacked_func,
    flash_attn_varlen_qkvpacked_func,
    flash_attn_with_kvcache,
)

__version__ = "0.0.0+vinocr.stub"
#: The marker vin_ocr.hardware looks for: this is not a real flash-attn.
__vin_ocr_stub__ = True

__all__ = [
    "HELP",
    "FlashAttnStubError",
    "__version__",
    "flash_attn_func",
    "flash_attn_kvpacked_func",
    "flash_attn_qkvpacked_func",
    "flash_attn_varlen_func",
    "flash_attn_varlen_kvpacked_func",
    "flash_attn_varlen_qkvpacked_func",
    "flash_attn_with_kvcache",
]
