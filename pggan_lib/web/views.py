"""The site's pages and JSON API.

Pages (forms posted with a CSRF token): ``/`` generates clips or tracks,
``/interpolate`` walks between two seeds. API (GET only): ``/api/info``,
``/api/generate``, ``/api/interpolate``, ``/api/spectrogram``. A bad request
gets a 400 whose message names the field.

Notebook: chapters/07_playing_with_the_generator.ipynb
"""

from __future__ import annotations

from urllib.parse import urlencode

import numpy as np
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from pggan_lib import playground
from pggan_lib.web import forms

#: The Site being served; set once by ``pggan_lib.web.load_site``.
SITE = None

_CONTENT_TYPES = {"wav": "audio/wav", "flac": "audio/flac"}
_API_FIELDS = {
    "generate": {"seed", "seconds", "class", "format", "download"},
    "spectrogram": {"seed", "seconds", "class"},
    "interpolate": {"seed_a", "seed_b", "t", "class", "format", "download"},
}


def _bad_request(field: str, message: str) -> JsonResponse:
    return JsonResponse({"error": message, "field": field}, status=400)


def _api_form(request, form_class, kind):
    """``(form, None)`` when the query is good, else ``(None, 400 response)``."""
    unknown = sorted(set(request.GET) - _API_FIELDS[kind])
    if unknown:
        return None, _bad_request(unknown[0], f"{unknown[0]}: unknown parameter; this "
                                  f"endpoint takes {', '.join(sorted(_API_FIELDS[kind]))}")
    form = form_class(request.GET, site=SITE)
    if not form.is_valid():
        return None, _bad_request(*form.first_error())
    return form, None


def _audio_response(signal: np.ndarray, audio_format: str, name: str, download: bool):
    response = HttpResponse(playground.encode_audio(signal, SITE.sample_rate, audio_format),
                            content_type=_CONTENT_TYPES[audio_format])
    disposition = "attachment" if download else "inline"
    response["Content-Disposition"] = f'{disposition}; filename="{name}.{audio_format}"'
    return response


@require_GET
def api_info(request):
    return JsonResponse(SITE.info())


@require_GET
def api_generate(request):
    form, error = _api_form(request, forms.GenerateForm, "generate")
    if error:
        return error
    data = form.cleaned_data
    signal = SITE.track(data["seconds"], data["seed"], data["class"])
    name = f"pggan_seed{data['seed']}_{data['seconds']:g}s"
    return _audio_response(signal, data["format"], name, "download" in request.GET)


@require_GET
def api_interpolate(request):
    form, error = _api_form(request, forms.InterpolateForm, "interpolate")
    if error:
        return error
    data = form.cleaned_data
    if data["t"] is None:
        return _bad_request("t", "t: this field is required (a position from 0 to 1)")
    clip = SITE.interpolated(data["seed_a"], data["seed_b"], data["t"], data["class"])
    name = f"pggan_seed{data['seed_a']}_to_{data['seed_b']}_t{data['t']:g}"
    return _audio_response(clip, data["format"], name, "download" in request.GET)


@require_GET
def api_spectrogram(request):
    form, error = _api_form(request, forms.GenerateForm, "spectrogram")
    if error:
        return error
    data = form.cleaned_data
    signal = SITE.track(data["seconds"], data["seed"], data["class"])
    png = SITE.spectrogram_png(signal, f"seed {data['seed']}, {data['seconds']:g} s")
    return HttpResponse(png, content_type="image/png")


def _query(**params) -> str:
    return urlencode({k: v for k, v in params.items() if v is not None})


@require_http_methods(["GET", "POST"])
def index(request):
    form = forms.GenerateForm(request.POST if request.method == "POST" else None, site=SITE)
    results, status = [], 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            for seed in range(data["seed"], data["seed"] + data["count"]):
                query = _query(seed=seed, seconds=f"{data['seconds']:g}", **{"class": data["class"]})
                results.append({
                    "seed": seed, "seconds": data["seconds"],
                    "audio": f"{reverse('api_generate')}?{query}&format={data['format']}",
                    "download": f"{reverse('api_generate')}?{query}&format={data['format']}"
                                "&download=1",
                    "spectrogram": f"{reverse('api_spectrogram')}?{query}"})
        else:
            status = 400
    return render(request, "pggan_web/index.html", _context(form, results), status=status)


@require_http_methods(["GET", "POST"])
def interpolate(request):
    form = forms.InterpolateForm(request.POST if request.method == "POST" else None, site=SITE)
    results, status = [], 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            for t in np.linspace(0.0, 1.0, data["steps"]):
                query = _query(seed_a=data["seed_a"], seed_b=data["seed_b"], t=f"{t:.4g}",
                               format=data["format"], **{"class": data["class"]})
                url = f"{reverse('api_interpolate')}?{query}"
                results.append({"t": float(t), "audio": url, "download": url + "&download=1"})
        else:
            status = 400
    return render(request, "pggan_web/interpolate.html", _context(form, results), status=status)


def _context(form, results):
    return {"form": form, "results": results, "info": SITE.info(),
            "metrics_table": SITE.metrics_table()}
