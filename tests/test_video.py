"""Video documents: clips made here with PyAV (a moving square), sampled by the stated rule, scored as the
processor's own video path scores the same frames, on both families, through the library and the JSON doors."""

from __future__ import annotations

import base64

import httpx
import pytest

from lychee_gradio import InputError, app
from lychee_gradio.config import Config, Limits
from lychee_gradio.contract import Item
from lychee_gradio.engine.naive import NaiveScorer
from lychee_gradio.video import MAX_FRAMES, load_video, targets_for

from .helpers import make_clip

av = pytest.importorskip("av", reason="videos need PyAV (a dependency of the app)")

QUERY = "a red square moving to the right"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {
        "mp4": make_clip(folder / "a.mp4"),
        "webm": make_clip(folder / "b.webm", codec="libvpx"),
        "short": make_clip(folder / "short.mp4", seconds=2.5),
        "long": make_clip(folder / "long.mp4", 100, 2, (32, 32)),
    }


# -- the sampling rule ----------------------------------------------------------------------------------------


def test_frames_are_sampled_at_one_per_second_from_the_start(clips):
    for kind in ("mp4", "webm"):
        video = load_video(clips[kind], "documents[0].video")
        assert video.timestamps == (0.0, 1.0, 2.0, 2.9) and video.indices == (0, 10, 20, 29)  # 3: past the end
        assert (video.fps, video.duration, len(video.frames)) == (10.0, 3.0, 4)


def test_an_odd_count_repeats_the_last_frame_and_a_long_clip_gets_64_evenly_spaced(clips):
    short = load_video(clips["short"], "d")
    assert short.timestamps == (0.0, 1.0, 2.0, 2.0)
    long = load_video(clips["long"], "d")
    assert len(long.frames) == MAX_FRAMES and long.timestamps[0] == 0.0 and long.timestamps[-1] == 99.5
    assert targets_for(100) == [100 * k / 63 for k in range(64)]
    assert all(b >= a for a, b in zip(long.timestamps, long.timestamps[1:]))


def test_a_truncated_clip_or_a_file_that_is_no_video_is_refused_by_name(clips):
    data = open(clips["mp4"], "rb").read()
    for broken in (data[: len(data) // 2], b"\x89PNG\r\n\x1a\n" + bytes(200), open(clips["webm"], "rb").read()[:900]):
        with pytest.raises(InputError) as refused:
            load_video(broken, "documents[2].video")
        assert refused.value.field == "documents[2].video"
        assert refused.value.code in ("video_decode", "video_truncated", "video_container")


def test_the_duration_and_byte_limits_are_checked_before_decoding(clips, monkeypatch):
    monkeypatch.setattr(av.container.InputContainer, "decode", lambda *a, **k: pytest.fail("decoded anyway"))
    with pytest.raises(InputError) as too_long:
        load_video(clips["long"], "documents[0].video", max_seconds=10)
    assert too_long.value.code == "video_seconds" and too_long.value.status == 413
    with pytest.raises(InputError) as too_big:
        load_video(open(clips["mp4"], "rb").read(), "documents[0].video", max_bytes=100)
    assert too_big.value.code == "video_bytes" and too_big.value.status == 413


# -- scores ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def naives(tiny_model_dir, tiny_qwen3_dir):
    return {"qwen2_5_vl": NaiveScorer.load(tiny_model_dir), "qwen3_vl": NaiveScorer.load(tiny_qwen3_dir)}


@pytest.fixture(params=["qwen2_5_vl", "qwen3_vl"])
def family(request, scorer, qwen3_scorer, naives):
    return {"qwen2_5_vl": scorer, "qwen3_vl": qwen3_scorer}[request.param], naives[request.param]


def test_a_video_document_scores_as_the_processors_video_path_fed_the_same_frames(family, clips, red_image):
    engine, naive = family
    video = load_video(clips["mp4"], "d")
    (pair,) = engine.encoder.encode(Item(text=QUERY), [Item(text="a clip", video=video)], "inst")
    expected_inputs = naive.inputs((QUERY, None), ("a clip", None, video), "inst")
    assert pair.input_ids.tolist() == expected_inputs["input_ids"][0].tolist()
    assert pair.mm_token_type_ids.tolist() == expected_inputs["mm_token_type_ids"][0].tolist()
    documents = [
        {"text": "a clip", "video": clips["mp4"]},
        {"video": clips["webm"]},
        "a red square",
        {"text": "both", "image": red_image, "video": clips["mp4"]},
    ]
    scores = engine.score(QUERY, documents)
    expected = [
        naive.score((QUERY, None), ("a clip", None, video)),
        naive.score((QUERY, None), (None, None, load_video(clips["webm"], "d"))),
        naive.score((QUERY, None), ("a red square", None)),
        naive.score((QUERY, None), ("both", red_image, video)),
    ]
    assert scores == pytest.approx(expected, abs=1e-5)


def test_each_qwen3_frame_has_its_timestamp_and_wrapper_and_the_clip_no_outer_one(qwen3_scorer, scorer, clips):
    # As Qwen3-VL was released (its processor, vLLM, transformers >= 5.25): "<0.5 seconds><|vision_start|>...
    # <|vision_end|><2.5 seconds>...", not the outer pair transformers 5.0-5.24 left around the frames.
    video = load_video(clips["mp4"], "d")  # 4 frames: 2 temporal patches
    (pair,) = qwen3_scorer.encoder.encode(Item(text=QUERY), [Item(text="a clip", video=video)], "inst")
    text = qwen3_scorer.processor.tokenizer.decode(pair.input_ids.tolist()).replace("<|video_pad|>", "")
    assert "<Document>:<0.5 seconds><|vision_start|><|vision_end|><2.5 seconds><|vision_start|><|vision_end|>a clip" in text
    (pair,) = qwen3_scorer.encoder.encode(Item(text="q", video=video), [Item(text="d", video=video)], "inst")
    text = qwen3_scorer.processor.tokenizer.decode(pair.input_ids.tolist()).replace("<|video_pad|>", "")
    frames = "<0.5 seconds><|vision_start|><|vision_end|><2.5 seconds><|vision_start|><|vision_end|>"
    assert f"<Query>:{frames}q" in text and f"<Document>:{frames}d" in text  # a clip on each side
    (pair,) = scorer.encoder.encode(Item(text=QUERY), [Item(text="a clip", video=video)], "inst")
    text = scorer.processor.tokenizer.decode(pair.input_ids.tolist()).replace("<|video_pad|>", "")
    assert "<Document>:<|vision_start|><|vision_end|>a clip" in text  # Qwen2.5-VL: one wrapper around the clip


def test_a_video_scores_the_same_amid_images_and_texts_as_alone(scorer, clips, red_image, blue_image):
    documents = [
        {"image": red_image},
        {"video": clips["mp4"]},
        "a red square",
        {"text": "x", "image": blue_image},
        {"video": clips["short"]},
    ]
    together = scorer.score(QUERY, documents)
    alone = [scorer.score(QUERY, [document])[0] for document in documents]
    assert together == pytest.approx(alone, abs=1e-5)


def test_a_query_holding_a_video_scores_as_the_reference_against_any_document(family, clips, red_image):
    engine, naive = family
    query, video = {"text": "this clip", "video": clips["mp4"]}, load_video(clips["mp4"], "q")
    documents = ["a red square", {"image": red_image}, {"text": "another", "video": clips["short"]}]
    scores = engine.score(query, documents)
    expected = [
        naive.score(("this clip", None, video), ("a red square", None)),
        naive.score(("this clip", None, video), (None, red_image)),
        naive.score(("this clip", None, video), ("another", None, load_video(clips["short"], "d"))),
    ]
    assert scores == pytest.approx(expected, abs=1e-5)


# -- the JSON doors -------------------------------------------------------------------------------------------


def data_url(path: str) -> str:
    return "data:video/mp4;base64," + base64.b64encode(open(path, "rb").read()).decode()


@pytest.fixture(scope="module")
def video_app(scorer):
    running = app.start(scorer, app.ServerSettings(port=0, config=Config(limits=Limits(max_video_seconds=30))))
    yield running.url
    running.close()


def test_v1_rerank_takes_a_video_url_part_and_a_video_key_with_the_librarys_scores(video_app, scorer, clips):
    part = {"type": "video_url", "video_url": {"url": data_url(clips["mp4"])}}
    body = {
        "query": QUERY,
        "documents": [
            {"content": [{"type": "text", "text": "a clip"}, part]},
            {"text": "a clip", "video": base64.b64encode(open(clips["mp4"], "rb").read()).decode()},
            "a red square",
        ],
    }
    answer = httpx.post(f"{video_app}v1/rerank", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    scores = {r["index"]: r["relevance_score"] for r in answer.json()["results"]}
    expected = scorer.score(QUERY, [{"text": "a clip", "video": clips["mp4"]}] * 2 + ["a red square"])
    assert [scores[i] for i in range(3)] == pytest.approx(expected, abs=1e-6)
    vllm = httpx.post(f"{video_app}v1/score", json={"text_1": QUERY, "text_2": [{"content": [part]}]}, timeout=120)
    assert vllm.json()["data"][0]["score"] == pytest.approx(scorer.score(QUERY, [{"video": clips["mp4"]}])[0], abs=1e-6)


def test_v1_rerank_refuses_a_truncated_video_a_long_one_and_a_path_naming_the_document(video_app, clips):
    data = open(clips["mp4"], "rb").read()
    cut = base64.b64encode(data[: len(data) // 2]).decode()
    broken = httpx.post(f"{video_app}v1/rerank", json={"query": "q", "documents": ["a", {"video": cut}]}, timeout=60)
    assert broken.status_code == 400 and broken.json()["field"] == "documents[1].video"
    long = httpx.post(f"{video_app}v1/rerank", json={"query": "q", "documents": [{"video": data_url(clips["long"])}]}, timeout=60)
    assert long.status_code == 413 and "30 s" in long.json()["message"]
    path = httpx.post(f"{video_app}v1/rerank", json={"query": "q", "documents": [{"video": clips["mp4"]}]}, timeout=60)
    assert path.status_code == 400 and path.json()["code"] == "file_path_http" and clips["mp4"] not in path.text
    two = {"content": [{"type": "video_url", "video_url": {"url": data_url(clips["mp4"])}}] * 2}
    assert httpx.post(f"{video_app}v1/rerank", json={"query": "q", "documents": [two]}, timeout=60).json()["code"] == (
        "one_video"
    )
    assert httpx.post(f"{video_app}v1/rerank", json={"query": "q", "documents": ["a"]}, timeout=60).status_code == 200


# -- the page -------------------------------------------------------------------------------------------------


def test_the_batch_tab_takes_a_clip_attached_to_a_block_or_on_its_own(scorer, clips):
    from lychee_gradio.ui.batch import rerank_view

    from .conftest import CUP, page

    uploads = [CUP, clips["mp4"], clips["short"]]
    _, rows = page(rerank_view, scorer, QUERY, None, "a cup and its clip [image: 1] [video: a.mp4]\n---\nplain", uploads, "", 0)
    by_index = {row["index"]: row["score"] for row in rows}
    expected = scorer.score(
        QUERY, [{"text": "a cup and its clip", "image": CUP, "video": clips["mp4"]}, "plain", {"video": clips["short"]}]
    )
    assert [by_index[i] for i in range(3)] == pytest.approx(expected, abs=1e-6)
    media = {(row["image"], row["video"]) for row in rows}
    assert media >= {("mountain_cup.png", "a.mp4"), (None, "short.mp4")}  # a column per kind of media


def test_image_ranking_ranks_a_clip_among_photos_and_shows_its_first_frame(scorer, clips):
    from PIL import Image

    from lychee_gradio.ui.images import rank_images_view

    from .conftest import CUP, MUG, page

    gallery, rows = page(rank_images_view, scorer, QUERY, None, [CUP, clips["mp4"], MUG], "", 0)
    expected = scorer.score(QUERY, [{"image": CUP}, {"video": clips["mp4"]}, {"image": MUG}])
    assert {row["index"]: row["score"] for row in rows} == pytest.approx(dict(enumerate(expected)), abs=1e-6)
    clip_entry = next(entry for entry, row in zip(gallery, rows) if row["image"] == "a.mp4")
    assert isinstance(clip_entry[0], Image.Image) and clip_entry[0].size == (96, 64)


def test_a_long_clip_seeks_to_each_target_and_gets_the_frames_a_full_decode_gets(clips, monkeypatch):
    import lychee_gradio.video as video_module

    seeking = load_video(clips["long"], "d")
    monkeypatch.setattr(video_module, "SEEK_AFTER_SECONDS", 10_000.0)
    in_order = load_video(clips["long"], "d")
    assert seeking.timestamps == in_order.timestamps
    assert all(a.tobytes() == b.tobytes() for a, b in zip(seeking.frames, in_order.frames))


def test_frames_over_the_pixel_limit_are_refused_from_the_header(clips, monkeypatch):
    monkeypatch.setattr(av.container.InputContainer, "decode", lambda *a, **k: pytest.fail("decoded anyway"))
    with pytest.raises(InputError) as refused:
        load_video(clips["mp4"], "documents[0].video", max_frame_pixels=96 * 64 - 1)
    assert refused.value.code == "video_pixels" and refused.value.status == 413


def test_clips_are_prepared_while_the_model_runs_and_score_as_alone(scorer, clips):
    from lychee_gradio import LycheeScorer

    small_batches = LycheeScorer(
        scorer.model, scorer.processor, model_name=scorer.model_name, device="cpu", batch_size=2, family=scorer.family
    )
    documents = [
        {"video": clips["mp4"]},
        "a red square",
        {"video": clips["short"]},
        {"text": "x", "video": clips["webm"]},
        "plain",
        {"video": clips["mp4"]},
    ]
    assert len(documents) > 2 * small_batches.batch_size  # the pipelined path (engine/pipeline.py)
    together = small_batches.score(QUERY, documents)
    alone = [scorer.score(QUERY, [document])[0] for document in documents]
    assert together == pytest.approx(alone, abs=1e-5)
    small_batches.close()


def test_why_this_score_gives_a_clip_a_timeline_of_its_frame_pairs(scorer, clips):
    from lychee_gradio.contract import Video

    clip = load_video(clips["mp4"], "d")  # 4 frames: two pairs, 0-1 s and 2-2.9 s
    document = Item(text="a clip", video=clip)
    found = scorer.explain(Item(text=QUERY), document, grid=1)
    assert [(step.start, step.end) for step in found.timeline] == [(0.0, 1.0), (2.0, 2.9)]
    without_first = Video(clip.frames[2:], clip.timestamps[2:], clip.indices[2:], clip.fps, clip.duration)
    alone = scorer.score(QUERY, [Item(text="a clip", video=without_first)])[0]
    assert found.timeline[0].delta == pytest.approx(found.score - alone, abs=1e-5)
    assert found.as_dict()["timeline"][1]["start"] == 2.0


def test_the_compare_tab_ranks_a_clip_attached_to_a_block_with_both_models(scorer, qwen3_scorer, clips):
    from lychee_gradio.service import Service
    from lychee_gradio.ui.compare import compare_view

    with Service([scorer, qwen3_scorer]).request("/compare") as req:
        _, details = compare_view(
            req, scorer, qwen3_scorer, ("a", "b"), QUERY, None, "the clip [video: a.mp4]\n---\nplain", [clips["mp4"]], ""
        )
    documents = [{"text": "the clip", "video": clips["mp4"]}, "plain"]
    rows = {row["index"]: row for row in details["rows"]}
    assert [rows[i]["score_a"] for i in range(2)] == pytest.approx(scorer.score(QUERY, documents), abs=1e-6)
    assert [rows[i]["score_b"] for i in range(2)] == pytest.approx(qwen3_scorer.score(QUERY, documents), abs=1e-6)
    assert (rows[0]["image"], rows[0]["video"]) == (None, "a.mp4")


def test_a_tag_that_matches_no_upload_is_quoted_as_the_user_wrote_it():
    from lychee_gradio.ui.forms import PageError, parse_documents

    with pytest.raises(PageError, match=r"\[video: clip.mp4\] matches no uploaded file"):
        parse_documents("a [video: clip.mp4]", [])


def test_the_single_tab_takes_several_images_and_a_clip_as_the_api_does(scorer, clips):
    from lychee_gradio.ui.single import score_view

    from .conftest import CUP, MUG, page

    _, details = page(score_view, scorer, QUERY, None, "a cup", CUP, "", [MUG, clips["mp4"]])
    expected = scorer.score(QUERY, [{"text": "a cup", "images": [CUP, MUG], "video": clips["mp4"]}])[0]
    assert details["score"] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(Exception, match="at most one video"):
        page(score_view, scorer, QUERY, None, "a cup", None, "", [clips["mp4"], clips["short"]])
