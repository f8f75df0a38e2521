"""``pggan serve`` for real: a waitress server on loopback, a load test and a browser.

The server is started as a user starts it (``pggan serve --run results/reference``).
The load test sends 200 requests, 8 at a time, checks that every answer is a
WAV of the asked length and prints latency percentiles (figures, not asserts).
The browser test drives Debian's Chromium through Playwright: it fills in and
submits the form, waits for the audio players, decodes every player's source in
the page (Web Audio) and checks its length, and saves the screenshot that
chapter 7 shows (``results/serve/screenshot.png``).
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pggan_lib import web

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO / "results" / "serve" / "screenshot.png"
LOAD_TEST = REPO / "results" / "serve" / "load_test.json"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pggan_lib.cli", "serve", "--run", "results/reference",
         "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    base = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    try:
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/info", timeout=5).read()
                break
            except OSError:
                if process.poll() is not None or time.perf_counter() - start > 120:
                    raise RuntimeError(f"pggan serve did not start: {process.stdout.read()}")
                time.sleep(0.5)
        print(f"\npggan serve: first answer {time.perf_counter() - start:.1f} s after start")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_answers_as_the_issue_asks(server):
    info = json.loads(urllib.request.urlopen(f"{server}/api/info").read())
    assert info["sample_rate"] == 16000
    with urllib.request.urlopen(f"{server}/api/generate?seed=3&seconds=5") as response:
        import soundfile as sf
        import io

        signal, rate = sf.read(io.BytesIO(response.read()))
    assert rate == 16000 and len(signal) == 80000
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server}/api/generate?seed=3&seconds=100000")
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["field"] == "seconds"


def test_load_200_requests_8_at_a_time(server, capsys):
    figures = web.load_test(server, requests=200, concurrency=8, seconds=2.0)
    assert figures["requests"] == 200  # load_test raises on any wrong answer
    # Chapter 7 shows these figures, with the machine they come from.
    from pggan_lib import profiling

    LOAD_TEST.parent.mkdir(parents=True, exist_ok=True)
    LOAD_TEST.write_text(json.dumps({**figures, "device": profiling.device_description(),
                                     "written_by": "tests/test_web_server.py"}, indent=1) + "\n")
    with capsys.disabled():
        print(f"\nload test: 200 x 2 s WAV, 8 at a time: {figures['requests_per_s']:.1f} "
              f"requests/s; latency p50 {figures['p50_ms']:.0f} ms, p90 "
              f"{figures['p90_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms, "
              f"max {figures['max_ms']:.0f} ms")


def test_browser_submits_the_form_and_gets_audio(server, chromium):
    page = chromium.new_page(viewport={"width": 1000, "height": 900})
    page.goto(f"{server}/")
    page.fill("#id_seed", "3")
    page.fill("#id_seconds", "4")
    page.fill("#id_count", "2")
    page.click("#generate-form button[type=submit]")
    page.wait_for_selector("audio")
    page.wait_for_function("[...document.querySelectorAll('audio')].every("
                           "a => a.readyState >= 1)", timeout=60_000)
    players = page.evaluate("[...document.querySelectorAll('audio')].map(a => a.duration)")
    decoded = page.evaluate("""async () => {
        const out = [];
        for (const player of document.querySelectorAll('audio')) {
            const bytes = await (await fetch(player.src)).arrayBuffer();
            const buffer = await new OfflineAudioContext(1, 1, 16000).decodeAudioData(bytes);
            out.push({seconds: buffer.duration, rate: buffer.sampleRate});
        }
        return out;
    }""")
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    version = chromium.version
    assert players == pytest.approx([4.0, 4.0], abs=1e-3)
    assert [d["seconds"] for d in decoded] == pytest.approx([4.0, 4.0], abs=1e-3)
    (SCREENSHOT.parent / "screenshot.json").write_text(json.dumps({
        "browser": f"Chromium {version} (headless, Playwright)",
        "page": "/ after submitting seed 3, 4 s, 2 tracks",
        "decoded_seconds": [d["seconds"] for d in decoded],
        "written_by": "tests/test_web_server.py::test_browser_submits_the_form_and_gets_audio",
    }, indent=1) + "\n")
