"""The clip doors as a hostile caller tries them: a "video" is opened as a clip and nothing else (no file it names
is read, no socket opened, no list that opens itself), its memory is what its frames really are, and a request's
image memory is bounded even alone and never waited for by the request that holds it. Hostile files are made here."""

from __future__ import annotations

import base64
import io
import json
import shutil
import threading
import time
from fractions import Fraction

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from lychee_gradio import LycheeScorer, app
from lychee_gradio.config import Config, Limits
from lychee_gradio.contract import ImagesBusyError, InputError, RequestContext, status_of
from lychee_gradio.inputs import ImageMemoryPool, PixelBudget, admit_images, request_rules, to_item
from lychee_gradio.video import load_video, video_header

from .conftest import MUG
from .helpers import file_data, gradio_call, make_clip, mcp_call, metric

av = pytest.importorskip("av", reason="videos need PyAV")

# An ffconcat list naming a file of the server's (relative to its working directory), one naming nothing, and one
# naming itself: FFmpeg would read the first, tell the second apart, and open the third until it ran out of files.
CONCAT_EXISTING = b"ffconcat version 1.0\nfile lychee_gradio/assets/images/blue_mug.png\n"
CONCAT_MISSING = b"ffconcat version 1.0\nfile lychee_gradio/assets/images/no_such_file.png\n"
CONCAT_SELF = b"ffconcat version 1.0\nfile self.mp4\n"
# A stream description: FFmpeg would bind these UDP ports and wait for packets.
SDP = (
    b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=clip\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=video 18300 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
)
HOSTILE = {"concat_existing": CONCAT_EXISTING, "concat_missing": CONCAT_MISSING, "concat_self": CONCAT_SELF, "sdp": SDP}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def udp_sockets() -> set:
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections(kind="udp")}


def open_files() -> list[str]:
    return sorted(f.path for f in psutil.Process().open_files())


def lying_mjpeg_avi(path, small=(64, 64), large=(640, 640), count: int = 6) -> str:
    """An AVI of MJPEG whose header (and first frame) say 64 x 64, and whose next frames are 640 x 640."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=2)
        stream.width, stream.height, stream.pix_fmt = small[0], small[1], "yuvj420p"
        coders = {}
        for size in (small, large):
            coder = av.CodecContext.create("mjpeg", "w")
            coder.width, coder.height, coder.pix_fmt, coder.time_base = size[0], size[1], "yuvj420p", Fraction(1, 2)
            coders[size] = coder
        for i in range(count):
            size = small if i == 0 else large
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 40 * i, np.uint8), format="rgb24")
            frame = frame.reformat(format="yuvj420p")
            frame.pts, frame.time_base = i, Fraction(1, 2)
            for packet in coders[size].encode(frame):
                packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 2)
                container.mux(packet)
    return str(path)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=3)


@pytest.fixture(scope="module")
def small_pool_app(scorer):
    """A server (with MCP) whose image memory holds about nine 300 x 300 photos (51 bytes a pixel) and waits 1 s."""
    config = Config(limits=Limits(image_memory_in_flight=40 * 2**20, image_memory_wait=1.0), request_timeout=90)
    running = app.start(scorer, app.ServerSettings(port=0, mcp=True, config=config))
    yield running.url
    running.close()


# -- a clip is only a clip --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_the_library_refuses_lists_and_descriptions_before_ffmpeg_sees_them(name):
    with pytest.raises(InputError) as refused:
        load_video(HOSTILE[name], "documents[0].video")
    assert (refused.value.field, refused.value.code, refused.value.status) == ("documents[0].video", "video_container", 400)


def test_a_list_naming_an_existing_file_gets_the_same_answer_as_one_naming_a_missing_file(live_app):
    answers = [
        httpx.post(f"{live_app}v1/rerank", timeout=30, json={"query": "q", "documents": ["text", {"video": b64(data)}]})
        for data in (CONCAT_EXISTING, CONCAT_MISSING)
    ]
    assert [a.status_code for a in answers] == [400, 400]
    assert answers[0].json()["message"] == answers[1].json()["message"]
    assert answers[0].json()["field"] == "documents[1].video" and "MP4" in answers[0].json()["message"]


def test_vllm_score_refuses_a_list_alike(live_app):
    score = httpx.post(
        f"{live_app}v1/score",
        timeout=30,
        json={
            "text_1": "q",
            "text_2": [
                {"content": [{"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + b64(CONCAT_EXISTING)}}]}
            ],
        },
    )
    assert score.status_code == 400 and "MP4/MOV" in score.json()["message"]


def test_mcp_refuses_a_list_alike(small_pool_app):
    result = mcp_call(small_pool_app, "score", {"query": "q", "document": {"video": b64(CONCAT_EXISTING)}})
    assert result.isError and json.loads(result.content[0].text)["code"] == "video_container"


def test_a_stream_description_is_refused_at_once_and_no_socket_is_opened(live_app):
    before = udp_sockets()
    started = time.monotonic()
    answer = httpx.post(f"{live_app}v1/rerank", timeout=30, json={"query": "q", "documents": [{"video": b64(SDP)}]})
    elapsed = time.monotonic() - started
    assert answer.status_code == 400 and answer.json()["code"] == "video_container"
    assert udp_sockets() == before
    assert elapsed < 5  # FFmpeg waited 20 s for packets; the refusal comes from the first bytes


def test_a_self_referencing_list_uploaded_to_the_page_api_is_refused_and_opens_no_file(live_app, tmp_path):
    uploaded = httpx.post(f"{live_app}gradio_api/upload", files={"files": ("self.mp4", CONCAT_SELF)}, timeout=30).json()[0]
    before = open_files()
    kind, message = gradio_call(live_app, "rank_images", ["q", None, [file_data(uploaded)], None, 0, None, 0], with_event=True)
    assert kind == "error" and "self.mp4" in message and "MP4/MOV" in message
    assert open_files() == before


def test_a_video_of_the_wrong_type_on_a_json_door_is_not_told_to_give_a_path(live_app):
    answer = httpx.post(f"{live_app}v1/rerank", timeout=30, json={"query": "q", "documents": [{"video": 42}]})
    assert answer.status_code == 422 and "path" not in answer.json()["message"]


# -- a clip's memory is what its frames are -----------------------------------------------------------------


def test_a_frame_larger_than_the_header_says_is_refused_not_kept(tmp_path):
    path = lying_mjpeg_avi(tmp_path / "lying.avi")
    assert (video_header(path, "d").width, video_header(path, "d").height) == (64, 64)
    with pytest.raises(InputError) as refused:
        load_video(path, "documents[0].video")
    assert refused.value.code == "video_frame_size" and "64x64" in str(refused.value)


def test_a_clip_takes_its_frames_memory_from_its_header_with_the_requests_images(clip):
    limits = Limits(image_memory_in_flight=500 * 2**20)
    context = RequestContext()
    rules = request_rules(limits, 1_000_000, context)
    admit_images(["q", {"image": MUG}, {"video": clip}], rules)
    header = video_header(clip, "v")
    # Decoded pixels of every frame kept while decoding, patches (48 bytes a pixel) of the frames the model sees.
    with Image.open(MUG) as mug:
        assert rules.budget.pool.used == 51 * mug.width * mug.height + (3 * header.frames + 48 * header.kept) * 96 * 64
    to_item({"video": clip}, "documents[1]", rules=rules)  # decoding takes nothing more: it cannot wait on itself
    context.close()
    assert rules.budget.pool.used == 0


def test_a_pipelined_request_counts_the_patches_of_the_documents_in_flight_only():
    rules = request_rules(Limits(), 1_000_000, RequestContext())
    photos = [{"image": base64.b64decode(png(100, 80, k))} for k in range(30)]
    admit_images(["q", *photos], rules, documents_in_flight=24)
    # every photo's decoded pixels (3 bytes a pixel), the patches (48) of the 24 documents in flight at once
    assert rules.budget.pool.used == (3 * 30 + 48 * 24) * 100 * 80
    rules.budget.release()


# -- a request alone is bounded, and never waits on itself ----------------------------------------------------


def test_a_request_that_can_never_fit_the_pool_is_refused_at_once_saying_what_would():
    pool = ImageMemoryPool(limit=1000)
    with pytest.raises(InputError) as refused:
        PixelBudget(None, pool).admit(5000, fits=3)
    assert refused.value.code == "request_memory" and refused.value.status == 413
    assert "at most 3" in str(refused.value) and pool.used == 0


def test_a_request_that_finds_the_pool_taken_is_answered_busy_after_a_short_wait():
    pool = ImageMemoryPool(limit=1000, wait=0.2)
    PixelBudget(None, pool).admit(800)
    with pytest.raises(ImagesBusyError) as busy:
        PixelBudget(None, pool).admit(500)
    assert status_of(busy.value) == 503 and busy.value.retry_after_seconds > 0 and pool.used == 800


def png(width: int, height: int, seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return b64(buffer.getvalue())


def test_many_distinct_images_over_the_pool_get_a_413_naming_the_limit_and_the_server_keeps_serving(small_pool_app):
    documents = [{"images": [png(300, 300, 4 * d + k) for k in range(4)]} for d in range(4)]
    answer = httpx.post(f"{small_pool_app}v1/rerank", timeout=60, json={"query": "q", "documents": documents})
    assert answer.status_code == 413 and answer.json()["code"] == "request_memory"
    assert "40 MB" in answer.json()["message"] and "at most 9" in answer.json()["message"]
    fits = httpx.post(f"{small_pool_app}v1/rerank", timeout=60, json={"query": "q", "documents": documents[:2]})
    assert fits.status_code == 200


def test_photos_and_a_clip_over_the_pool_are_refused_at_once_and_others_are_not_held_up(small_pool_app, clip):
    photos = [{"image": png(300, 300, 100 + k)} for k in range(8)]
    clip_data = b64(open(clip, "rb").read())
    answers = {}

    def big():
        answers["big"] = httpx.post(
            f"{small_pool_app}v1/rerank", timeout=90, json={"query": "q", "documents": [*photos, {"video": clip_data}] * 2}
        )

    worker = threading.Thread(target=big)
    worker.start()
    one = httpx.post(f"{small_pool_app}v1/rerank", timeout=90, json={"query": "q", "documents": [photos[0]]})
    worker.join(90)
    assert answers["big"].status_code == 413 and answers["big"].json()["code"] == "request_memory"
    assert one.status_code == 200


# -- errors are counted as what they are ------------------------------------------------------------------------


def test_a_page_input_mistake_is_counted_as_a_4xx_in_the_metrics(live_app):
    before = metric(live_app, "lychee_requests_total", endpoint="/score", status="400")
    five_before = metric(live_app, "lychee_requests_total", endpoint="/score", status="500")
    kind, _ = gradio_call(live_app, "score", ["", None, "a document", None, None, None, None], with_event=True)
    assert kind == "error"
    assert metric(live_app, "lychee_requests_total", endpoint="/score", status="400") == before + 1
    assert metric(live_app, "lychee_requests_total", endpoint="/score", status="500") == five_before


def test_a_checkpoint_without_a_video_slot_answers_a_clip_with_a_400_naming_the_model(tiny_model_dir, tmp_path, clip):
    folder = tmp_path / "no-video"
    shutil.copytree(tiny_model_dir, folder)
    template = folder / "chat_template.jinja"
    template.write_text(template.read_text().replace("<|vision_start|><|video_pad|><|vision_end|>", ""))
    with LycheeScorer.load(str(folder), device="cpu", dtype="float32") as scorer:
        with pytest.raises(InputError) as refused:
            scorer.score("q", ["text", {"video": clip}])
        assert scorer.score("q", ["text"])  # text still scores
    assert refused.value.field == "documents[1].video" and refused.value.code == "no_video_slot"
    assert refused.value.status == 400 and "no-video" in str(refused.value) and str(tmp_path) not in str(refused.value)


def test_a_timeout_names_what_took_the_time(scorer):
    from lychee_gradio.contract import ScoringTimeoutError
    from lychee_gradio.service import Service

    service = Service(scorer, Config(request_timeout=1e-6))
    with pytest.raises(ScoringTimeoutError, match=r"\(reading its images\)"):
        with service.request("/test") as req:
            req.read("q", [{"image": MUG}], scorer)
    with Service(scorer).request("/test") as req:
        query, documents = req.read("q", ["a document"], scorer)
    with pytest.raises(ScoringTimeoutError, match=r"\(scoring\)"):
        with service.request("/test") as req:
            req.score(scorer, query, documents)


def test_a_jpeg_counts_the_size_its_decoder_scales_to_and_every_image_counts_past_the_pixel_limit():
    buffer = io.BytesIO()
    Image.new("RGB", (3500, 3500), (90, 120, 200)).save(buffer, format="JPEG")
    rules = request_rules(Limits(max_request_pixels=1_000_000), 1_000_000, RequestContext())
    admit_images(["q", {"image": buffer.getvalue()}, {"image": buffer.getvalue()}], rules)
    # factor 3, but a JPEG's decoder scales by 1/2: 1750 x 1750 decoded; both images count though the first
    # already passes the request's pixel limit (decoding refuses it; nothing decodes without its memory taken).
    assert rules.budget.pool.used == 2 * (3 * 1750 * 1750 + 48 * 1_000_000)
    rules.budget.release()
