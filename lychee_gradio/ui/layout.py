"""The page's frame: CSS and the Ctrl+Enter script, the image input that does not decode, the query
column and run/stop buttons every ranking tab shares, the instruction row, and the API page's labels.

Small pieces the tab modules (`single.py`, `batch.py`, `images.py`, `compare.py`, `evaluate.py`)
build their tabs from; `page.py` puts the tabs together.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import gradio as gr

from ..calibration import BANDS
from ..presets import INSTRUCTION_PRESETS
from ..registry import ModelSet
from . import gradio_compat
from .forms import ASSETS_DIR, upload_name
from .translations import TRANSLATIONS, language, text

I18N = gr.I18n(**TRANSLATIONS)


def asset_text(name: str) -> str:
    path = ASSETS_DIR / "data" / name
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def asset_image(name: str) -> str | None:
    path = ASSETS_DIR / "images" / name
    return str(path) if path.is_file() else None


# Model work shares one queue ("model") with as many slots as there are model replicas: one in a
# single process, so concurrent users wait in line instead of running the GPU out of memory.
MODEL_WORK = {"concurrency_id": "model"}

# Chinese text and emoji in the fonts a system has (Gradio's own font names none), the run's message box marked.
# Phones (a 390-px screen): tables scroll sideways instead of squeezing each cell to a letter (their
# first column stays put, and a line under them says to swipe),
# headers and scores never break mid-word, the result gallery shows two columns and whole
# captions, the tab bar fits every tab (no "•••" menu), and long upload lists scroll in a box.
CSS = """
.gradio-container { font-family: var(--font), "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", "Hiragino Sans GB",
  "Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji", sans-serif; }
.run-message { border-left: 3px solid var(--color-accent); padding-left: 10px; }
#batch-table table, #eval-table table, #compare-table table { display: block; overflow-x: auto; max-width: 100%; }
#batch-table th, #eval-table th, #compare-table th, #eval-table td, #compare-table td { white-space: nowrap; }
#batch-table td:nth-child(1), #batch-table td:nth-child(2), #batch-table td:nth-child(4),
#batch-table td:nth-child(5) { white-space: nowrap; }
#images-gallery .caption-label, #images-preview .caption-label,
#search-gallery .caption-label { white-space: normal; overflow: visible;
  text-overflow: clip; line-height: 1.25; }
.why-legend { display: flex; align-items: center; gap: 8px; font-size: 13px; margin-bottom: 6px; }
.why-legend img { height: 14px; width: 180px; border-radius: 3px; }
.why-text { line-height: 1.9; }
.why-segment { border-radius: 3px; padding: 1px 0; }
.phone-only { display: none; }
@media (max-width: 640px) {
  .phone-only { display: block; font-size: 13px; opacity: 0.8; }
  #batch-table td:first-child, #batch-table th:first-child, #eval-table td:first-child, #eval-table th:first-child,
  #compare-table td:first-child, #compare-table th:first-child {
    position: sticky; left: 0; z-index: 1; background: var(--background-fill-primary); }
  .tab-container button { padding-left: 6px !important; padding-right: 6px !important; font-size: 13px !important; }
  #images-gallery .grid-container, #search-gallery .grid-container {
    grid-template-columns: repeat(2, minmax(0, 1fr)) !important; }
  #images-preview .grid-container { grid-template-columns: repeat(4, minmax(0, 1fr)) !important; }
}
"""


def example_words() -> dict[str, dict[str, str]]:
    """Each bilingual example label (`both`) with its English and Chinese halves."""
    return {
        both(key): {"en": TRANSLATIONS["en"][key], "zh": TRANSLATIONS["zh"][key]}
        for key in TRANSLATIONS["en"]
        if key.startswith("example_")
    }


def head() -> str:
    """The page's <head> script (gradio_compat.HEAD_TEMPLATE), with the words it needs."""
    return gradio_compat.head_script(example_words())


def ImageBox(**options) -> gr.Image:
    """An image input that hands the handler the uploaded file's path without opening it.

    `gr.Image` opens (and, to convert its mode, decodes) every upload before the handler runs, so a huge
    image would be decoded before the pixel limit is checked, in any format Pillow knows, and a file that
    is not an image fails with a message holding the server's temp path. Here the path goes on as it is:
    the request service decodes it under the limits, and the view names a file that is no image by its
    name in the browser's language. (The Gradio touch: `gradio_compat.path_only_image`; a subclass made Gradio
    write a .pyi stub into the package at run time.)
    """
    return gradio_compat.path_only_image(gr.Image(**options))


def query_column(elem_id: str) -> tuple[gr.Textbox, gr.Image, gr.Number, gr.Slider]:
    """The query (text and/or image), top-n and score-filter inputs of a ranking tab."""
    with gr.Column(scale=1):
        text_box = gr.Textbox(label=I18N("query_text"), lines=2, elem_id=elem_id)
        image = checked(ImageBox(label=I18N("query_image"), type="filepath", height=200), "error_query_image")
        with gr.Row():
            top_n = gr.Number(0, label=I18N("top_n"), precision=0, minimum=0, min_width=120)
            min_score = gradio_compat.band_words_slider(
                gr.Slider(0, 1, value=0, step=0.05, label=I18N("min_score"), min_width=120, elem_id=f"{elem_id}-min-score"), BANDS
            )
    return text_box, image, top_n, min_score


def run_buttons(run_key: str, elem_id: str) -> tuple[gr.Button, gr.Button, gr.Markdown]:
    """The run and Stop buttons, and under them the box where a run's mistake (or a Stop before scoring) stays
    written until the next run (`wire`)."""
    with gr.Row():
        run = gr.Button(I18N(run_key), variant="primary", elem_id=elem_id, scale=4)
        stop = gr.Button(I18N("stop_button"), variant="stop", elem_id=f"{elem_id}-stop", scale=1)
    message = gr.Markdown(visible=False, elem_id=f"{elem_id}-message", elem_classes=["run-message"])
    return run, stop, message


def wire(
    run: gr.Button,
    stop: gr.Button,
    handler: Callable,
    inputs: list,
    outputs: list,
    api_name: str,
    handlers: SimpleNamespace,
    downloads: tuple[Callable, list, gr.File | list] | None = None,
    message: gr.Markdown | None = None,
    **options,
):
    """Run `handler` from the button (and Ctrl+Enter): first clear the previous results, so a failed
    run never leaves them beside its error; then the results' downloads (`downloads`: the function that writes them
    from the run's kept State, its inputs and its outputs: the file box, or a list of it and more).

    Stop does not cancel the event (Gradio would throw away what it answers): it sets the run's Stop
    event (`handlers.stop`), the scorer stops at its next batch, and the run answers what it has, so
    the page can say "Stopped after N of M" and show the part scored, with its downloads. A run that fails (or is
    stopped before scoring began) writes its words in `message`, where they stay until the next run."""
    after = (downloads[2] if isinstance(downloads[2], list) else [downloads[2]]) if downloads else []
    cleared = [*outputs, *after]

    def clear(request: gr.Request):
        handlers.queued(request)
        return [None] * len(cleared) + ([gr.update(value="", visible=False)] if message is not None else [])

    event = run.click(clear, None, cleared + ([message] if message is not None else []), queue=False, api_visibility="private")
    event = event.then(handler, inputs, outputs, api_name=api_name, **MODEL_WORK, **options)
    if message is not None:
        event.failure(handlers.failed, None, message, queue=False, api_visibility="private", show_progress="hidden")
    if downloads is not None:  # written from the run's server-side State, never from what a caller sends
        write, kept, files = downloads
        event.then(write, kept, files, api_visibility="private", queue=False, show_progress="hidden")
    stop.click(handlers.stop, None, None, queue=False, api_visibility="private")
    return event


MODEL_DEFAULT = "Model default"  # the preset that leaves the instruction empty: each model's own default
CUSTOM = "Custom"  # the preset shown once the instruction was edited by hand
_PRESET_LABELS = {
    "Web search": "preset_web",
    "E-commerce": "preset_ecommerce",
    "Product search": "preset_product",
    "Academic figures": "preset_academic",
    "Education": "preset_education",
    "Design assets": "preset_design",
}


def instruction_row(models: ModelSet) -> tuple[gr.Textbox, gr.Dropdown, gr.Dropdown]:
    """The model picker (when several models are served), the task preset and the editable instruction.

    The instruction starts empty, which means each model's own default instruction (lychee's and
    Qwen3-VL-Reranker's differ); the placeholder shows the picked model's. Editing the text turns
    the preset to "Custom" (or to the preset whose text it now is); choosing "Custom" again brings
    back the text typed last; choosing a preset puts its text back.
    """
    presets = {MODEL_DEFAULT: "", **INSTRUCTION_PRESETS}
    choices = [(I18N("preset_default"), MODEL_DEFAULT)]
    choices += [(I18N(_PRESET_LABELS.get(name, "preset_custom")), name) for name in INSTRUCTION_PRESETS]
    choices += [(I18N("preset_custom"), CUSTOM)]

    def placeholder(name: str | None) -> str:
        return models.get(name).family.default_instruction

    def chosen(preset: str):
        return gr.update() if preset == CUSTOM else presets.get(preset, "")

    def typed(instruction: str, custom: str):
        match = next((name for name, words in presets.items() if words == (instruction or "").strip()), None)
        return (match or CUSTOM), (custom if match else instruction)

    with gr.Row():
        picker = gr.Dropdown(
            models.names, value=models.names[0], label=I18N("model"), scale=1, visible=len(models) > 1, elem_id="model-picker"
        )
        preset = gr.Dropdown(choices, value=MODEL_DEFAULT, label=I18N("instruction_preset"), scale=1, elem_id="preset")
        instruction = gr.Textbox(
            "", placeholder=placeholder(None), label=I18N("instruction"), lines=2, scale=4, elem_id="instruction"
        )
    custom = gr.State("")
    preset.change(chosen, preset, instruction, api_visibility="private", queue=False, show_progress="hidden")
    preset.input(
        lambda value, kept: kept if value == CUSTOM else gr.update(),
        [preset, custom],
        instruction,
        api_visibility="private",
        queue=False,
        show_progress="hidden",
    )
    instruction.input(
        typed,
        [instruction, custom],
        [preset, custom],
        api_visibility="private",
        queue=False,
        show_progress="hidden",
        trigger_mode="always_last",
    )  # the last keystroke always counts
    picker.change(
        lambda name: gr.update(placeholder=placeholder(name)), picker, instruction, api_visibility="private", queue=False
    )
    return instruction, picker, preset


def checked(box: gr.components.Component, words: str | None = None) -> gr.components.Component:
    """Uploads to an image box are checked as they arrive: a file that is not an image is named at once, box
    and file, in the words a run would use (`words`: the run's message for this box, with {name} and
    {reason}); the run itself then says the same."""
    key = gradio_compat.label_key(box.label)

    def readable(path) -> bool:
        from PIL import UnidentifiedImageError

        from ..inputs import open_image
        from .forms import is_pdf, is_video

        if is_video(upload_name(path)) or is_pdf(upload_name(path)):
            return True  # a clip or a PDF (where the box takes them): reading it names any problem, on the run
        try:
            with open_image(path):  # the header only
                return True
        except (UnidentifiedImageError, OSError, ValueError):
            return False

    def check(value, request: gr.Request):
        lang = language(request.headers.get("accept-language") if request is not None else None)
        where = text(key, lang) if key else ""
        values = value if isinstance(value, list) else [value]
        for number, path in enumerate(values, start=1):
            if path and not readable(path):
                why = text("unreadable_reason", lang)
                if isinstance(value, list):
                    said = text("error_upload_many", lang, box=where, number=number, name=upload_name(path), reason=why)
                else:
                    said = text(words or "error_upload_one", lang, box=where, name=upload_name(path), reason=why)
                gr.Warning(said, title=text("error_title", lang))

    # Queued (not its own concurrency group's model slots): Gradio shows a gr.Warning only from a queued event.
    box.upload(check, box, None, api_visibility="private", show_progress="hidden", concurrency_limit=None)
    return box


def swipe_hint() -> gr.Markdown:
    """A line under a wide table, on phones only: it scrolls sideways."""
    return gr.Markdown(I18N("swipe_hint"), elem_classes=["phone-only"])


def examples(rows: list[list], inputs: list, label_keys: list[str]) -> gr.Examples:
    """A tab's examples. An example sets every box it lists: a box left empty in every example (Gradio then
    leaves it as it is, e.g. an image uploaded before) is cleared when an example is chosen."""
    found = gr.Examples(rows, inputs, label=I18N("examples"), example_labels=[both(key) for key in label_keys])
    gradio_compat.clear_unset_on_example(found)
    return found


def both(key: str) -> str:
    """An example's label in both languages: Gradio prints example labels as they are (no gr.I18n there)."""
    english, chinese = TRANSLATIONS["en"][key], TRANSLATIONS["zh"][key]
    return english if english == chinese else f"{english} · {chinese}"
