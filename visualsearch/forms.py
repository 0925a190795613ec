from __future__ import annotations

from django import forms


class SearchForm(forms.Form):
    image = forms.FileField(label="Your photo", widget=forms.ClearableFileInput(attrs={"accept": "image/*"}))
    category = forms.CharField(required=False, max_length=100)
