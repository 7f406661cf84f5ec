"""Prometheus metrics in the text exposition format (version 0.0.4), kept per app.

A registry per app (not a process-wide one) lets tests and benchmarks run several servers in one
process. Updates come from the event loop and the model threads, so each metric holds a lock.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Sequence

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_LE_INF = 'le="+Inf"'


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)] + ([extra] if extra else [])
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return str(value).replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()):
        self.name, self.help, self.label_names = name, help_text, tuple(label_names)
        self._lock = threading.Lock()
        self._values: dict[tuple[str, ...], object] = {}

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.label_names)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            lines += self._samples(key, value)
        return lines

    def _samples(self, key, value) -> list[str]:
        return [f"{self.name}{_labels(self.label_names, key)} {_number(value)}"]


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)


class Gauge(_Metric):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = (),
                 buckets: Sequence[float] = LATENCY_BUCKETS):
        super().__init__(name, help_text, label_names)
        self.buckets = tuple(sorted(buckets))

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts, total, n = self._values.get(key) or ([0] * len(self.buckets), 0.0, 0)
            for i, edge in enumerate(self.buckets):
                if value <= edge:
                    counts[i] += 1
            self._values[key] = (counts, total + value, n + 1)

    def count(self, **labels: str) -> int:
        with self._lock:
            entry = self._values.get(self._key(labels))
        return entry[2] if entry else 0

    def _samples(self, key, value) -> list[str]:
        counts, total, n = value
        lines = []
        for edge, c in zip(self.buckets, counts):
            le = 'le="' + _number(edge) + '"'
            lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {c}")
        lines.append(f"{self.name}_bucket{_labels(self.label_names, key, _LE_INF)} {n}")
        plain = _labels(self.label_names, key)
        lines += [f"{self.name}_sum{plain} {_number(total)}", f"{self.name}_count{plain} {n}"]
        return lines


class ServerMetrics:
    """Everything /metrics reports: requests by endpoint and status, latencies, batch sizes and
    durations, queue depth, generated tokens."""

    def __init__(self, prefix: str = "lantern"):
        self.requests = Counter(f"{prefix}_http_requests_total", "HTTP requests by endpoint and status code.",
                                ("endpoint", "status"))
        self.latency = Histogram(f"{prefix}_http_request_duration_seconds", "Request latency by endpoint.",
                                 ("endpoint",))
        self.batch_size = Histogram(f"{prefix}_batch_size", "Examples per model batch.", ("model",),
                                    SIZE_BUCKETS)
        self.batch_seconds = Histogram(f"{prefix}_batch_duration_seconds", "Time per model batch.", ("model",))
        self.queue_depth = Gauge(f"{prefix}_queue_depth", "Examples waiting for a batch.", ("model",))
        self.examples = Counter(f"{prefix}_examples_total", "Examples run through each model.", ("model",))
        self.tokens = Counter(f"{prefix}_generated_tokens_total", "Tokens generated by the decoder.")
        self._all = (self.requests, self.latency, self.batch_size, self.batch_seconds, self.queue_depth,
                     self.examples, self.tokens)

    def render(self) -> str:
        return "\n".join(line for metric in self._all for line in metric.render()) + "\n"
