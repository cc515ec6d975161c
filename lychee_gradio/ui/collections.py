"""The page's endpoints over the embedding model and the collections (with `lychee load --embedding-model`):
gradio_client's `/embed`, `/search` (as /v1/search answers), and the Search tab's `/search_page` and `/index_files`,
each through the request service like every door (`handlers.PageRuns`)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from ..contract import InputError
from ..evaluation import parse_ks
from ..evaluation.collection import collection_table, evaluate_collection, load_search_queries
from ..registry import ModelSet
from ..search.searching import check_counts, document_of, search
from ..search.uploads import Upload, index_uploads, kind_of
from .forms import PageError, upload_name
from .search import answer_of, gallery_of, hit_at, search_view
from .translations import language, text
from .why import EMPTY, explain_document_view


def whole(value):
    """A number from a gradio_client call as the service takes it: a whole float (a slider's 8.0) as an int."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def collection_handlers(requests, models: ModelSet) -> SimpleNamespace:
    """The functions (their parameter names are the API's); `requests`: the page's `PageRuns`."""
    service = requests.service

    def embed(
        texts: list[str] | None = None,
        dimensions: float | None = None,
        instruction: str | None = None,
        request: gr.Request = None,
    ) -> list[list[float]]:
        """Embed texts with the served embedding model (lychee load --embedding-model): one unit vector per text.
        Example: client.predict(texts=["a white cup"], api_name="/embed"). Images: POST /v1/embeddings."""
        with requests.open("/embed", request) as req:
            values = [texts] if isinstance(texts, str) else list(texts or [])
            size = whole(dimensions) or None
            return req.embed(req.embedder(None), [{"text": t} for t in values], instruction or None, size, field="texts")

    def search_collection(
        collection: str | None = None,
        query_text: str | None = None,
        top_k: float | None = 20,
        rerank_top_n: float | None = 10,
        instruction: str | None = None,
        model: str | None = None,
        request: gr.Request = None,
    ) -> dict:
        """Search a collection (lychee index) with words: {first_stage, results}, both best first, as POST /v1/search
        answers, each row's `path` named `file` (gradio_client would download a `path` as a file). Example:
        client.predict(collection="catalogue", query_text="a white cup", api_name="/search")."""
        with requests.open("/search", request) as req:
            counts = [whole(top_k), whole(rerank_top_n)]
            scorer, embedder = req.model(model), req.embedder(None)
            found = search(req, service.collections(), embedder, scorer, collection, query_text, *counts, instruction)
            return {"model": models.name_of(scorer), **found, **renamed(found)}

    def search_page(
        collection: str | None = None,
        query_text: str | None = None,
        query_image: str | None = None,
        top_k: float | None = 20,
        rerank_top_n: float | None = 10,
        first_order: bool = False,
        instruction: str | None = None,
        model: str | None = None,
        request: gr.Request = None,
    ):
        """The Search tab: a collection searched with words and/or a picture. Returns the gallery (reranked best
        first, or with first_order the first stage's order) and {first_stage, results} (each row's path as `file`)."""
        with requests.open("/search", request) as req:
            scorer, embedder = req.model(model), req.embedder(None)
            counts = [whole(top_k), whole(rerank_top_n)]
            found = search_view(
                req, service.collections(), embedder, scorer, collection, query_text, query_image, *counts, instruction
            )
            answer = answer_of(found)
            return gallery_of(found, bool(first_order), req.context.language), {**answer, **renamed(answer)}, found

    def reorder(found, first_order: bool, request: gr.Request = None):
        """The Search tab's toggle: the kept search's gallery in the other order (no model work)."""
        return gallery_of(found, bool(first_order), language(request.headers.get("accept-language") if request else None))

    def explain_hit(
        query_text, query_image, instruction, model, found, first_order, evt: gr.SelectData, request: gr.Request = None
    ):
        """The Search tab: the chosen result's Why? panel, read again from its collection's file."""
        with requests.open("/explain", request) as req:
            hit = hit_at(found, bool(first_order), evt.index)
            if hit is None:
                return EMPTY
            document = document_of(service.collections(), hit)
            return explain_document_view(req, req.model(model), query_text, query_image, document, instruction)

    def index_files(collection: str | None = None, files: list[str] | None = None, request: gr.Request = None):
        """Index uploaded files (images, PDFs page by page, .txt/.md texts, clips) into a collection (made if new).
        Returns the page's message and {embedded, unchanged, removed, skipped}; the same file sent again is not
        embedded again. Example: client.predict(collection="mine", files=[handle_file("cup.png")],
        api_name="/index_files")."""
        with requests.open("/index", request) as req:
            embedder = req.embedder(None)
            paths = [str(path) for path in ([files] if isinstance(files, str) else files or [])]
            uploads = []
            for number, path in enumerate(paths):
                name = upload_name(path)
                uploads.append(Upload(name, kind_of(name, f"files[{number}]"), Path(path).read_bytes()))
            done = index_uploads(req, service.collections(), embedder, collection or "", uploads, field="files")
            words = text("index_done", req.context.language, collection=collection, **done.as_dict())
            return words, {"collection": collection, **done.as_dict()}

    def evaluate_search(
        collection: str | None = None,
        data: str | None = None,
        k: str | None = "1,5,10",
        top_k: float | None = 20,
        rerank_top_n: float | None = 10,
        instruction: str | None = None,
        model: str | None = None,
        progress=gr.Progress(),
        request: gr.Request = None,
    ):
        """Evaluate search over a collection end to end, as lychee eval --collection: a labelled JSONL set whose
        documents are the collection's paths ({"query", "relevant": [paths]} or "labels": {path: grade}). Returns a
        Markdown table (first stage, reranked, change) and the report."""
        with requests.open("/evaluate", request) as req:
            lang = req.context.language
            if not collection:
                raise PageError(text("error_collection_missing", lang))
            if not data:
                raise PageError(text("error_eval_empty", lang))
            scorer, embedder = req.model(model), req.embedder(None)
            ks = parse_ks(str(k or "1,5,10"))
            top_k, rerank_top_n = check_counts(whole(top_k), whole(rerank_top_n))
            queries = load_search_queries(Path(data))
            req.check_count(len(queries), "queries")

            def report(done: int, total: int) -> None:
                progress(done / total, desc=text("progress_query", lang, done=done, total=total))

            found = evaluate_collection(
                req, service.collections(), embedder, scorer, collection, queries, ks, top_k, rerank_top_n, report
            )
            found.update(model=models.name_of(scorer), embedding_model=service.embedders.name_of(embedder))
            return f"```\n{collection_table(found)}\n```", found

    def collection_names(chosen: str | None = None):
        """The collections' names for the Search tab's picker (none where no embedding model is served)."""
        try:
            names = service.collections().names()
        except InputError:
            names = []
        return gr.update(choices=names, value=chosen or (names[0] if names else None))

    return SimpleNamespace(
        embeds=service.embedders is not None,
        embed=embed,
        search=search_collection,
        search_page=search_page,
        reorder=reorder,
        explain_hit=explain_hit,
        index_files=index_files,
        collection_names=collection_names,
        evaluate_search=evaluate_search,
    )


def renamed(found: dict) -> dict:
    """Both stages' rows with `path` named `file` (gradio_client would download a dict's `path` as a file)."""
    return {
        key: [{("file" if k == "path" else k): v for k, v in row.items()} for row in found[key]]
        for key in ("first_stage", "results")
    }
