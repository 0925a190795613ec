"""Template tags for pages outside this app (the project's product page)."""
from __future__ import annotations

import logging

from django import template

from ..backends.base import IndexUnavailable
from ..imaging import ImageRejected
from ..services.search import UnknownImage, more_like_this

register = template.Library()
logger = logging.getLogger(__name__)
SIMILAR_PRODUCTS = 8


@register.inclusion_tag("visualsearch/_similar_products.html")
def similar_products(product) -> dict:
    """The products most like this one's main photo, never the product itself: the nearest ones whatever their
    score (a strip of "you may also like", not a search answer). Empty, never an error, when search cannot run."""
    photo = product.images.all()[:1]
    matches = []
    if photo:
        try:
            matches = more_like_this(image_id=photo[0].pk, exclude_product=True, threshold=-1.0,
                                     limit=SIMILAR_PRODUCTS).matches
        except (UnknownImage, ImageRejected, IndexUnavailable) as exc:
            logger.info("no similar products for product %s: %s", product.pk, exc)
    return {"matches": matches, "product": product}


# Bands shoppers read instead of raw cosines: recognised as this very product, then halfway between the search
# threshold and 1 (the threshold itself is calibrated by `evaluate`; the band split is a presentation choice).
BANDS = {"exact": "Same product", "very": "Very similar", "similar": "Similar", "far": "Not close"}


def band_of(match, threshold: float | None = None) -> str:
    from django.conf import settings

    threshold = settings.VISUALSEARCH["SEARCH_THRESHOLD"] if threshold is None else threshold
    if match.match == "exact":
        return "exact"
    if match.score >= threshold + (1 - threshold) / 2:
        return "very"
    return "similar" if match.score >= threshold else "far"


@register.inclusion_tag("visualsearch/_match_card.html")
def match_card(match) -> dict:
    band = band_of(match)
    return {"match": match, "band": band, "label": BANDS[band]}


@register.simple_tag
def band(match) -> str:
    return band_of(match)


@register.simple_tag
def band_label(match) -> str:
    return BANDS[band_of(match)]


@register.simple_tag
def index_backlog() -> dict[str, int]:
    from ..health import index_backlog as backlog

    return backlog()
