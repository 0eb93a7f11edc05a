"""VIN-constrained decoding: readings that can only be valid VINs where the rules say so.

- :mod:`vin_ocr.decoding.ctc`: CTC (PP-OCR) best-path decoding and the exact check-digit search.
- :mod:`vin_ocr.decoding.vlm`: the same for the vision-language models.

Import the submodule you need; this package imports nothing eagerly.
"""
