"""Image documents in a pipeline: prepared in a pool of threads, a chunk at a time while the model runs the
chunks before it; the same scores in input order, bounded memory, Stop and bad photos handled."""

from __future__ import annotations

import io
import threading

import pytest

from lychee_gradio import InputError, LycheeScorer
from lychee_gradio.bench.common import synthetic_image
from lychee_gradio.contract import RequestContext, ScoreStats, ScoringCancelledError
from lychee_gradio.engine import encoding, pipeline


@pytest.fixture
def photos():
    sizes = [(300, 200), (200, 300), (257, 129), (120, 120)]
    return [{"image": synthetic_image(i, 300).resize(sizes[i % 4])} for i in range(30)]


@pytest.fixture
def piped(scorer):
    """A scorer of this test's own, 4 pairs a pass, so 30 photos make 8 chunks."""
    own = LycheeScorer(
        scorer.model, scorer.processor, model_name=scorer.model_name, device="cpu", family=scorer.family, batch_size=4
    )
    return own


def test_thirty_photos_in_a_pipeline_score_as_all_at_once_in_input_order(piped, photos):
    piped.scheduler.pipeline = False
    alone = piped.score("a white cup", photos)
    piped.scheduler.pipeline = True
    stats = ScoreStats()
    assert piped.score("a white cup", photos, stats=stats) == pytest.approx(alone, abs=1e-5)
    assert 2 <= stats.chunks_in_flight <= pipeline.PIPELINE_AHEAD  # overlapped, and never more chunks ahead


def test_the_pool_prepares_images_in_order_and_as_one_after_another_would(piped, photos, monkeypatch):
    images = [photo["image"] for photo in photos[:9]]
    monkeypatch.setattr(encoding, "PREPARE_WORKERS", 1)
    one_by_one = list(piped.encoder.encode_images(images))
    monkeypatch.setattr(encoding, "PREPARE_WORKERS", 2)
    pooled = list(piped.encoder.encode_images(images))
    assert all(a.pixel_values.equal(b.pixel_values) and a.grid_thw.equal(b.grid_thw) for a, b in zip(one_by_one, pooled))


def test_a_corrupt_photo_in_the_middle_is_named_and_nothing_is_left_running(piped, photos):
    corrupt = list(photos)
    corrupt[15] = {"image": b"\x89PNG\r\n\x1a\n not really"}
    with pytest.raises(InputError) as caught:
        piped.score("a white cup", corrupt)
    assert caught.value.field == "documents[15].image"
    assert not [thread for thread in threading.enumerate() if thread.name == "lychee-pipeline"]
    assert piped.score("a white cup", photos[:3])  # the scorer goes on


def test_stop_ends_every_chunk_and_hands_up_what_was_scored(piped, photos):
    stop = threading.Event()
    passes = []

    def stop_after_two_passes(*_):
        passes.append(1)
        if len(passes) == 3:  # a prefix, then the first pass of rows
            stop.set()

    handle = piped.model.model.register_forward_hook(stop_after_two_passes)
    try:
        with pytest.raises(ScoringCancelledError) as caught:
            piped.score("a white cup", photos, context=RequestContext(cancel=stop))
    finally:
        handle.remove()
    scored = [pair for pair in caught.value.partial if pair is not None]
    assert len(caught.value.partial) == len(photos) and 1 <= len(scored) < len(photos)
    assert not [thread for thread in threading.enumerate() if thread.name == "lychee-pipeline"]
    reference = piped.score_with_logits("a white cup", photos)
    assert all(
        pair.score == pytest.approx(reference[i].score, abs=1e-5)
        for i, pair in enumerate(caught.value.partial)
        if pair is not None
    )


def test_progress_counts_photos_prepared_and_scored_up_to_all_of_them(piped, photos):
    prepared, scored = [], []
    context = RequestContext(on_prepared=lambda done, total: prepared.append((done, total)))
    piped.score("a white cup", photos, context=context, on_progress=lambda done, total: scored.append((done, total)))
    assert prepared[-1] == (30, 30) and scored[-1] == (30, 30)
    assert [done for done, _ in scored] == sorted(done for done, _ in scored)


def test_bytes_of_a_real_png_go_through_the_pipeline_too(piped):
    buffer = io.BytesIO()
    synthetic_image(3, 200).save(buffer, "PNG")
    documents = [{"image": buffer.getvalue()}] * 12
    assert len(set(round(score, 6) for score in piped.score("a cup", documents))) == 1
