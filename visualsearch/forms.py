"""The shopper page's form: a photo (file, camera or, with JavaScript, dropped or pasted) and the filters."""
from __future__ import annotations

from decimal import Decimal

from django import forms

from catalog.models import Product

from .services.search import Box


class SearchForm(forms.Form):
    image = forms.FileField(label="Choose a photo", required=False,
                            widget=forms.FileInput(attrs={"accept": "image/*", "aria-describedby": "photo-help"}))
    # A second input that opens the camera on phones (`capture`); the desktop browsers ignore the attribute.
    camera = forms.FileField(label="Take a photo", required=False,
                             widget=forms.FileInput(attrs={"accept": "image/*", "capture": "environment"}))
    category = forms.ChoiceField(label="Category", required=False)
    min_price = forms.DecimalField(label="Price from", required=False, min_value=Decimal(0), max_digits=10,
                                   decimal_places=2, widget=forms.NumberInput(attrs={"step": "any", "size": 6}))
    max_price = forms.DecimalField(label="to", required=False, min_value=Decimal(0), max_digits=10,
                                   decimal_places=2, widget=forms.NumberInput(attrs={"step": "any", "size": 6}))
    in_stock = forms.BooleanField(label="In stock only", required=False)
    # The handle of the photo being shown: "Search" with new filters and no new photo searches with it again.
    q = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)
    # The part of the photo that shows the product (the crop box), as the API's `box`: left,top,right,bottom 0–1.
    box = forms.CharField(label="Crop box", required=False, max_length=100, widget=forms.HiddenInput)

    def __init__(self, *args, require_photo: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.require_photo = require_photo
        self.fields["category"].choices = [("", "All categories")] + [
            (name, name) for name in Product.objects.browsable().categories()
        ]

    def add_error(self, field, error) -> None:
        super().add_error(field, error)
        if self._errors.get("image"):  # the error text is tied to the input, not only shown near it
            self.fields["image"].widget.attrs.update({"aria-invalid": "true",
                                                      "aria-describedby": "photo-help photo-error"})

    def clean_box(self) -> Box | None:
        value = self.cleaned_data.get("box")
        if not value:
            return None
        try:
            return Box.parse(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict:
        data = super().clean()
        data["photo"] = data.get("camera") or data.get("image")
        if self.require_photo and not data["photo"] and not data.get("q"):
            self.add_error("image", "Choose a photo of the product (or drop or paste one here).")
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and low > high:
            self.add_error("max_price", "The highest price must not be below the lowest.")
        return data

    def filters(self) -> dict:
        """The search service's filter arguments from the cleaned form."""
        data = self.cleaned_data
        return {"category": data.get("category") or None, "min_price": data.get("min_price"),
                "max_price": data.get("max_price"), "in_stock_only": bool(data.get("in_stock"))}

    def filter_query(self) -> dict:
        """The filters as URL parameters (for the results URL and its "load more" links)."""
        data = self.cleaned_data
        query = {"category": data.get("category") or "", "min_price": data.get("min_price"),
                 "max_price": data.get("max_price"), "in_stock": "on" if data.get("in_stock") else "",
                 "box": str(data["box"]) if data.get("box") else ""}
        return {key: value for key, value in query.items() if value not in ("", None)}
