"""The page's endpoints: each tab's button runs one of these functions, which are also the named Gradio
API endpoints (`/score`, `/rerank`, `/rank_images`, `/compare`, `/evaluate`), so `gradio_client`
scripts get what the page shows plus structured JSON.

Each handler opens one request (`PageRuns.open`): a `contract.RequestContext` with the server's
timeout, the browser session's Stop event, a request id and the browser's language, which the
view passes explicitly to every scorer call. On the way out the request is counted and logged
(the `Observer` the page was handed), and an expected error (bad input, timeout, Stop, busy, out
of memory) reaches the page and `gradio_client` as a message in the browser's language, with its
status in the metrics and no traceback in the log.
"""

from __future__ import annotations

import contextlib
import threading
import time
from types import SimpleNamespace

import gradio as gr

from ..config import Config
from ..contract import LycheeError, NullObserver, Observer, is_expected
from ..explain import DEFAULT_GRID
from ..registry import ModelSet
from ..service import Service
from .batch import rerank_view
from .collections import collection_handlers
from .compare import compare_view
from .error_words import reason
from .evaluate import evaluate_view
from .forms import above, check_min_score, parse_documents
from .images import rank_images_view
from .single import score_view, single_document
from .translations import language, text
from .why import EMPTY, explain_document_view

# The page's own words for some codes (longer than the API's: what to do next); every other code is worded by
# its entry in error_words.ERRORS_ZH or the contract's English.
_PAGE_WORDS = {
    "timeout": "error_timeout",
    "busy": "error_busy",
    "stopped": "error_stopped",
    "out_of_memory": "error_out_of_memory",
}


class PageRuns:
    """The page's requests in flight: each one a request of the service's (`service.Service`), with the browser
    session's Stop event; what the page adds is that Stop, and the words of its errors."""

    def __init__(self, service: Service):
        self.service, self.config = service, service.config
        self._events: dict[str, threading.Event] = {}
        self._queued: dict[str, list[float]] = {}  # per session: when each run clicked but not started was queued
        self._stopped: dict[str, float] = {}  # per session: when Stop was pressed with no run started
        self._messages: dict[str, tuple[str, bool]] = {}  # per session: its last run's error (words, stopped)
        self._lock = threading.Lock()

    def queue(self, session: str | None) -> None:
        """A run was clicked on the page (it may wait in Gradio's queue before it starts)."""
        if session:
            with self._lock:
                self._queued.setdefault(session, []).append(time.monotonic())
                del self._queued[session][:-16]

    @contextlib.contextmanager
    def open(self, endpoint: str, request: gr.Request | None):
        """One request: yields the service's `Request`; its errors reach the page (and gradio_client) as a message
        in the browser's language, with their status in the metrics and no traceback in the log."""
        lang = language(request.headers.get("accept-language") if request is not None else None)
        session = getattr(request, "session_hash", None)
        cancel = threading.Event()
        if session:
            with self._lock:
                self._events[session] = cancel
                queued = self._queued.get(session) or [None]
                clicked = queued.pop(0)
                stopped = self._stopped.pop(session, None)
                if clicked is not None and stopped is not None and stopped >= clicked:
                    cancel.set()  # Stop was pressed while this run still waited in the queue
        client = getattr(getattr(request, "client", None), "host", None)
        identity = f"session:{session}" if session else f"address:{client}"
        try:
            with self.service.request(endpoint, cancel=cancel, language=lang, identity=identity) as req:
                yield req
        except LycheeError as error:
            if not is_expected(error):
                raise
            # A user's mistake or a stopped run: one access-log line with its status, no traceback. The words stay
            # on the page where the result would be (`message`), until the next run; a Stop is no error: no toast.
            stopped = error.code == "stopped"
            words = text("stopped_before", lang) if stopped else self.words(error, lang)
            if session:
                with self._lock:
                    self._messages[session] = (words, stopped)
                    while len(self._messages) > 4096:  # sessions that never ask again
                        del self._messages[next(iter(self._messages))]
            raise gr.Error(words, title=text("error_title", lang), print_exception=False, visible=not stopped) from None
        finally:
            if session:
                with self._lock:
                    if self._events.get(session) is cancel:
                        del self._events[session]

    def message(self, request: gr.Request | None):
        """The session's last run's error, for the tab's message box (shown until the next run clears it)."""
        session = getattr(request, "session_hash", None)
        with self._lock:
            words, stopped = self._messages.pop(session, (None, False)) if session else (None, False)
        if words is None:
            return gr.update(value="", visible=False)
        return gr.update(value=f"**{'⏹' if stopped else '⚠️'} {words}**", visible=True)

    def words(self, error: LycheeError, lang: str) -> str:
        """An error in the page's language, by its code."""
        if error.code in _PAGE_WORDS:
            reading = error.params.get("stage") == "reading its images"
            stage = text("stage_reading" if reading else "stage_scoring", lang)
            return text(_PAGE_WORDS[error.code], lang, seconds=self.config.request_timeout or 0, stage=stage)
        return f"{error.field}: {reason(error, lang)}" if error.field else reason(error, lang)

    def stop(self, session: str) -> None:
        """The session's Stop: its run in progress stops at its next batch and answers what it has (the page
        shows the part scored); a run still waiting in the queue stops as soon as it starts."""
        with self._lock:
            event = self._events.get(session)
            if event is None and self._queued.get(session):
                self._stopped[session] = time.monotonic()
        if event is not None:
            event.set()


def make_handlers(
    models: ModelSet, config: Config, observer: Observer | None = None, *, service: Service | None = None
) -> SimpleNamespace:
    """The endpoints' functions: plain functions whose parameter names are the API's.

    `model` picks one of the served models by name (empty: the first); see registry.py.
    The server's request timeout stops a request's model work between batches and says so;
    `stop` (the page's Stop button) does the same for the session's run in progress.
    """
    requests = PageRuns(service or Service(models, config, observer or NullObserver()))

    def score(
        query_text: str | None = None,
        query_image: str | None = None,
        document_text: str | None = None,
        document_image: str | None = None,
        instruction: str | None = None,
        model: str | None = None,
        document_files: list[str] | None = None,
        request: gr.Request = None,
    ):
        """Score one document against a query. Returns Markdown and {score, verdict, colour, yes_logit, no_logit}.
        Example: client.predict(query_text="white cup", document_text="白瓷咖啡杯", api_name="/score"); leave
        out what you do not send (the snippet below lists every parameter with its default)."""
        with requests.open("/score", request) as req:
            kept: list = []
            markdown, details = score_view(
                req, req.model(model), query_text, query_image, document_text, document_image, instruction, document_files, kept
            )
            return markdown, details, kept[0]  # the last: the page's State (not part of the API's answer)

    def rerank(
        query_text: str | None = None,
        query_image: str | None = None,
        documents: str | None = None,
        document_images: list[str] | None = None,
        instruction: str | None = None,
        top_n: float | None = None,
        model: str | None = None,
        min_score: float | str | None = 0,
        request: gr.Request = None,
    ):
        """Rerank documents (text blocks separated by '---' lines, plus images) best-first; min_score hides lower
        scores (a number, or "relevant" / "partly": the model's calibrated bands, lychee load --calibration).
        Returns a Markdown table and [{rank, index, score, verdict, colour, text, image, move}]. Example:
        client.predict(query_text="保温杯 500ml", documents="steel tumbler 500ml\n---\nblue mug", top_n=3,
        api_name="/rerank"). Pipelines: POST /v1/rerank on this server takes the Cohere / Jina / vLLM rerank format
        (see /docs)."""
        with requests.open("/rerank", request) as req:
            check_min_score(min_score, req.context.language)
            kept: list = []
            table, rows = rerank_view(
                req,
                req.model(model),
                query_text,
                query_image,
                documents,
                document_images,
                instruction,
                top_n,
                min_score,
                kept=kept,
            )
            return table, rows, kept[0]  # the last: the page's State (not part of the API's answer)

    def rank_images(
        query_text: str | None = None,
        query_image: str | None = None,
        images: list[str] | None = None,
        instruction: str | None = None,
        top_n: float | None = None,
        model: str | None = None,
        min_score: float | str | None = 0,
        progress=gr.Progress(),
        request: gr.Request = None,
    ):
        """Rank images against a query, best first. Returns a gallery and [{rank, index, score, image}]. Example:
        client.predict(query_text="a blue mug", images=[handle_file("a.png"), handle_file("b.png")],
        api_name="/rank_images")."""
        with requests.open("/rank_images", request) as req:
            check_min_score(min_score, req.context.language)

            def report(done: int, total: int, description: str) -> None:
                progress(done / total, desc=description)

            report(0, 1, text("progress_reading", req.context.language, done=0, total=len(images or [])))
            kept: list = []
            gallery, rows = rank_images_view(
                req,
                req.model(model),
                query_text,
                query_image,
                images,
                instruction,
                top_n,
                min_score,
                on_progress=report,
                kept=kept,
            )
            return gallery, rows, kept[0]  # the last: the page's State (not part of the API's answer)

    def compare(
        query_text: str | None = None,
        query_image: str | None = None,
        documents: str | None = None,
        document_images: list[str] | None = None,
        instruction: str | None = None,
        model_a: str | None = None,
        model_b: str | None = None,
        request: gr.Request = None,
    ):
        """Rank the same documents with two served models side by side, with Kendall's tau and top-5 overlap.
        Returns a Markdown table and {models, kendall_tau, top_k, top_k_overlap, rows, disagreements}."""
        with requests.open("/compare", request) as req:
            first = req.model(model_a)
            second = req.model(model_b) if model_b else models.scorers[1 if len(models) > 1 else 0]
            names = (models.name_of(first), models.name_of(second))
            return compare_view(req, first, second, names, query_text, query_image, documents, document_images, instruction)

    def evaluate(
        data: str | None = None,
        images_zip: str | None = None,
        k: str | None = None,
        instruction: str | None = None,
        skip_bad: bool = False,
        progress=gr.Progress(),
        request: gr.Request = None,
    ):
        """Evaluate a labelled JSONL set with every served model: NDCG, MRR, Recall and Hit before and after
        reranking. Returns a Markdown table, the chart data and the full report."""
        with requests.open("/evaluate", request) as req:

            def report(done: int, total: int) -> None:
                progress(done / total, desc=text("progress_query", req.context.language, done=done, total=total))

            table, chart, details = evaluate_view(req, data, images_zip, k, instruction, skip_bad, on_progress=report)
            # Bars in the table's order, each metric's "first stage" beside each model's (evaluate_view). The
            # last: the page's State (the report its downloads are written from; not part of the API's answer).
            return (
                table,
                gr.BarPlot(
                    value=chart,
                    x_title=text("chart_y", req.context.language),
                    y_title=text("chart_x", req.context.language),
                    height=140 + 24 * len(chart),
                ),
                details,
                details,
            )  # a line per bar, the axes

    def explain(
        query_text: str | None = None,
        query_image: str | None = None,
        document_text: str | None = None,
        document_image: str | None = None,
        instruction: str | None = None,
        grid: float | None = DEFAULT_GRID,
        explanation: bool = False,
        model: str | None = None,
        document_files: list[str] | None = None,
        request: gr.Request = None,
    ):
        """Why this score: each image of the pair as a heatmap (a cell's value is score(pair) - score(pair with
        that box filled with the image's mean colour)), each text's segments (score(pair) - score(pair without
        that segment)), the raw output, and with explanation=True the model's own words (which can be wrong).
        Returns every image's heatmap (a gallery of picture and caption, the query's first), the weighted texts
        (HTML), the raw output (Markdown; a clip's timeline in it) and the details as JSON.
        Example: client.predict(query_text="white cup", document_image=handle_file("cup.png"), api_name="/explain")."""
        with requests.open("/explain", request) as req:
            document = single_document(document_text, document_image, document_files, req.context.language)
            return explain_document_view(req, req.model(model), query_text, query_image, document, instruction, grid, explanation)

    def explain_image(
        query_text, query_image, images, instruction, model, ranking, min_score, evt: gr.SelectData, request: gr.Request = None
    ):
        """Image ranking: the chosen result's Why? panel (the session's kept ranking, as the gallery shows it under
        "Hide scores below"), without ranking again."""
        with requests.open("/explain", request) as req:
            shown = above(ranking["rows"], ranking["rows"], min_score, ranking.get("bands"))[0] if ranking else []
            if not isinstance(evt.index, int) or not 0 <= evt.index < len(shown):
                return EMPTY
            row = shown[evt.index]
            # A PDF's page, a long clip's segment: that one.
            document = {
                "text": None,
                "image": (images or [])[row["index"]],
                "page": row.get("page"),
                "segment": row.get("segment"),
            }
            return explain_document_view(req, req.model(model), query_text, query_image, document, instruction)

    def explain_document(
        query_text, query_image, documents, document_images, instruction, model, chosen, request: gr.Request = None
    ):
        """Batch rerank: the chosen result's (input number `chosen`) Why? panel, without ranking again."""
        with requests.open("/explain", request) as req:
            if not chosen:
                return EMPTY
            document = parse_documents(documents, document_images, req.context.language)[int(chosen) - 1]
            return explain_document_view(req, req.model(model), query_text, query_image, document, instruction)

    def explain_both(
        query_text, query_image, documents, document_images, instruction, model_a, model_b, chosen, request: gr.Request = None
    ):
        """Compare: the chosen document's Why? panel for both models, side by side."""
        with requests.open("/explain", request) as req:
            if not chosen:
                return EMPTY * 2
            document = parse_documents(documents, document_images, req.context.language)[int(chosen) - 1]
            first = req.model(model_a)
            second = req.model(model_b) if model_b else models.scorers[1 if len(models) > 1 else 0]
            return tuple(
                part
                for scorer in (first, second)
                for part in explain_document_view(req, scorer, query_text, query_image, document, instruction)
            )

    def stop(request: gr.Request):
        """Stop this browser session's run in progress (between two batches)."""
        if request is not None and request.session_hash:
            requests.stop(request.session_hash)

    def queued(request: gr.Request):
        """A run of this browser session was clicked (the page calls this before the run itself)."""
        requests.queue(getattr(request, "session_hash", None))

    def failed(request: gr.Request):
        """A run of this browser session failed or was stopped before scoring: its words, for the message box."""
        return requests.message(request)

    return SimpleNamespace(
        **vars(collection_handlers(requests, models)),
        score=score,
        rerank=rerank,
        rank_images=rank_images,
        compare=compare,
        evaluate=evaluate,
        explain=explain,
        explain_image=explain_image,
        explain_document=explain_document,
        explain_both=explain_both,
        stop=stop,
        queued=queued,
        failed=failed,
    )
