from __future__ import annotations

from django.apps import AppConfig


class TracerConfig(AppConfig):
    name = "tracer"
    verbose_name = "Octotrace tracer"
