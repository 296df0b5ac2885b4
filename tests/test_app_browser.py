"""The `text4vis app` page end to end in a real headless browser (Debian's chromium + Playwright).

Skipped when chromium or Playwright is missing; ``make test-browser`` installs chromium with
apt-get (as root) and runs only these tests. Playwright drives the system browser
(``executable_path``); it never downloads one. Screenshots go to ``$TEXT4VIS_SCREENSHOT_DIR``
when set (``make test-browser``: ``build/screenshots``), else to the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LABELS = [
    "a red circle moving left",
    "a blue square moving right",
    "a green triangle moving up",
    "a yellow circle moving down",
    "a green circle blinking",
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    required = os.environ.get("TEXT4VIS_REQUIRE_BROWSER") == "1"  # make test-browser
    if CHROMIUM is None:
        if required:
            pytest.fail("chromium is not installed: apt-get install -y chromium")
        pytest.skip("chromium is not installed (make test-browser installs it)")
    try:
        from playwright import sync_api
    except ImportError:
        if required:
            pytest.fail("playwright is not installed: pip install playwright")
        pytest.skip("playwright is not installed (pip install playwright)")
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh profile every run
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


@pytest.fixture(scope="module")
def served(demo_search_model: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from text4vis.predict import Predictor
    from text4vis.search import VideoIndex
    from text4vis.serve import VideoApp, start_in_thread

    root = tmp_path_factory.mktemp("app_browser")
    clips = sorted((demo_search_model["dataset"].root / "videos" / "val").glob("*.mp4"))
    predictor = Predictor.from_pretrained(demo_search_model["model_dir"], device="cpu")
    index = VideoIndex.build(clips, predictor, root / "index")
    app = VideoApp(predictor, index)
    served = start_in_thread(app)  # uvicorn on a free loopback port, in a thread
    yield {"url": served.url, "predictor": predictor, "clips": clips, "root": root}
    served.stop()
    app.close()


def _screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TEXT4VIS_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 800 and image.height >= 400
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 20  # a rendered page, not a blank one


def test_label_and_search_in_a_real_browser(browser: Any, served: dict[str, Any], tmp_path: Path):
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(served["url"] + "/")
    page.wait_for_function("document.getElementById('index-info').textContent.length > 0")
    assert "videos in" in page.inner_text("#index-info")

    # Label: upload a demo clip, type label names, read the top label from the page.
    clip = next(c for c in served["clips"] if c.name.startswith("red_circle_moving_left"))
    page.set_input_files("#video-file", str(clip))
    page.fill("#labels", ", ".join(LABELS))
    page.click("#label-button")
    page.wait_for_selector("#label-results .label-row", timeout=60_000)
    names = page.locator("#label-results .label-name").all_inner_texts()
    expected = served["predictor"].predict([clip], labels=LABELS, top_k=None)[0]
    assert names == [p["label"] for p in expected]  # the page shows the model's ranking
    top_score = page.locator("#label-results .label-score").first.inner_text()
    assert top_score == f"{100 * expected[0]['score']:.1f}%"
    widths = page.eval_on_selector_all(
        "#label-results .bar", "bars => bars.map(b => b.getBoundingClientRect().width)"
    )
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
    track = page.locator("#label-results .track").first.bounding_box()["width"]
    assert widths[0] == pytest.approx(track * expected[0]["score"], abs=1.5)  # bar = score
    assert page.locator("#label-frames img").count() == 8
    assert page.eval_on_selector_all("#label-frames img", "i => i.every(x => x.naturalWidth > 0)")
    shots = _screenshots(tmp_path)
    page.screenshot(path=str(shots / "app-label.png"), full_page=True)

    # Search: a sentence -> thumbnails with scores; a click plays the video.
    page.fill("#query", "a red circle moving left")
    page.press("#query", "Enter")
    page.wait_for_selector("#search-results .hit img.thumb", timeout=60_000)
    assert page.locator("#search-results .hit").count() == 12
    page.wait_for_function(
        "[...document.querySelectorAll('#search-results img.thumb')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    first = page.locator("#search-results .hit-name").first.inner_text()
    assert first.startswith("red_"), first  # the colour the tiny model has learnt
    page.locator("#search-results .hit").first.click()
    page.wait_for_function(
        "(() => { const v = document.getElementById('player');"
        " return v.error !== null || v.readyState >= 2; })()",
        timeout=30_000,
    )
    assert page.evaluate("document.getElementById('player').error") is None  # it plays
    page.screenshot(path=str(shots / "app.png"), full_page=True)

    # An unreadable upload: a message on the page, no traceback; the page keeps working.
    broken = tmp_path / "holiday.mp4"
    broken.write_bytes(b"this is not a video")
    page.set_input_files("#video-file", str(broken))
    page.click("#label-button")
    page.wait_for_selector("#label-error:not([hidden])", timeout=60_000)
    message = page.inner_text("#label-error")
    assert "cannot read holiday.mp4" in message and "Traceback" not in message
    page.screenshot(path=str(shots / "app-error.png"), full_page=True)
    page.set_input_files("#video-file", str(clip))
    page.click("#label-button")
    page.wait_for_selector("#label-results .label-row", timeout=60_000)
    assert page.locator("#label-error").is_hidden()

    for name in ("app-label.png", "app.png", "app-error.png"):
        _check_png(shots / name)
    # Nothing was fetched from anywhere but this server (thumbnails, frames as data: URIs).
    outside = [u for u in requests if not u.startswith((served["url"], "data:", "blob:"))]
    assert not outside, outside
    page.close()


# -- long videos: the timeline strip, and moments of a segment index played from their start --


@pytest.fixture(scope="module")
def long_served(served: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``long.mp4``: a red, a blue and a green demo clip, each looped four times, back to back;
    a server whose index holds its segments (1 s windows)."""
    from text4vis.data.decoders import open_video
    from text4vis.data.synthetic import write_mp4
    from text4vis.search import VideoIndex
    from text4vis.serve import VideoApp, start_in_thread

    predictor = served["predictor"]
    parts = []
    for colour in ("red_", "blue_", "green_"):
        clip = next(c for c in served["clips"] if c.name.startswith(colour))
        reader = open_video(clip)
        frames = reader.frames(list(range(reader.num_frames)))
        parts.append(np.concatenate([frames] * 4))
    long_video = served["root"] / "long.mp4"
    write_mp4(long_video, np.concatenate(parts), fps=8, bframes=0)
    index = VideoIndex.build([long_video], predictor, served["root"] / "moments", segments=1.0)
    app = VideoApp(predictor, index)
    running = start_in_thread(app)
    yield {"url": running.url, "video": long_video, "index": index, "predictor": predictor}
    running.stop()
    app.close()


def test_a_long_video_shows_its_timeline_and_a_moment_plays_from_its_start(
    browser: Any, long_served: dict[str, Any], tmp_path: Path
):
    page = browser.new_page()
    page.goto(long_served["url"] + "/")
    page.wait_for_function("document.getElementById('index-info').textContent.length > 0")
    rows = len(long_served["index"])
    assert page.inner_text("#index-info").startswith(f"1 videos ({rows} segments) in ")
    video = long_served["video"]
    page.set_input_files("#video-file", str(video))
    page.fill("#labels", ", ".join(LABELS))
    page.fill("#window", "1")
    page.click("#label-button")
    page.wait_for_selector("#timeline-strip .segment", timeout=60_000)
    expected = long_served["predictor"].timeline(video, window=1.0, labels=LABELS, top_k=3)
    boxes = page.locator("#timeline-strip .segment")
    assert boxes.all_inner_texts() == [s.label for s in expected.segments]
    assert len(expected.segments) >= 2  # the clips' colours come out as several labels
    widths = page.eval_on_selector_all(
        "#timeline-strip .segment", "b => b.map(x => x.getBoundingClientRect().width)"
    )
    strip = page.locator("#timeline-strip").bounding_box()["width"]
    for width, segment in zip(widths, expected.segments):  # width = share of the duration
        assert width == pytest.approx(
            strip * (segment.end - segment.start) / expected.duration, abs=3
        )
    # A click on a segment plays the labelled video from the segment's start.
    page.wait_for_function("document.getElementById('label-player').readyState >= 1")
    second = expected.segments[1]
    boxes.nth(1).click()
    page.wait_for_function(
        f"document.getElementById('label-player').currentTime >= {second.start - 0.05}"
    )
    at = page.evaluate("document.getElementById('label-player').currentTime")
    assert second.start - 0.05 <= at < second.start + 1.5
    shots = _screenshots(tmp_path)
    page.screenshot(path=str(shots / "app-timeline.png"), full_page=True)

    # Search the segment index: each hit names its moment; a click plays from its start.
    page.fill("#query", "a green circle")
    page.press("#query", "Enter")
    page.wait_for_selector("#search-results .hit .hit-span", timeout=60_000)
    (hit,) = long_served["index"].search(text="a green circle", top_k=1)
    assert hit.start is not None and hit.start > 0  # not the start of the video
    first_span = page.locator("#search-results .hit .hit-span").first.inner_text()
    assert f"{hit.start:.1f} s - {hit.end:.1f} s" in first_span
    page.locator("#search-results .hit").first.click()
    page.wait_for_function(
        f"(() => {{ const v = document.getElementById('player');"
        f" return v.error !== null || (v.readyState >= 2 && v.currentTime >= {hit.start - 0.05}); }})()",
        timeout=30_000,
    )
    player = page.evaluate(
        "(() => { const v = document.getElementById('player');"
        " return {error: v.error, time: v.currentTime}; })()"
    )
    assert player["error"] is None
    assert hit.start - 0.05 <= player["time"] < hit.start + 1.5
    page.screenshot(path=str(shots / "app-moment.png"), full_page=True)
    _check_png(shots / "app-timeline.png")
    page.close()
