from django.contrib import admin
from django.urls import path

from django_planton.contrib.prometheus import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    # A bearer token (PLANTON_METRICS_TOKEN) or a staff login: see the README.
    path("metrics", metrics, name="planton-metrics"),
]
