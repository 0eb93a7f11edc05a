"""Stub of ``flash_attn.bert_padding`` (imported beside the kernels by many modeling files)."""

from flash_attn._stub import unavailable

_M = "flash_attn.bert_padding"
index_first_axis = unavailable(f"{_M}.index_first_axis")
index_put_first_axis = unavailable(f"{_M}.index_put_first_axis")
pad_input = unavailable(f"{_M}.pad_input")
unpad_input = unavailable(f"{_M}.unpad_input")
