"""``recipe_otel`` with its spans also kept in memory: ``GET /_recorded`` lists the finished ones."""

from __future__ import annotations

from typing import Any

import recipe_otel  # type: ignore[import-not-found]  # written from docs/middleware.md by the test
from harness import expose  # type: ignore[import-not-found]
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

EXPORTER = InMemorySpanExporter()
recipe_otel.provider.add_span_processor(SimpleSpanProcessor(EXPORTER))


def spans() -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "kind": s.kind.name,
            "status": s.status.status_code.name,
            "attributes": dict(s.attributes or {}),
            "trace_id": s.context.trace_id if s.context else None,
        }
        for s in EXPORTER.get_finished_spans()
    ]


app = expose(recipe_otel.app, spans)
