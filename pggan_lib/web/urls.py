"""URLs of the site behind ``pggan serve``.

Notebook: chapters/07_playing_with_the_generator.ipynb
"""

from django.urls import path

from pggan_lib.web import views

urlpatterns = [
    path("", views.index, name="index"),
    path("interpolate", views.interpolate, name="interpolate"),
    path("api/info", views.api_info, name="api_info"),
    path("api/generate", views.api_generate, name="api_generate"),
    path("api/interpolate", views.api_interpolate, name="api_interpolate"),
    path("api/spectrogram", views.api_spectrogram, name="api_spectrogram"),
]
