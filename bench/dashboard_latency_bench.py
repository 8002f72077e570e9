"""Labeler latency in a real browser: the time from a key press on Hard cases to the next review
being shown, median of N presses, on a 100k- and a 1M-review store.

For each size the script builds a store (demo reviews as ``tastebud demo-data --rows N`` makes them,
plus two scored models, a champion and 5,000 open flags, as bench/dashboard_bench.py builds it) whose
flags come from the zero-shot MiniLM baseline, so the page's word highlights run a real transformer
in the background while the labeler works. It serves the dashboard with ``tastebud dashboard``,
signs in a labeler in headless Chromium, opens Hard cases, and then presses "1" (label negative)
N times, waiting ``--think-ms`` between presses as a labeler reads the review. Each timing runs
from the key press to the moment the next flag's heading is on screen (polled every animation frame;
the review text is drawn right below it in the same run).

Run: PYTHONPATH=. python bench/dashboard_latency_bench.py [--sizes 100000 1000000] [--presses 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from dashboard_bench import build_store  # noqa: E402
from dashboard_seed import ACCOUNTS, write_secrets  # noqa: E402
from pipeline.models.baselines import register_baselines  # noqa: E402
from store.actors import Actor  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ZEROSHOT = "baseline-zeroshot-minilm"
STEP_MS = 120_000
# A press whose next review has not shown within this long counts as failed (infinite time).
PRESS_TIMEOUT_MS = 30_000
# The next flag's heading is on screen (the review text is drawn right below it in the same run).
NEXT_REVIEW_JS = """old => {
  const h = [...document.querySelectorAll('h3')].find(e => e.textContent.includes('· flag'));
  return !!h && h.textContent !== old;
}"""


def ensure_store(db: Path, rows: int) -> None:
    if db.exists():
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    build_store(db, rows, flag_model=ZEROSHOT)
    register_baselines(db, actor=Actor("bench", "admin"), include=("zeroshot",), evaluate=False)
    print(f"built {db} ({rows:,} reviews) in {time.perf_counter() - started:.0f}s", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(db: Path, workdir: Path) -> tuple[subprocess.Popen, str]:
    secrets = write_secrets(workdir / "secrets.toml")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    log = open(workdir / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "--db", str(db), "dashboard", "--host", "127.0.0.1", "--port", str(port),
         "--secrets", str(secrets)], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                return proc, base
        except OSError:
            time.sleep(0.3)
    os.killpg(proc.pid, 9)
    raise RuntimeError("the dashboard did not start; see " + str(workdir / "streamlit.log"))


def measure(base: str, presses: int, think_ms: int, warmup: int, shots: Path) -> list[float]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(base, timeout=STEP_MS)
            page.get_by_role("textbox", name="Username").fill("lena", timeout=STEP_MS)
            page.get_by_role("textbox", name="Password").fill(ACCOUNTS["lena"][1])
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("Signed in as lena").wait_for(timeout=STEP_MS)
            page.locator("[data-testid='stSidebarNav']").get_by_text("Hard cases", exact=True).click()
            heading = page.locator("h3").filter(has_text="· flag").first
            heading.wait_for(timeout=STEP_MS)
            page.wait_for_timeout(think_ms)
            timings = []
            for i in range(warmup + presses):
                before = heading.inner_text()
                page.locator("h1").first.click()  # no text field focused
                started = time.perf_counter()
                page.keyboard.press("1")
                try:
                    page.wait_for_function(NEXT_REVIEW_JS, arg=before, polling="raf", timeout=PRESS_TIMEOUT_MS)
                    elapsed = time.perf_counter() - started
                except PlaywrightTimeout:
                    page.screenshot(path=str(shots / f"timeout-{i}.png"), full_page=True)
                    elapsed = float("inf")  # counted, never hidden: shows up as a failed press
                if i >= warmup:
                    timings.append(elapsed)
                page.wait_for_timeout(think_ms)
            return timings
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/tastebud-latency-bench"))
    parser.add_argument("--presses", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2, help="Presses before timing (model load, caches).")
    parser.add_argument("--think-ms", type=int, default=1500, help="Pause between presses (reading the review).")
    args = parser.parse_args()
    print(f"# {platform.node()} · {os.cpu_count()} CPUs · load {os.getloadavg()[0]:.1f} · "
          f"{args.presses} presses after {args.warmup} warm-up, {args.think_ms} ms between presses")
    for rows in args.sizes:
        workdir = args.dir / f"{rows}"
        db = workdir / "store.duckdb"
        ensure_store(db, rows)
        # Each run relabels reviews: measure on a copy so every run starts from the same queue.
        run_db = workdir / "run.duckdb"
        run_db.write_bytes(db.read_bytes())
        proc, base = serve(run_db, workdir)
        try:
            timings = measure(base, args.presses, args.think_ms, args.warmup, workdir)
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
        ms = sorted(t * 1000 for t in timings)
        failed = sum(1 for t in ms if t == float("inf"))
        print(f"{rows:>9,} reviews: key press -> next review  median {statistics.median(ms):.0f} ms  "
              f"p90 {ms[int(0.9 * (len(ms) - 1))]:.0f} ms  min {ms[0]:.0f} ms  max {ms[-1]:.0f} ms  "
              f"(n={len(ms)}, {failed} not shown within {PRESS_TIMEOUT_MS // 1000} s, load {os.getloadavg()[0]:.1f})",
              flush=True)


if __name__ == "__main__":
    main()
