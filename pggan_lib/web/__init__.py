"""The Django site and JSON API behind ``pggan serve``.

The source report served its generator from a Django site; this is that site
for any run folder. It runs under waitress (a production WSGI server), loads
the generator once at start, and reads nothing from disk per request but the
run it was started with.

* :func:`configure_django`: settings in code (no database, no sessions,
  CSRF on every form, bounded request size).
* :func:`load_site`: load a run; :func:`application`: the WSGI app.
* :func:`serve`: both, under waitress.
* :func:`load_test`: many concurrent requests on loopback, checked and timed.

Notebook: chapters/07_playing_with_the_generator.ipynb
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["configure_django", "load_site", "application", "serve", "load_test",
           "MAX_REQUEST_BYTES"]

#: Largest request body accepted (the forms post a few short fields).
MAX_REQUEST_BYTES = 16 * 1024


def configure_django(allowed_hosts: tuple[str, ...] = ()) -> None:
    """Configure Django for the site, once per process (later calls do nothing)."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_urlsafe(32),  # signs CSRF tokens; new at every start
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "[::1]", "testserver", *allowed_hosts],
        ROOT_URLCONF="pggan_lib.web.urls",
        INSTALLED_APPS=[],
        DATABASES={},
        MIDDLEWARE=["django.middleware.security.SecurityMiddleware",
                    "django.middleware.common.CommonMiddleware",
                    "django.middleware.csrf.CsrfViewMiddleware",
                    "django.middleware.clickjacking.XFrameOptionsMiddleware"],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                    "DIRS": [str(Path(__file__).parent / "templates")]}],
        DATA_UPLOAD_MAX_MEMORY_SIZE=MAX_REQUEST_BYTES,
        DATA_UPLOAD_MAX_NUMBER_FIELDS=16,
        USE_TZ=True)
    django.setup()


def load_site(run_dir: str | os.PathLike):
    """Load a run's generator and serve it from now on (replaces any earlier one).

    Returns:
        The :class:`~pggan_lib.web.site.Site`.
    """
    os.environ.setdefault("MPLBACKEND", "Agg")  # pictures without a display
    configure_django()
    from pggan_lib.web import site, views

    views.SITE = site.Site(run_dir)
    return views.SITE


def application():
    """The WSGI application (call :func:`load_site` first)."""
    configure_django()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def serve(run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
          threads: int = 8, before_load=None) -> None:
    """Load ``run_dir`` and serve it under waitress until interrupted.

    The port is taken before the generator loads, so a busy port fails at once.

    Args:
        run_dir: Run folder made by ``pggan train``.
        host, port: Address to listen on.
        threads: Requests served at once.
        before_load: Called once the port is taken, before TensorFlow loads
            (the CLI silences TensorFlow's start-up lines there).

    Raises:
        OSError: The address cannot be listened on (in use, not this machine's).
    """
    import waitress

    configure_django(allowed_hosts=(host,) if host not in ("0.0.0.0", "::") else ("*",))
    server = waitress.create_server(application(), host=host, port=port, threads=threads,
                                    max_request_body_size=MAX_REQUEST_BYTES, ident="pggan")
    if before_load is not None:
        before_load()
    site = load_site(run_dir)
    print(f"pggan serve: {run_dir} ({site.sample_rate} Hz, "
          f"{'conditional' if site.conditional else 'unconditional'}) at "
          f"http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.run()
    finally:
        server.close()


def _fetch_audio(url: str, seconds: float, sample_rate: int) -> float:
    """Latency of one GET of a WAV; raises AssertionError if the file is wrong."""
    import soundfile as sf

    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        body = response.read()
        kind = response.headers.get("Content-Type")
    latency = time.perf_counter() - start
    signal, rate = sf.read(io.BytesIO(body))
    expected = round(seconds * sample_rate)
    if kind != "audio/wav" or rate != sample_rate or len(signal) != expected:
        raise AssertionError(f"{url}: got {kind}, {rate} Hz, {len(signal)} samples; "
                             f"expected audio/wav, {sample_rate} Hz, {expected} samples")
    return latency


def load_test(base_url: str, requests: int = 200, concurrency: int = 8,
              seconds: float = 2.0) -> dict[str, Any]:
    """``requests`` GETs of ``/api/generate`` (distinct seeds), ``concurrency`` at a time.

    Every answer is checked: a WAV at the run's rate of exactly the asked length.

    Returns:
        ``requests``, ``concurrency``, ``seconds``, ``wall_s``, ``requests_per_s``,
        latency percentiles ``p50_ms``, ``p90_ms``, ``p99_ms``, ``max_ms``.

    Notebook: chapters/07_playing_with_the_generator.ipynb
    """
    import json

    import numpy as np

    with urllib.request.urlopen(f"{base_url}/api/info", timeout=30) as response:
        rate = json.load(response)["sample_rate"]
    urls = [f"{base_url}/api/generate?seed={seed}&seconds={seconds:g}"
            for seed in range(1000, 1000 + requests)]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(lambda url: _fetch_audio(url, seconds, rate), urls))
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1e3
    return {"requests": requests, "concurrency": concurrency, "seconds": seconds,
            "wall_s": wall, "requests_per_s": requests / wall,
            "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}
