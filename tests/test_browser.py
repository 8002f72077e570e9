"""End to end in a real browser: `tastebud dashboard` serves a seeded store, headless Chromium signs
in as a labeler, opens each permitted page, relabels a flagged review (the store must hold the
human label), then signs in as a viewer who cannot reach the hard-cases and training pages.

Screenshots go to artifacts/browser/. Skipped when /usr/bin/chromium or playwright is absent.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dashboard_seed import ACCOUNTS, seed_dashboard_store, write_secrets
from dashboard.views import review_row_height
from store import jobs as job_store
from store.db import connect
from store.flags import QueueFilter, search_flag_queue
from store.labels import current_label
from store.schema import init_store

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Height of a dataframe's header row (px), to click into its cells.
HEADER_PX = 35
# Generous per-step waits; the whole test stays bounded by the timeout mark.
STEP_MS = 45_000

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(300),  # each test takes 40-200 s on a loaded 2-core machine
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> tuple[Path, dict]:
    """The seeded store, built once for the module; each test serves its own copy."""
    db, _ = init_store(tmp_path_factory.mktemp("seeded") / "store.duckdb")
    return db, seed_dashboard_store(db, rows=1500)


@pytest.fixture
def server(tmp_path, seeded):
    db = tmp_path / "store.duckdb"
    shutil.copy(seeded[0], db)
    info = seeded[1]
    secrets = write_secrets(tmp_path / "secrets.toml")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "--db", str(db), "dashboard", "--host", "127.0.0.1",
         "--port", str(port), "--secrets", str(secrets)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the dashboard did not start:\n" + (tmp_path / "streamlit.log").read_text()[-3000:])
        time.sleep(0.3)
    yield base, db, info
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
    log.close()


def _settle(page) -> None:
    """Wait until Streamlit has finished the script run and drawn every element (twice in a row)."""
    page.wait_for_selector("[data-testid='stApp']", timeout=STEP_MS)
    idle = """() => !document.querySelector('[data-testid="stStatusWidget"], [data-testid="stSkeleton"], [data-stale="true"]')"""
    for _ in range(2):
        page.wait_for_timeout(400)
        page.wait_for_function(idle, timeout=STEP_MS)


def _open_url(page, base: str, path: str = "") -> None:
    page.goto(f"{base}/{path}", timeout=STEP_MS)
    # A URL that is no page for this session first shows Streamlit's "Page not found" notice.
    notice = page.get_by_role("dialog")
    try:
        notice.wait_for(timeout=6000)
        page.keyboard.press("Escape")
        notice.wait_for(state="hidden", timeout=STEP_MS)
    except playwright_api.TimeoutError:
        pass


def _submit(page, username: str, password: str) -> None:
    page.get_by_role("textbox", name="Username").fill(username, timeout=STEP_MS)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def _sign_in(page, base: str, username: str, path: str = "") -> None:
    _open_url(page, base, path)
    _submit(page, username, ACCOUNTS[username][1])
    page.get_by_text(f"Signed in as {username}").wait_for(timeout=STEP_MS)
    _settle(page)


def _open(page, title: str, shot: str) -> None:
    page.locator("[data-testid='stSidebarNav']").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).wait_for(timeout=STEP_MS)
    _settle(page)
    assert page.locator("[data-testid='stException']").count() == 0, f"{title} raised"
    page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)


def test_labeler_relabels_in_a_real_browser_and_a_viewer_is_kept_out(server):
    base, db, info = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            page.goto(base, timeout=STEP_MS)
            page.get_by_role("button", name="Sign in").wait_for(timeout=STEP_MS)
            page.screenshot(path=str(ARTIFACTS / "00-sign-in.png"))

            _sign_in(page, base, "lena")
            nav = page.locator("[data-testid='stSidebarNav']")
            for title in ("Overview", "Sentiment trends", "Model comparison", "Hard cases"):
                assert nav.get_by_text(title, exact=True).count() == 1
            for title in ("Training", "Data"):
                assert nav.get_by_text(title, exact=True).count() == 0
            _open(page, "Overview", "01-labeler-overview")
            _open(page, "Sentiment trends", "02-labeler-trends")
            _open(page, "Model comparison", "03-labeler-comparison")
            _open(page, "Hard cases", "04-labeler-hard-cases")

            first = info["flag_review_ids"][0]
            _assert_label_buttons(page, suggested=True)
            page.get_by_role("button", name="Negative").click()
            page.get_by_text("Labeled negative.").wait_for(timeout=STEP_MS)
            _settle(page)
            _assert_no_help_and_review_above_the_fold(page)
            page.screenshot(path=str(ARTIFACTS / "05-labeler-after-relabel.png"), full_page=True)
            with connect(db, read_only=True) as con:
                label = current_label(con, first)
            assert (label["label"], label["source"], label["labeler"]) == ("negative", "human", "lena")
            _hard_cases_keys_filters_recent_and_ticks(page, db, info)
            _trend_bar_click_picks_the_period(page)

            viewer = browser.new_page(viewport={"width": 1400, "height": 2200})
            _sign_in(viewer, base, "vera")
            nav = viewer.locator("[data-testid='stSidebarNav']")
            assert nav.get_by_text("Sentiment trends", exact=True).count() == 1
            for title in ("Hard cases", "Training", "Data"):
                assert nav.get_by_text(title, exact=True).count() == 0
            viewer.screenshot(path=str(ARTIFACTS / "06-viewer-overview.png"), full_page=True)
            # Typing the URL of a page the role lacks opens a fresh session, signed in again from the
            # session cookie; that page does not exist for this role, so the default page shows.
            for path in ("hard_cases", "training"):
                _open_url(viewer, base, path)
                viewer.get_by_text("Signed in as vera").wait_for(timeout=STEP_MS)
                _settle(viewer)
                assert viewer.get_by_role("heading", name=re.compile("Hard cases|Training")).count() == 0
                assert viewer.get_by_role("button", name="Negative").count() == 0
                assert viewer.get_by_role("heading", name="Overview").count() == 1
                viewer.screenshot(path=str(ARTIFACTS / f"07-viewer-url-{path}.png"))
        finally:
            browser.close()


@pytest.mark.timeout(300)
def test_data_scientist_promotes_with_a_reason_and_imports_in_the_background(server, tmp_path):
    from dashboard_seed import BASELINE
    from store import jobs as job_store
    from store import models as model_store
    from store.db import transaction

    base, db, _ = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with transaction(db) as con:
        job_id = job_store.create_job(con, "train", {}, "dario")
        job_store.finish_job(con, job_id, "succeeded", result={"model_id": BASELINE})
    upload = tmp_path / "new reviews.csv"
    upload.write_text("review_id,text,stars\nb1,Lovely brunch,5\nb2,,3\nb3,Cold grits,1\n", encoding="utf-8")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            _sign_in(page, base, "dario")
            _open(page, "Training", "10-ds-training")
            page.get_by_text("lost to the champion on the same test snapshot").wait_for(timeout=STEP_MS)
            assert page.get_by_role("button", name="Roll back to the previous champion").is_disabled()
            promote = page.get_by_role("button", name=f"Promote {BASELINE}")
            assert promote.is_disabled()
            page.get_by_role("textbox", name="Reason for promoting (kept in the audit log)").fill("browser check")
            page.keyboard.press("Enter")
            _settle(page)
            page.get_by_text(f"I confirm that {BASELINE} should serve as the champion").click()
            _settle(page)
            promote.click()
            page.get_by_text(f"Promoted {BASELINE}.").wait_for(timeout=STEP_MS)
            _settle(page)
            assert page.locator("[data-testid='stException']").count() == 0
            assert page.get_by_text("DeltaGenerator").count() == 0  # no Streamlit "magic" help block
            page.screenshot(path=str(ARTIFACTS / "11-ds-after-promote.png"), full_page=True)
            with connect(db, read_only=True) as con:
                assert model_store.get_champion(con)["model_id"] == BASELINE
                reasons = con.execute("SELECT reason FROM promotions ORDER BY promotion_id DESC LIMIT 1").fetchone()
            assert reasons == ("browser check",)

            _open(page, "Model comparison", "12-ds-comparison")
            _open(page, "Data", "13-ds-data")
            page.locator("[data-testid='stFileUploader'] input[type=file]").set_input_files(str(upload))
            page.get_by_text("Column mapping").wait_for(timeout=STEP_MS)
            _settle(page)
            page.get_by_role("button", name="Dry run: check every row").click()
            page.get_by_text("Dry run: 2 of 3 rows would be accepted, 1 rejected").wait_for(timeout=STEP_MS)
            page.get_by_role("button", name="Import", exact=True).click()
            page.get_by_text(re.compile(r"Import \d+: 2 new")).wait_for(timeout=90_000)
            _settle(page)
            page.screenshot(path=str(ARTIFACTS / "14-ds-after-import.png"), full_page=True)
            with connect(db, read_only=True) as con:
                assert con.execute("SELECT count(*) FROM reviews WHERE review_id IN ('b1', 'b3')").fetchone()[0] == 2
        finally:
            browser.close()


def test_sign_in_survives_reloads_in_an_httponly_cookie_and_reloads_do_not_reset_the_throttle(server):
    base, db, _ = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1600})
            page = context.new_page()
            # A deep link shows the sign-in form (no "Page not found"), then that very page.
            page.goto(f"{base}/hard_cases", timeout=STEP_MS)
            assert page.get_by_role("dialog").count() == 0
            _submit(page, "lena", ACCOUNTS["lena"][1])
            page.get_by_text("Signed in as lena").wait_for(timeout=STEP_MS)
            page.get_by_role("heading", name="Hard cases").wait_for(timeout=STEP_MS)
            assert page.url.endswith("/hard_cases")
            cookie = [c for c in context.cookies() if c["name"] == "tastebud_session"]
            assert len(cookie) == 1 and cookie[0]["httpOnly"] and cookie[0]["sameSite"] == "Lax"
            assert "tastebud_session" not in page.evaluate("document.cookie")  # scripts cannot read it
            page.reload()
            page.get_by_text("Signed in as lena").wait_for(timeout=STEP_MS)
            assert page.get_by_role("button", name="Sign in").count() == 0
            page.screenshot(path=str(ARTIFACTS / "08-reloaded-still-signed-in.png"))
            # Signing out deletes the cookie and revokes the token: a reload shows the form again.
            page.locator("[data-testid='stSidebar']").get_by_role("button", name="Sign out").click()
            page.get_by_role("button", name="Sign in").wait_for(timeout=STEP_MS)
            assert [c for c in context.cookies() if c["name"] == "tastebud_session"] == []
            page.reload()
            page.get_by_role("button", name="Sign in").wait_for(timeout=STEP_MS)
            # Five wrong guesses, each after a reload; the sixth is refused even with the right password.
            for attempt in range(6):
                page.goto(base, timeout=STEP_MS)
                _submit(page, "dario", "wrong-password" if attempt < 5 else ACCOUNTS["dario"][1])
                expected = "Too many failed sign-ins" if attempt == 5 else "Wrong username or password"
                page.get_by_text(expected).wait_for(timeout=STEP_MS)
            page.screenshot(path=str(ARTIFACTS / "09-throttled-after-reloads.png"))
        finally:
            browser.close()
    with connect(db, read_only=True) as con:
        actions = [a for (a,) in con.execute("SELECT action FROM audit_log WHERE action LIKE 'sign%' ORDER BY audit_id").fetchall()]
    assert actions == ["sign_in.succeeded", "sign_out"] + ["sign_in.failed"] * 5 + ["sign_in.throttled"]


def _heading(page) -> str:
    return page.locator("h3").filter(has_text="· flag").first.inner_text(timeout=STEP_MS)


def _assert_no_help_and_review_above_the_fold(page) -> None:
    """No Streamlit help block (what "magic" rendered) and the next review starts within the first screen."""
    assert page.locator("[data-testid='stHelp']").count() == 0
    assert "DeltaGenerator" not in page.locator("[data-testid='stMain']").inner_text()
    top = page.locator("h3").filter(has_text="· flag").first.bounding_box()["y"]
    assert top < 900, f"the next review starts {top:.0f} px down"


def _assert_label_buttons(page, *, suggested: bool) -> None:
    """Three distinct label colours (red, grey, green), the suggested one outlined."""
    styles = {
        label: page.locator(f".st-key-label-{label} button").evaluate(
            "b => [getComputedStyle(b).backgroundColor, getComputedStyle(b).outlineStyle]")
        for label in ("negative", "neutral", "positive")
    }
    assert [styles[label][0] for label in ("negative", "neutral", "positive")] == [
        "rgb(214, 39, 40)", "rgb(158, 158, 158)", "rgb(44, 160, 44)"]
    outlined = [label for label, (_, outline) in styles.items() if outline == "solid"]
    assert len(outlined) == (1 if suggested else 0), styles


def _press(page, key: str) -> None:
    """Press a shortcut key with no text field focused, and wait for the next review."""
    before = _heading(page)
    page.locator("h1").first.click()  # focus leaves any text input
    page.keyboard.press(key)
    page.wait_for_function(
        "old => { const h = [...document.querySelectorAll('h3')].find(e => e.textContent.includes('· flag'));"
        " return h && h.textContent !== old; }", arg=before, timeout=STEP_MS)
    _settle(page)
    _assert_no_help_and_review_above_the_fold(page)


def _hard_cases_keys_filters_recent_and_ticks(page, db, info) -> None:
    second, third = info["flag_review_ids"][1:3]
    _press(page, "2")  # keyboard: neutral
    with connect(db, read_only=True) as con:
        assert current_label(con, second)["label"] == "neutral"
    _press(page, "d")  # dismiss
    _press(page, "u")  # undo the dismissal: the flag is back
    page.screenshot(path=str(ARTIFACTS / "08-labeler-after-keys.png"), full_page=True)

    # The guidelines are one click away.
    page.get_by_role("button", name="Labeling guidelines").click()
    page.get_by_text("No guidelines written yet").wait_for(timeout=STEP_MS)
    page.keyboard.press("Escape")

    # Search: only reviews containing the text.
    with connect(db, read_only=True) as con:
        text = con.execute("SELECT text FROM reviews WHERE review_id = ?", [third]).fetchone()[0]
    word = max(text.split(), key=len).strip(".,!")
    page.get_by_role("textbox", name="Text contains").fill(word)
    page.keyboard.press("Enter")
    _settle(page)
    shown = page.locator("h3").filter(has_text="· flag").first.locator("xpath=following::*[@data-testid='stText'][1]")
    assert word.lower() in shown.inner_text().lower()
    page.screenshot(path=str(ARTIFACTS / "09-labeler-search.png"), full_page=True)
    page.get_by_role("textbox", name="Text contains").fill("")
    page.keyboard.press("Enter")
    _settle(page)

    # My recent labels: undo the first relabel of this session (not the newest).
    page.get_by_text("My recent labels").click()
    undo_buttons = page.locator("[class*='st-key-undo-action-'] button")
    undo_buttons.last.wait_for(timeout=STEP_MS)
    page.screenshot(path=str(ARTIFACTS / "10-labeler-recent-labels.png"), full_page=True)
    undo_buttons.last.click()
    page.get_by_text("Undid it:").wait_for(timeout=STEP_MS)
    _settle(page)
    with connect(db, read_only=True) as con:
        assert current_label(con, info["flag_review_ids"][0])["source"] == "stars"
        assert current_label(con, second)["label"] == "neutral"

    # Tick two rows of "Up next", confirm, relabel them as one batch, then undo the batch.
    grid = page.locator("[data-testid='stDataFrame']").last
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    with connect(db, read_only=True) as con:
        queue, _ = search_flag_queue(con, QueueFilter(), limit=50)
    row_height = review_row_height(queue["text"].iloc[1:])  # as the page sizes the rows of "Up next"
    for row in (0, 1):  # the checkbox sits in the middle of the first column's cell
        page.mouse.click(box["x"] + 37, box["y"] + HEADER_PX + row_height * (row + 0.5))
        # Each tick reruns the page: the next click must wait for it, or it lands on a grid being redrawn.
        _settle(page)
    page.keyboard.press("Escape")
    _settle(page)
    confirm = page.get_by_role("checkbox", name=re.compile("Yes, label the 2 ticked"))
    confirm.wait_for(state="attached", timeout=STEP_MS)
    # The grid's overlay layer may cover the row below it: send the clicks to the elements themselves.
    confirm.dispatch_event("click")
    _settle(page)
    page.get_by_role("button", name="Relabel 2 ticked").dispatch_event("click")
    page.get_by_text("Labeled 2 reviews negative.").wait_for(timeout=STEP_MS)
    _settle(page)
    page.screenshot(path=str(ARTIFACTS / "11-labeler-batch.png"), full_page=True)
    with connect(db, read_only=True) as con:
        batch = con.execute("SELECT count(*) FROM current_labels WHERE source = 'human' AND labeler = 'lena'").fetchone()[0]
    page.get_by_role("button", name="Undo the batch").click()
    page.get_by_text("Undid it: 2 label(s) taken back").wait_for(timeout=STEP_MS)
    _settle(page)
    with connect(db, read_only=True) as con:
        after = con.execute("SELECT count(*) FROM current_labels WHERE source = 'human' AND labeler = 'lena'").fetchone()[0]
    assert batch - after == 2


def _trend_bar_click_picks_the_period(page) -> None:
    _open(page, "Sentiment trends", "12-trends-before-click")
    assert page.get_by_text(re.compile("Showing the newest 200 reviews for")).count() == 0
    bar = page.locator("[data-testid='stPlotlyChart']").first.locator("g.barlayer g.point path").nth(60)
    bar.wait_for(timeout=STEP_MS)
    box = bar.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    # The click picks that week in the "Period" box, and its reviews are listed.
    page.get_by_text(re.compile(r"Showing the newest 200 reviews for: week of \d{4}-\d{2}-\d{2}")).wait_for(timeout=STEP_MS)
    _settle(page)
    page.screenshot(path=str(ARTIFACTS / "13-trends-bar-clicked.png"), full_page=True)


def test_training_panel_follows_each_new_job_without_help_blocks(server):
    base, db, _ = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            _sign_in(page, base, "dario")
            _open(page, "Training", "20-training")
            newest = None
            for button, kind in (("Score new reviews", "score"), ("Flag hard cases", "flag")):
                page.get_by_role("button", name=button).click()
                page.get_by_text(re.compile(f"Started {kind} job {kind}-")).wait_for(timeout=STEP_MS)
                _settle(page)
                with connect(db, read_only=True) as con:
                    newest = job_store.list_jobs(con)["job_id"].iloc[0]
                assert newest.startswith(kind)
                # The live panel follows the job just started, whatever was watched before.
                page.get_by_role("heading", name=re.compile(f"{kind} job {newest}")).wait_for(timeout=STEP_MS)
                assert page.locator("[data-testid='stHelp']").count() == 0
                page.screenshot(path=str(ARTIFACTS / f"21-training-started-{kind}.png"), full_page=True)
            cancel = page.get_by_role("button", name="Cancel")
            if cancel.count():
                cancel.click()
                page.get_by_text(f"Asked job {newest} to stop.").wait_for(timeout=STEP_MS)
                _settle(page)
                assert page.locator("[data-testid='stHelp']").count() == 0
            # With no click, the panel reaches the job's end: the page refreshes itself while a job runs.
            page.get_by_role("heading", name=re.compile(f"flag job {newest}: (failed|cancelled|succeeded)")).wait_for(
                timeout=90_000)
            _settle(page)
            page.screenshot(path=str(ARTIFACTS / "22-training-job-ended.png"), full_page=True)
        finally:
            browser.close()
