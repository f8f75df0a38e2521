"""Tests of the Django site behind ``pggan serve``, through Django's test client.

Every view and every bad request the site must refuse: lengths and counts over
the limit, negative and non-numeric seeds, unknown classes, a class for an
unconditional run, unknown parameters, missing CSRF tokens, oversized bodies,
wrong methods; audio checked by decoding it; no file outside the run (and the
site's templates) opened by any request; concurrent requests all correct.
"""

import concurrent.futures
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pggan_lib import reference, web
from pggan_lib.web import forms

REFERENCE = Path("results/reference").resolve()
PACKAGE = Path(web.__file__).resolve().parent.parent  # pggan_lib: its code and templates


@pytest.fixture(scope="module")
def site():
    return web.load_site(REFERENCE)


@pytest.fixture()
def client(site):
    from django.test import Client

    return Client()


def decode(response):
    signal, rate = sf.read(io.BytesIO(response.content))
    return signal, rate


def test_info_describes_the_run(client):
    info = client.get("/api/info").json()
    assert info["sample_rate"] == 16000 and info["conditional"] is False
    assert len(info["classes"]) == 5 and info["max_seconds"] == forms.MAX_SECONDS
    assert [s["sample_rate"] for s in info["scales"]] == [250, 500, 1000, 2000, 4000, 8000, 16000]
    assert info["clip_seconds"] == pytest.approx(1.024)
    hours = reference.load_reference_run().train_hours
    assert info["provenance"]["train_hours"] == pytest.approx(hours) and hours > 0.5
    assert "pggan train" in \
        info["provenance"]["commands"][0]
    finest = info["metrics"][-1]
    assert finest["scale"] == 6 and finest["fd_ratio"] > 1.0 and finest["is_met"] in (True, False)


@pytest.mark.parametrize("audio_format", ["wav", "flac"])
def test_generate_returns_audio_of_the_asked_length(client, site, audio_format):
    response = client.get(f"/api/generate?seed=3&seconds=5&format={audio_format}")
    assert response.status_code == 200 and response["Content-Type"] == f"audio/{audio_format}"
    assert response["Content-Disposition"].startswith("inline")
    signal, rate = decode(response)
    assert rate == 16000 and len(signal) == 80000
    np.testing.assert_allclose(signal, site.playground.track(5.0, seed=3), atol=1 / 32767)
    download = client.get(f"/api/generate?seed=3&seconds=5&format={audio_format}&download=1")
    assert download["Content-Disposition"] == \
        f'attachment; filename="pggan_seed3_5s.{audio_format}"'


@pytest.mark.parametrize("query, field, words", [
    ("seed=3&seconds=100000", "seconds", "less than or equal to 60"),
    ("seed=3&seconds=0", "seconds", "greater than or equal to 0.1"),
    ("seed=3&seconds=nan", "seconds", "Enter a number"),
    ("seed=3&seconds=five", "seconds", "Enter a number"),
    ("seed=3", "seconds", "required"),
    ("seed=-1&seconds=1", "seed", "greater than or equal to 0"),
    ("seed=abc&seconds=1", "seed", "whole number"),
    ("seed=99999999999&seconds=1", "seed", "less than or equal to"),
    ("seed=../../etc/passwd&seconds=1", "seed", "whole number"),
    ("seed=1&seconds=1&class=folk_tunes", "class", "unconditional"),
    ("seed=1&seconds=1&format=mp3", "format", "valid choice"),
    ("seed=1&seconds=1&path=/etc/passwd", "path", "unknown parameter"),
])
def test_bad_generate_requests_name_the_field(client, query, field, words):
    response = client.get(f"/api/generate?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == field and body["error"].startswith(f"{field}: ") and \
        words in body["error"], body


def test_interpolate_api(client, site):
    response = client.get("/api/interpolate?seed_a=1&seed_b=2&t=0")
    signal, rate = decode(response)
    # WAV holds [-1, 1]: the writer clips (a generator's peaks may pass 1).
    np.testing.assert_allclose(signal, np.clip(site.playground.clips([1])[0], -1, 1),
                               atol=1 / 32767)
    for query, field in (("seed_a=1&seed_b=2", "t"), ("seed_a=1&seed_b=2&t=1.5", "t"),
                         ("seed_a=1&t=0.5", "seed_b"), ("seed_a=x&seed_b=2&t=0", "seed_a")):
        response = client.get(f"/api/interpolate?{query}")
        assert response.status_code == 400 and response.json()["field"] == field, query


def test_spectrogram_is_a_png(client):
    response = client.get("/api/spectrogram?seed=1&seconds=2")
    assert response["Content-Type"] == "image/png" and response.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/api/spectrogram?seed=1&seconds=61").status_code == 400


def test_api_is_get_only_and_unknown_paths_are_404(client):
    assert client.post("/api/generate?seed=1&seconds=1").status_code == 405
    assert client.get("/api/nothing").status_code == 404
    assert client.get("/../config.json").status_code == 404
    assert client.get("/results/reference/config.json").status_code == 404


def test_index_form_lists_players_spectrograms_and_provenance(client):
    page = client.get("/").content.decode()
    assert 'name="csrfmiddlewaretoken"' in page and 'name="seconds"' in page
    assert "pggan train --data data/demo_dataset" in page and "FD/floor" in page
    response = client.post("/", {"seed": 4, "seconds": 2.5, "count": 3, "format": "flac"})
    page = response.content.decode()
    assert response.status_code == 200 and page.count("<audio") == 3
    assert page.count("/api/spectrogram?seed=") == 3 and page.count("download=1") == 3
    src = page.split('<audio controls preload="auto" src="')[1].split('"')[0].replace("&amp;", "&")
    signal, rate = decode(client.get(src))
    assert len(signal) == 40000 and rate == 16000


def test_index_form_errors_name_the_field(client):
    response = client.post("/", {"seed": 1, "seconds": 2, "count": forms.MAX_COUNT + 1})
    page = response.content.decode()
    assert response.status_code == 400 and "<audio" not in page
    assert "less than or equal to 8" in page


def test_forms_need_a_csrf_token(site):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    assert strict.post("/", {"seed": 1, "seconds": 1}).status_code == 403
    assert strict.post("/interpolate", {"seed_a": 1, "seed_b": 2}).status_code == 403
    page = strict.get("/")  # a real browser: take the token from the page and its cookie
    token = page.content.decode().split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    assert strict.post("/", {"seed": 1, "seconds": 1, "csrfmiddlewaretoken": token}
                       ).status_code == 200


def test_interpolate_page(client):
    assert client.get("/interpolate").status_code == 200
    page = client.post("/interpolate", {"seed_a": 1, "seed_b": 2, "steps": 4}).content.decode()
    assert page.count("<audio") == 4 and "t=0.3333" in page
    response = client.post("/interpolate", {"seed_a": 1, "seed_b": 2, "steps": 99})
    assert response.status_code == 400 and "less than or equal to 9" in response.content.decode()


def test_request_body_is_bounded(client):
    big = {"seed": 1, "seconds": 1, "padding": "x" * (web.MAX_REQUEST_BYTES + 10)}
    assert client.post("/", big).status_code == 400


def test_requests_open_no_file_outside_the_run(client):
    opened = []
    recording = [True]

    def hook(event, args):
        if recording[0] and event == "open" and isinstance(args[0], (str, bytes, Path)):
            opened.append(Path(str(args[0], "utf-8") if isinstance(args[0], bytes)
                               else args[0]).resolve())

    sys.addaudithook(hook)  # audit hooks cannot be removed: the flag turns it off
    try:
        client.get("/")
        client.post("/", {"seed": 7, "seconds": 3, "count": 2})
        client.get("/api/generate?seed=7&seconds=3&class=../../etc")
        client.get("/api/generate?seed=8&seconds=2")
        client.get("/api/spectrogram?seed=8&seconds=2")
        Path(__file__).read_bytes()  # a probe: proves the hook sees opens outside
    finally:
        recording[0] = False
    import matplotlib

    # The run and the library's own code and templates; Python's, fonts and time zones (no
    # request chooses any of them).
    allowed = [REFERENCE, PACKAGE, PACKAGE.parent / "pggan_lib.egg-info", Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
               Path(matplotlib.get_cachedir()).resolve(), Path("/usr/share/fonts"),
               Path("/etc/fonts"), Path("/usr/share/zoneinfo"), Path("/dev"), Path("/proc"),
               Path("/sys")]
    outside = [p for p in opened if not any(p.is_relative_to(root) for root in allowed)]
    assert set(outside) == {Path(__file__).resolve()}  # only the probe


def test_concurrent_requests_are_all_correct(site):
    from django.test import Client

    def fetch(seed):
        response = Client().get(f"/api/generate?seed={seed}&seconds=1.5")
        return decode(response)[0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        signals = list(pool.map(fetch, range(200, 216)))
    for seed, signal in zip(range(200, 216), signals):
        assert len(signal) == 24000
        np.testing.assert_allclose(signal, site.playground.track(1.5, seed=seed), atol=1 / 32767)


def test_conditional_run_chooses_classes(conditional_run, site):
    from django.test import Client

    try:
        web.load_site(conditional_run)
        client = Client()
        info = client.get("/api/info").json()
        assert info["conditional"] is True and info["classes"] == ["high", "low"]
        assert info["metrics"] is None
        low = decode(client.get("/api/generate?seed=1&seconds=0.1&class=low"))[0]
        high = decode(client.get("/api/generate?seed=1&seconds=0.1&class=high"))[0]
        assert len(low) == round(0.1 * info["sample_rate"]) and not np.allclose(low, high)
        bad = client.get("/api/generate?seed=1&seconds=0.1&class=jazz")
        assert bad.status_code == 400 and bad.json()["field"] == "class"
        assert "unknown class 'jazz'; classes: high, low" in bad.json()["error"]
        assert 'name="class"' in client.get("/").content.decode()
    finally:
        web.load_site(REFERENCE)


def test_a_spectral_run_is_served_as_audio(tone_dataset, tmp_path, site):
    """A spectrogram run (chapter 8): the site inverts its spectrograms to waveforms."""
    from django.test import Client

    from pggan_lib import training

    run = tmp_path / "spectral"
    training.train(tone_dataset, run, preset="tiny", overrides={"representation": "spectral"},
                   progress=False)
    try:
        spectral_site = web.load_site(run)
        client = Client()
        info = client.get("/api/info").json()
        assert info["sample_rate"] == 16000 and info["clip_seconds"] == pytest.approx(0.016)
        response = client.get("/api/generate?seed=2&seconds=0.5")
        assert response.status_code == 200
        signal, rate = decode(response)
        assert rate == 16000 and len(signal) == 8000 and np.abs(signal).max() > 0
        # The untrained generator goes past full scale; the WAV holds the clipped signal.
        want = np.clip(spectral_site.playground.track(0.5, seed=2), -1.0, 1.0)
        np.testing.assert_allclose(signal, want, atol=1 / 32767)
    finally:
        web.load_site(REFERENCE)
