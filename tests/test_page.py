"""The page agrees with what was computed, in a real browser: every event applies or says why not, typed values are
used as the box shows them or refused with the box put back, downloads describe the views, odd codecs get a
playable preview, clearing the video resets the page, and nothing a user does paints gradio's "Error" badges or
logs a traceback."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from conftest import require_tool
from media import pattern, write
from servers import app_server

R_BOX = 'input[aria-label="number input for Retention r (fraction of tokens kept)"]'
TAU_BOX = 'input[aria-label="number input for log₁₀ τ (τ from 0.01 to 5; 0 → τ = 1)"]'
K_BOX = 'input[aria-label="number input for Spatial window k (odd)"]'
FRAMES_BOX = 'input[aria-label="number input for Frames sampled"]'
B_MIN = "B_min: tokens every frame keeps"
B_MAX = "B_max: most tokens a frame keeps (0: no cap)"
CHART_TITLE = "() => document.querySelector('#budgets .gtitle')?.textContent || ''"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Clips a browser cannot play (MS-MPEG4 and FFV1 in AVI, MJPEG in MOV) and one that is not a video."""
    d = tmp_path_factory.mktemp("page-media")
    frames = pattern(12, 96, 128)
    clips = {name: write(d / name, frames, codec=codec, pix_fmt=pix)
             for name, codec, pix in (("msmpeg4.avi", "msmpeg4", "yuv420p"), ("ffv1.avi", "ffv1", "yuv420p"),
                                      ("mjpeg.mov", "mjpeg", "yuvj420p"))}
    (d / "garbage.mp4").write_bytes(bytes(range(256)) * 64)
    return {**clips, "garbage": d / "garbage.mp4"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with app_server(tmp_path_factory.mktemp("page") / "app.log", ENTROPY_SELECT_MAX_FRAMES="24",
                    ENTROPY_SELECT_ENCODER="efficientnet-lite0", ENTROPY_SELECT_WARM="1") as s:
        yield s


@pytest.fixture(scope="module")
def browser(server):
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        yield b
        b.close()


class Page:
    """One visitor's page, with the checks every test makes: no "Error" badge, no error in the server's log."""

    def __init__(self, browser, server):
        self.url, _, self.log = server
        self.log_start = len(self.log.read_text())
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.goto(self.url)
        self.page.wait_for_selector("text=ENTROPY-SELECT Explorer")

    def summary(self) -> str:
        return self.page.locator("#summary-md").inner_text()

    def wait_summary(self, pattern: str, timeout: float = 120_000) -> str:
        try:
            self.page.wait_for_function(
                "re => new RegExp(re).test(document.querySelector('#summary-md')?.innerText || '')",
                arg=pattern, timeout=timeout)
        except Exception as e:
            raise AssertionError(f"the page never said /{pattern}/; it shows:\n{self.page.inner_text('body')[:2500]}"
                                 f"\nserver log:\n{self.new_log()[-3000:]}") from e
        return self.summary()

    def example(self, index: int = 0) -> str:
        self.page.locator("#examples img").nth(index).click()
        return self.wait_summary("Kept [0-9,]+ of")

    def settle(self, ms: int = 1500) -> None:
        """Let every event of the last action finish (the queue empties, the page stops changing)."""
        self.page.wait_for_timeout(ms)
        self.page.wait_for_function("() => !document.querySelector('.progress-text, .eta-bar, .meta-text-center')",
                                    timeout=120_000)

    def new_log(self) -> str:
        return self.log.read_text()[self.log_start:]

    def assert_clean(self, what: str) -> None:
        badges = self.page.get_by_text("Error", exact=True).count()
        log = self.new_log()
        assert badges == 0, f"{what}: {badges} 'Error' badges on the page:\n{self.page.inner_text('body')[:2000]}"
        bad = [line for line in log.splitlines() if re.search(r"Traceback|ValueError|TypeError|ERROR", line)]
        assert not bad, f"{what}: the server logged errors:\n{log[-4000:]}"

    def field(self, label: str):
        acc = self.page.get_by_text("Frame budgets: q, τ_alloc, B_min, B_max")
        box = self.page.get_by_label(label)
        if not box.is_visible():
            acc.click()
            box.wait_for(state="visible")
        return box

    def type_in(self, locator, text: str, key: str = "Enter") -> None:
        box = self.page.locator(locator) if isinstance(locator, str) else locator
        box.click()
        box.fill(text)
        box.press(key)

    def chart(self) -> str:
        return self.page.evaluate(CHART_TITLE)

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def visitor(browser, server):
    p = Page(browser, server)
    yield p
    p.close()


@pytest.mark.browser
def test_every_control_applies_and_no_event_errors(visitor):
    """Each control with no change (click in, leave; Enter) and with a change: the views follow, no event errors.
    The budget fields apply in any order and by Enter, Tab or blur, each value once."""
    v, page = visitor, visitor.page
    v.example()
    v.settle()
    # no-ops: into every box and out again, Enter in each slider box, each budget field focused and left
    for box in page.locator('input[aria-label^="number input for"]').all():
        box.click()
        box.press("Enter")
    for label in ("q: share of a frame's best tokens in its saliency S̄_f", "τ_alloc: temperature of the budget softmax",
                  B_MIN, B_MAX):
        v.field(label).click()
        page.locator("h1").first.click()
    v.settle()
    v.assert_clean("no-op focus, Enter and blur")
    assert "Kept" in v.summary()
    # changes, in the order a user might make them: B_max then B_min by Enter; both reach the chart
    v.type_in(v.field(B_MAX), "300")
    v.type_in(v.field(B_MIN), "10")
    page.wait_for_function(f"() => ({CHART_TITLE})().includes('B_min 10, B_max 300')", timeout=60_000)
    # a run of values by Tab: the last one typed is the one shown, none is lost
    for n in (11, 12, 13, 14, 15):
        v.type_in(v.field(B_MIN), str(n), key="Tab")
    page.wait_for_function(f"() => ({CHART_TITLE})().includes('B_min 15, B_max 300')", timeout=60_000)
    v.settle()
    assert "B_min 15, B_max 300" in v.chart()
    # by blur alone (a click elsewhere)
    v.field(B_MAX).fill("200")
    page.locator("h1").first.click()
    page.wait_for_function(f"() => ({CHART_TITLE})().includes('B_max 200')", timeout=60_000)
    # the checkboxes, the Analyze button, a slider's box
    page.get_by_label("Grid fusion (merge each cell's dropped tokens)").check()
    v.wait_summary("fused")
    page.get_by_role("button", name="Analyze").click()
    v.type_in(R_BOX, "0.2")
    v.wait_summary(r"\((20\.0|19\.9) %\)")
    # the buttons of the other tabs, with and without their inputs set
    page.get_by_role("tab", name="Latency").click()
    page.get_by_role("button", name="Measure selection latency vs retention").click()
    v.settle()
    v.assert_clean("every control")


@pytest.mark.browser
def test_typed_values_are_used_as_shown_or_refused_and_put_back(visitor):
    """A value outside a slider's range, off its step or not a number is brought to one the slider takes, and the
    views use what the box shows. Budget values the selector refuses (a 64-bit overflow, an empty field) are named,
    the views stay, and the box goes back to the value the views use."""
    v, page = visitor, visitor.page
    v.example()
    for typed, box_shows, summary in (("0", "0.01", r"\(1\.0 %\)"), ("2", "1", r"\(100\.0 %\)"),
                                      ("-1", "0.01", r"\(1\.0 %\)"), ("0.001", "0.01", r"\(1\.0 %\)"),
                                      ("0.355", "0.36", r"\(3[56]\.[0-9] %\)")):
        v.type_in(R_BOX, typed)
        v.wait_summary(summary)
        assert page.locator(R_BOX).input_value() == box_shows, typed
    v.type_in(FRAMES_BOX, "1000")  # the server's cap here is 24 frames
    v.wait_summary("grid 24 frames")
    assert page.locator(FRAMES_BOX).input_value() == "24"
    v.type_in(FRAMES_BOX, "1")
    v.wait_summary("grid 4 frames")
    assert page.locator(FRAMES_BOX).input_value() == "4"
    v.type_in(TAU_BOX, "3")  # log10 τ at most 0.7: τ = 5.01, in the text and in the views' settings
    page.wait_for_selector("text=tau = 5.01")
    v.wait_summary("τ = 5.01")
    v.type_in(K_BOX, "4")  # k steps by 2 from 3: 4 is not a k the slider offers
    v.settle()
    assert page.locator(K_BOX).input_value() in ("3", "5")
    assert "must be odd" not in v.summary()
    before = v.chart()
    for typed, why in (("99999999999999999999", "max_tokens must be <= 2,147,483,647"), ("", "max_tokens needs a number")):
        v.type_in(v.field(B_MAX), typed)
        v.wait_summary(f"Not applied.*{re.escape(why)}")
        page.wait_for_function(f"() => document.querySelector('[aria-label=\"{B_MAX}\"]')?.value === '0'",
                               timeout=30_000)
        assert v.field(B_MAX).input_value() == "0" and v.chart() == before
    v.settle()
    v.assert_clean("typed values")


@pytest.mark.browser
def test_downloads_always_describe_the_views(visitor):
    """With the Downloads tab open, a move of r rewrites the files: the JSON downloaded says what the summary says."""
    v, page = visitor, visitor.page
    v.example()
    if page.get_by_role("tab", name="Downloads").count() == 0:  # in the tab bar's overflow menu at this width
        page.get_by_role("button", name="More tabs").click()
        page.locator(".overflow-dropdown").get_by_text("Downloads", exact=True).click()
    else:
        page.get_by_role("tab", name="Downloads").click()
    page.wait_for_selector("text=/selection-.*\\.json/")
    for typed in ("0.1", "0.5"):
        v.type_in(R_BOX, typed)
        kept = int(re.search(r"Kept ([0-9,]+) of", v.wait_summary(rf"\({float(typed) * 100:.1f} %\)")).group(1)
                   .replace(",", ""))
        page.wait_for_function("k => { const a = document.querySelector('#json-file a'); return a && a.href; }",
                               arg=kept)
        href = page.locator("#json-file a").first.get_attribute("href")
        deadline = 30
        while True:  # the files come with the views' answer; wait for the link of this answer
            data = json.loads(urllib.request.urlopen(href, timeout=30).read())
            if data["tokens_kept"] == kept or deadline == 0:
                break
            page.wait_for_timeout(500)
            deadline -= 1
            href = page.locator("#json-file a").first.get_attribute("href")
        assert data["tokens_kept"] == kept and abs(data["retention"] - float(typed)) < 1e-9, (typed, data["retention"])
    v.assert_clean("downloads")


@pytest.mark.browser
def test_a_video_the_browser_cannot_play_shows_a_playable_preview(visitor, media):
    """MS-MPEG4 and FFV1 in AVI and MJPEG in MOV are analysed, and the video box plays a preview of the sampled
    frames instead of answering with a "Video not playable" toast."""
    v, page = visitor, visitor.page
    for name in ("msmpeg4.avi", "ffv1.avi", "mjpeg.mov"):
        if page.locator('#video-box button[aria-label="Clear"]').count():
            page.locator('#video-box button[aria-label="Clear"]').click()
            v.wait_summary("Upload a video")
        page.set_input_files("#video-box input[type=file]", str(media[name]))
        v.wait_summary("Kept [0-9,]+ of")
        page.wait_for_function("() => /preview-.*\\.mp4/.test(document.querySelector('#video-box video')?.src || '')",
                               timeout=60_000)
        page.wait_for_function("() => document.querySelector('#video-box video').readyState >= 1", timeout=30_000)
        assert page.get_by_text("Video not playable").count() == 0, name
        # the handlers behind the preview read the upload: a slider move analyses the same video
        v.type_in(R_BOX, "0.2")
        v.wait_summary(r"\((20\.0|19\.9) %\)")
    v.assert_clean("unplayable codecs")


@pytest.mark.browser
def test_clearing_the_video_or_a_bad_upload_resets_the_page(visitor, media):
    v, page = visitor, visitor.page
    v.example()
    page.wait_for_selector("#overlay img")
    page.locator('#video-box button[aria-label="Clear"]').click()
    v.wait_summary("Upload a video or pick an example to start")
    page.wait_for_function("() => !document.querySelector('#overlay img')", timeout=30_000)
    page.wait_for_function("() => (document.querySelector('#budgets')?.innerText || '').includes("
                           "'Frame budgets: pick an example')", timeout=30_000)
    assert page.get_by_text("Upload a video or pick an example first").count() == 0  # no error toast
    page.set_input_files("#video-box input[type=file]", str(media["garbage"]))
    v.wait_summary("could not be analysed.*garbage.mp4")
    page.wait_for_selector("#video-box input[type=file]", state="attached")  # the upload area is back
    assert page.locator("#video-box video").count() == 0
    v.example(1)  # and the page goes on from there
    v.settle()
    v.assert_clean("clear and bad upload")


@pytest.mark.browser
def test_frame_slider_range_follows_the_clip(visitor):
    v, page = visitor, visitor.page
    v.example()
    v.type_in(FRAMES_BOX, "8")
    v.wait_summary("grid 8 frames")
    page.get_by_role("tab", name="Frame").click()
    box = page.locator('input[aria-label="number input for Frame"]')
    page.wait_for_function("() => document.querySelector('#frame-index input[type=range]')?.max === '7'",
                           timeout=30_000)
    assert box.get_attribute("max") == "7"
    v.type_in(box, "63")  # past the clip: the box shows the last frame, and so does the view
    page.wait_for_function("() => document.querySelector('input[aria-label=\"number input for Frame\"]').value === '7'")
    v.settle()
    v.assert_clean("frame slider")


@pytest.mark.browser
def test_compare_shows_rows_per_frame_and_sweep_progress_where_the_user_looks(visitor):
    v, page = visitor, visitor.page
    v.example()
    assert page.locator("#overlay label").filter(has_text="Kept-token overlay").count() == 0  # no badge on F0
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-btn").click()  # the rows each method keeps per frame: one line per default method (5)
    page.wait_for_function("() => document.querySelectorAll('#frame-rows .legend .traces').length === 5",
                           timeout=120_000)
    # the per-method gallery shows each overlay whole (its right-hand column of frames too) at 1100 and 1400 px
    for width in (1100, 1400):
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_timeout(500)
        page.evaluate("""() => Promise.all([...document.querySelectorAll('#compare-gallery img')].map(img => {
            img.loading = 'eager'; return img.decode().catch(() => null); }))""")  # every tile loaded, not lazily
        shown = page.evaluate("""() => [...document.querySelectorAll('#compare-gallery img')].map(img => {
            const r = img.getBoundingClientRect(), box = img.parentElement.getBoundingClientRect();
            const k = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);  // object-fit: contain
            return {fit: getComputedStyle(img).objectFit, inside: r.left >= box.left - 1 && r.right <= box.right + 1,
                    drawn: img.naturalWidth * k, wide: r.width}; })""")
        assert shown and all(s["fit"] == "contain" and s["inside"] and s["drawn"] <= s["wide"] + 1 for s in shown), \
            (width, shown)
    page.locator("#sweep-btn").click()
    progress = page.locator("#sweep").get_by_text(re.compile(r"of \d+ methods"))
    progress.first.wait_for(timeout=60_000)
    box = page.locator("#sweep").bounding_box()
    assert box is not None and box["y"] < page.evaluate("innerHeight") + page.evaluate("scrollY"), box
    page.wait_for_selector("#sweep .js-plotly-plot", timeout=180_000)
    legend = page.locator("#sweep .legend").bounding_box()
    y2_ticks = [t.bounding_box() for t in page.locator("#sweep .y2tick text").all()]
    assert legend and y2_ticks and all(legend["x"] > t["x"] + t["width"] or legend["y"] > t["y"] + t["height"]
                                       for t in y2_ticks)  # the legend covers none of the time axis' labels
    v.assert_clean("sweep")


@pytest.mark.browser
def test_first_look_is_informative_and_the_ask_tab_says_what_loads(visitor):
    v, page = visitor, visitor.page
    text = v.example()
    assert page.get_by_label("Stretch colours to each map's own range (read flat maps; off: one fixed [0, 1] scale)")\
        .is_checked()
    assert "stretched" in text and "Lower τ" in text and len(text) < 900  # a short note, not a paragraph
    page.get_by_role("tab", name="Ask the video").click()
    note = page.locator("#model-note")
    assert "cannot load here" in note.inner_text()  # offline: the default hub model is named before a question
    assert page.get_by_label("Model (hub id or local folder)").input_value() == ""
    page.get_by_role("button", name="Ask").click()
    page.wait_for_selector("text=/model '.*' is not on this server's allowlist|comes from the Hugging Face hub|"
                           "cannot load/", timeout=30_000)
    v.settle()
    v.assert_clean("first look and Ask")


def test_window_errors_name_the_window():
    from selector import SelectorConfig, SelectorError

    for kw, label in (({"window": 4}, "Spatial window k"), ({"past_window": 2}, "Past-frame window k_past")):
        with pytest.raises(SelectorError, match=f"must be odd.*{label}"):
            SelectorConfig(**kw)


def test_allowlisted_folder_is_found_with_a_trailing_slash_and_refusals_list_folders(tmp_path):
    from selector.app.settings import Settings
    from selector.app.ui import Explorer

    folder = tmp_path / "model"
    folder.mkdir()
    e = Explorer(settings=Settings.from_env({"ENTROPY_SELECT_MODEL_ALLOWLIST": str(folder) + "/"}))
    for given in (str(folder), str(folder) + "/", str(folder) + "//", str(tmp_path / "." / "model")):
        assert e.allowed("model", given, set()) == given
    with pytest.raises(ValueError, match=re.escape(str(folder.resolve()))):
        e.allowed("model", str(tmp_path / "other"), {"hub/id"})


def test_clis_print_sentences_for_missing_videos(tmp_path):
    import subprocess
    import sys

    for module in ("selector", "selector.compare"):
        r = subprocess.run([sys.executable, "-m", module, str(tmp_path / "missing.mp4")], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr and "missing.mp4" in r.stderr, (module, r.stderr)
        r = subprocess.run([sys.executable, "-m", module, str(tmp_path)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "directory" in r.stderr and "Traceback" not in r.stderr, (module, r.stderr)


def test_huge_ints_are_refused_by_name_everywhere():
    from selector import SelectorConfig, SelectorError

    with pytest.raises(SelectorError, match="max_tokens must be <="):
        SelectorConfig(max_tokens=10**20)
    with pytest.raises(SelectorError, match="min_tokens must be <="):
        SelectorConfig(min_tokens=2**40)
    assert SelectorConfig(max_tokens=2**31 - 1).max_tokens == 2**31 - 1
