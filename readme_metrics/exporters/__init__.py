"""Exporters: where logs go. Each owns its wire; none knows of queues or retries.

- :class:`ReadMeExporter`: the ReadMe metrics API or the local collector (the default,
  configured by ``api_key``, ``metrics_server`` and ``compress``);
- :class:`JsonLinesExporter`: one log object per line, in a file (rotated) or a stream;
- :class:`OtlpExporter`: OpenTelemetry log records over OTLP/HTTP (protobuf or JSON);
- :class:`MemoryExporter`: keeps the logs in memory, for tests;
- :class:`Exporter`: the protocol a new destination implements (``export``, ``shutdown``).
"""

from readme_metrics.exporters.base import Exporter, ExportError
from readme_metrics.exporters.jsonl import JsonLinesExporter
from readme_metrics.exporters.memory import MemoryExporter
from readme_metrics.exporters.otlp import OtlpExporter
from readme_metrics.exporters.readme import ReadMeExporter

__all__ = ["ExportError", "Exporter", "JsonLinesExporter", "MemoryExporter", "OtlpExporter", "ReadMeExporter"]
