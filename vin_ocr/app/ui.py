"""The Gradio page: a "Read" tab (one engine) and a "Compare" tab (two engines, same image).

:func:`build_app` returns the ``gr.Blocks``; :func:`serve` launches it. The handlers
(:func:`read_panel`, :func:`compare_panels`) are plain functions the tests call directly; every
failure becomes a message in the page, never a stack trace.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vin_ocr.app.core import (
    KINDS,
    EngineCache,
    EngineUnavailable,
    UploadError,
    confidence_table,
    explain,
    is_line_crop,
    load_image,
    read_image,
    sample_images,
)

if TYPE_CHECKING:
    import gradio as gr
    from PIL.Image import Image

log = logging.getLogger(__name__)

#: One result panel: (VIN, explanation markdown, confidence markdown, region read).
Panel = tuple[str, str, str, "Image | None"]


def _source(upload: str | None, image: str | None) -> str:
    if upload:
        return upload
    if image:
        return image
    raise UploadError("upload a photo, paste one or pick a sample first")


def read_panel(
    upload: str | None, image: str | None, kind: str, spec: str, cache: EngineCache, cfg: Any
) -> Panel:
    """One panel's values for the uploaded file (else the pasted / sample image) and engine."""
    try:
        path = _source(upload, image)
        picture = load_image(
            path, max_mb=cfg.max_upload_mb, max_megapixels=cfg.max_megapixels, name=Path(path).name
        )
        engine = cache.get(spec)
        result = read_image(picture, engine, is_line_crop(picture, kind, cfg.crop_aspect))
    except (UploadError, EngineUnavailable) as exc:
        return "", f"⚠️ {exc}", "", None
    except Exception as exc:  # an engine failing on this image: the reason, not a traceback
        log.exception("engine %s failed", spec)
        return "", f"⚠️ engine {spec} failed on this image ({type(exc).__name__}: {exc})", "", None
    return result.vin, explain(result), confidence_table(result), result.region_image


def compare_panels(
    upload: str | None,
    image: str | None,
    kind: str,
    spec_a: str,
    spec_b: str,
    cache: EngineCache,
    cfg: Any,
) -> tuple[Any, ...]:
    """Both panels of the Compare tab, the same image read by two engines."""
    return (
        *read_panel(upload, image, kind, spec_a, cache, cfg),
        *read_panel(upload, image, kind, spec_b, cache, cfg),
    )


def engine_choices(cfg: Any) -> list[str]:
    """The model first, then the configured extra engines, without repeats."""
    return list(dict.fromkeys([str(cfg.model), *map(str, cfg.engines)]))


def build_app(
    cfg: Any, cache: EngineCache | None = None, gpu: Callable[[Any], Any] | None = None
) -> gr.Blocks:
    """The page for an app config (:class:`vin_ocr.app.core.AppConf`).

    ``gpu`` wraps the handlers (``spaces.GPU`` on a ZeroGPU Space).
    """
    import gradio as gr

    choices = engine_choices(cfg)
    if cache is None:
        cache = EngineCache(None if cfg.custom_engines else choices)
    samples = sample_images() if cfg.samples else {}
    wrap = gpu or (lambda fn: fn)

    @wrap
    def on_read(upload: Any, image: Any, kind: str, spec: str) -> Panel:
        return read_panel(upload, image, kind, spec, cache, cfg)

    @wrap
    def on_compare(upload: Any, image: Any, kind: str, a: str, b: str) -> tuple[Any, ...]:
        return compare_panels(upload, image, kind, a, b, cache, cfg)

    def inputs(tab: str) -> list[Any]:
        with gr.Row():
            upload = gr.File(
                label="Upload a photo",
                type="filepath",
                file_types=["image"],
                elem_id=f"upload-{tab}",
            )
            image = gr.Image(
                label="…or paste one (or pick a sample below)",
                type="filepath",
                sources=["clipboard"],
                elem_id=f"image-{tab}",
            )
        with gr.Row():
            sample = gr.Dropdown(
                list(samples), value=None, label="Bundled sample", visible=bool(samples)
            )
            kind = gr.Radio(list(KINDS), value="auto", label="The image is")
        # The last thing the user gave is what is read: each input clears the others.
        upload.upload(lambda: (None, None), None, [image, sample])
        image.input(lambda: (None, None), None, [upload, sample])
        sample.input(lambda name: (None, samples.get(name)), sample, [upload, image])
        return [upload, image, kind]

    def panel(tab: str) -> list[Any]:
        vin = gr.Textbox(label="VIN", interactive=False, elem_id=f"vin-{tab}")
        details = gr.Markdown(elem_id=f"details-{tab}")
        conf = gr.Markdown(elem_id=f"conf-{tab}")
        region = gr.Image(label="Region read", type="pil", interactive=False, height=160)
        return [vin, details, conf, region]

    def engine_menu(label: str, value: str, elem_id: str) -> Any:
        return gr.Dropdown(
            choices,
            value=value,
            label=label,
            allow_custom_value=bool(cfg.custom_engines),
            info="baseline, an engine name, a run folder or a Hub model id"
            if cfg.custom_engines
            else None,
            elem_id=elem_id,
        )

    with gr.Blocks(title=cfg.title) as demo:
        gr.Markdown(f"# {cfg.title}")
        with gr.Tab("Read"):
            read_inputs = inputs("read")
            engine = engine_menu("Engine", choices[0], "engine-read")
            button = gr.Button("Read VIN", variant="primary", elem_id="btn-read")
            button.click(on_read, [*read_inputs, engine], panel("read"))
        with gr.Tab("Compare"):
            cmp_inputs = inputs("compare")
            with gr.Row():
                engine_a = engine_menu("Engine A", choices[0], "engine-a")
                engine_b = engine_menu("Engine B", choices[min(1, len(choices) - 1)], "engine-b")
            button = gr.Button("Compare", variant="primary", elem_id="btn-compare")
            with gr.Row():
                with gr.Column():
                    out_a = panel("a")
                with gr.Column():
                    out_b = panel("b")
            button.click(
                on_compare,
                [*cmp_inputs, engine_a, engine_b],
                [*out_a, *out_b],
            )
    return demo


def free_port(host: str) -> int:
    """A port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def serve(cfg: Any, block: bool = True, gpu: Callable[[Any], Any] | None = None) -> gr.Blocks:
    """Load the configured model (fail now, with the reason), build the page and launch it.

    ``block=False`` returns once the server listens (``app.local_url``; ``app.close()``).
    """
    choices = engine_choices(cfg)
    cache = EngineCache(None if cfg.custom_engines else choices)
    cache.get(str(cfg.model))  # a model that cannot load stops the app here, not at first use
    demo = build_app(cfg, cache, gpu)
    demo.queue()
    demo.launch(
        server_name=cfg.host,
        server_port=int(cfg.port) or free_port(cfg.host),
        share=bool(cfg.share),
        max_file_size=f"{cfg.max_upload_mb:g}mb",
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return demo
