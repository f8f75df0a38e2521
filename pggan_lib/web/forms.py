"""The site's request checks: one Django form per kind of request.

Pages and the JSON API share these forms, so a bad value gets the same
message, naming its field, on both. Nothing a request sends reaches the file
system: seeds, lengths and classes only choose what the generator makes.

Notebook: chapters/07_playing_with_the_generator.ipynb
"""

from __future__ import annotations

from django import forms

from pggan_lib.playground import AUDIO_FORMATS

#: Longest track (s), most clips per page and most interpolation steps a request may ask for.
MAX_SECONDS = 60.0
MAX_COUNT = 8
MAX_STEPS = 9
MAX_SEED = 2 ** 31 - 1


def _seed_field(label="Seed"):
    return forms.IntegerField(label=label, min_value=0, max_value=MAX_SEED, initial=0)


class _RunForm(forms.Form):
    """A form that knows the run: its classes, and whether it is conditional."""

    def __init__(self, *args, site, **kwargs):
        super().__init__(*args, **kwargs)
        self.site = site
        choices = [("", "(any)")] + [(name, name) for name in site.class_names]
        # `class` is a Python keyword, so the field is added by name.
        self.fields["class"] = forms.CharField(required=False, label="Class",
                                               widget=forms.Select(choices=choices))
        if not site.conditional:
            self.fields["class"].widget = forms.HiddenInput()

    def clean_class(self):
        name = self.cleaned_data.get("class") or None
        if name is None:
            return None
        if not self.site.conditional:
            raise forms.ValidationError(
                f"this run is unconditional: it cannot choose a class (got {name!r})")
        if name not in self.site.class_names:
            raise forms.ValidationError(
                f"unknown class {name!r}; classes: {', '.join(self.site.class_names)}")
        return name

    def first_error(self) -> tuple[str, str]:
        """``(field, "field: message")`` of the first bad field."""
        field, messages = next(iter(self.errors.items()))
        return field, f"{field}: {messages[0]}"


class GenerateForm(_RunForm):
    """``seed``, ``seconds``, ``count`` (pages), ``class``, ``format``."""

    seed = _seed_field()
    seconds = forms.FloatField(min_value=0.1, max_value=MAX_SECONDS, initial=5.0,
                               widget=forms.NumberInput(attrs={"step": "0.1"}))
    count = forms.IntegerField(min_value=1, max_value=MAX_COUNT, initial=1, required=False)
    format = forms.ChoiceField(choices=[(f, f) for f in AUDIO_FORMATS], required=False,
                               initial="wav")

    def clean_count(self):
        return self.cleaned_data.get("count") or 1

    def clean_format(self):
        return self.cleaned_data.get("format") or "wav"


class InterpolateForm(_RunForm):
    """``seed_a``, ``seed_b``, ``steps`` (page) or ``t`` (API), ``class``, ``format``."""

    seed_a = _seed_field("Seed A")
    seed_b = _seed_field("Seed B")
    steps = forms.IntegerField(min_value=2, max_value=MAX_STEPS, initial=5, required=False)
    t = forms.FloatField(min_value=0.0, max_value=1.0, required=False)
    format = forms.ChoiceField(choices=[(f, f) for f in AUDIO_FORMATS], required=False,
                               initial="wav")

    def clean_steps(self):
        return self.cleaned_data.get("steps") or 5

    def clean_format(self):
        return self.cleaned_data.get("format") or "wav"
