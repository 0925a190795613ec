from django.urls import path

from .views import VisualSearchApi

urlpatterns = [path("search/", VisualSearchApi.as_view(), name="api-search")]
