"""Stub of ``flash_attn.flash_attn_interface``: every function raises FlashAttnStubError."""

from flash_attn._stub import unavailable

_M = "flash_attn.flash_attn_interface"
flash_attn_func = unavailable(f"{_M}.flash_attn_func")
flash_attn_kvpacked_func = unavailable(f"{_M}.flash_attn_kvpacked_func")
flash_attn_qkvpacked_func = unavailable(f"{_M}.flash_attn_qkvpacked_func")
flash_attn_varlen_func = unavailable(f"{_M}.flash_attn_varlen_func")
flash_attn_varlen_kvpacked_func = unavailable(f"{_M}.flash_attn_varlen_kvpacked_func")
flash_attn_varlen_qkvpacked_func = unavailable(f"{_M}.flash_attn_varlen_qkvpacked_func")
flash_attn_with_kvcache = unavailable(f"{_M}.flash_attn_with_kvcache")
