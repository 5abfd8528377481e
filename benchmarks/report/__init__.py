"""Write a run's results: raw JSON, a Markdown report, and the latency plot (PNG).

One module per concern, so a new benchmark row or section has one obvious place:

- `files`: the JSON and Markdown files (paths inside the clone made portable).
- `markdown`: the report's page, section by section, in the order SECTIONS lists them;
  a new section is a function `(results) -> list[str]` in its own module plus one line there.
- the sections: `header` (machine, load, peak; the targets; the closing notes), `latency`,
  `startup` (cold start, import times, footprint), `server`, `training` (throughput,
  strategies), `profiles`.
- `plot`: the PNG (latency and throughput against batch size).
- `fmt`: the number and table formatting every section shares.
"""

from __future__ import annotations

from benchmarks.report.files import write_json, write_markdown
from benchmarks.report.markdown import markdown
from benchmarks.report.plot import plot

__all__ = ["markdown", "plot", "write_json", "write_markdown"]
