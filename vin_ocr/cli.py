"""The ``vin-ocr`` console script: one name in front of the package's Hydra entry points.

``vin-ocr COMMAND [hydra overrides]`` runs ``python -m MODULE [hydra overrides]`` in the same
process, so every command keeps its own Hydra config (``configs/``) and ``--help``::

    vin-ocr train model=lfm2_5_vl training=lora     # python -m vin_ocr.training.hf_finetune
    vin-ocr eval engine=rapidocr data=samples       # python -m vin_ocr.evaluation.evaluate
    vin-ocr app                                     # python -m vin_ocr.app

The overrides are passed on untouched: this file parses nothing but the command name.
"""

from __future__ import annotations

import runpy
import sys

#: command -> the module ``python -m`` would run
COMMANDS: dict[str, str] = {
    "train": "vin_ocr.training.hf_finetune",
    "eval": "vin_ocr.evaluation.evaluate",
    "compare": "vin_ocr.evaluation.compare",
    "prepare": "vin_ocr.data.prepare",
    "synth": "vin_ocr.data.synth",
    "preflight": "vin_ocr.hardware",
    "merge": "vin_ocr.training.merge",
    "app": "vin_ocr.app",
    "export-space": "vin_ocr.app.export_space",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  python -m {mod}" for name, mod in COMMANDS.items())
    return f"usage: vin-ocr COMMAND [hydra overrides]\n\ncommands:\n{rows}\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        raise SystemExit(f"vin-ocr: unknown command {command!r}\n\n{usage()}")
    sys.argv = [f"vin-ocr {command}", *rest]
    runpy.run_module(COMMANDS[command], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
