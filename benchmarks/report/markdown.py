"""The Markdown report: its sections, in page order. Add a section here, one line, with the
function (results -> lines) in the module of its concern."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.report import header, latency, profiles, server, startup, training

Section = Callable[[dict], list[str]]

# After the header and the latency table (which links the plot), in page order.
SECTIONS: tuple[Section, ...] = (
    startup.cold_start,
    startup.import_times,
    startup.footprint,
    server.server,
    training.throughput,
    training.strategies,
    training.precisions,
    profiles.profiles,
)


def markdown(results: dict, png_name: str) -> str:
    lines = header.header(results) + header.targets(results)
    lines += latency.latency(results, png_name)
    for section in SECTIONS:
        lines += section(results)
    lines += header.notes(results)
    return "\n".join(lines)
