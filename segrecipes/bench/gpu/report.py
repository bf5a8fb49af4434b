"""What ``segrecipes bench gpu`` leaves behind: ``gpu_check.json``, rewritten atomically after every check,
cell and section so that a lease cut short still leaves what was done, and ``gpu_check.md``, a table per
section that names the device, ready to paste into BENCHMARKS.md; the console shows the same tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segrecipes.bench.gpu.checks import CheckResult
from segrecipes.bench.gpu.data import SampleFiles
from segrecipes.bench.gpu.speed import GOAL_IMAGES_PER_S, GOAL_RECIPE, CellResult
from segrecipes.bench.pipeline import PipelineReport
from segrecipes.cache import write_json

JSON_FILE, MARKDOWN_FILE = "gpu_check.json", "gpu_check.md"
Section = tuple[str, list[str], list[list[str]]]  # title, headers, rows
LOG_WIDTH = 160
JSON_ONLY = {"losses", "eager_losses", "compiled_losses", "warnings"}  # check details too long for a table


@dataclass
class GpuRecord:
    device: str
    torch: str
    started: str
    smoke: bool
    budget_s: float
    correctness: list[CheckResult] = field(default_factory=list)
    throughput: list[CellResult] = field(default_factory=list)
    data: list[PipelineReport] = field(default_factory=list)
    data_files: SampleFiles | None = None
    data_error: str | None = None
    seconds: float = 0.0
    finished: bool = False

    @property
    def failed(self) -> bool:
        """Whether a correctness check failed (the command's exit code is then 1)."""
        return any(check.passed is False for check in self.correctness)

    def goal(self) -> dict[str, Any]:
        """The fastest measured cell of the goal recipe against the goal."""
        cells = [cell for cell in self.throughput if cell.cell.recipe == GOAL_RECIPE and cell.images_per_s]
        best = max(cells, key=lambda cell: cell.images_per_s or 0.0, default=None)
        goal: dict[str, Any] = {"recipe": GOAL_RECIPE, "target": GOAL_IMAGES_PER_S, "mild_images_per_s": None,
                                "cell": None, "batch": None, "image_size": None, "met": None}
        if best is not None and best.images_per_s is not None:
            goal.update(mild_images_per_s=best.images_per_s, cell=best.cell.name, batch=best.batch,
                        image_size=best.report["image_size"], met=best.images_per_s >= GOAL_IMAGES_PER_S)
        return goal

    def feeds_gpu(self, report: PipelineReport) -> bool | None:
        """Whether the loader delivers the fastest mild cell's images/s (None: no mild cell measured)."""
        mild = self.goal()["mild_images_per_s"]
        return None if mild is None else report.images_per_s >= mild

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device, "torch": self.torch, "started": self.started, "smoke": self.smoke,
            "budget_s": self.budget_s, "correctness": [check.to_dict() for check in self.correctness],
            "throughput": [cell.to_dict() for cell in self.throughput],
            "data": [{**report.to_dict(), "feeds_gpu": self.feeds_gpu(report)} for report in self.data],
            "data_files": self.data_files.to_dict() if self.data_files else None, "data_error": self.data_error,
            "goal": self.goal(), "seconds": self.seconds, "finished": self.finished,
        }


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _details(check: CheckResult) -> str:
    """The reason or error, else the measured figures but the per-step lists (those are in the JSON)."""
    if check.error or check.reason:
        return check.error or check.reason or ""
    return "; ".join(f"{key} {_shown(value)}" for key, value in check.details.items() if key not in JSON_ONLY)


def correctness_section(record: GpuRecord) -> Section:
    rows = [[check.name, check.status, _details(check), f"{check.seconds:.1f}"] for check in record.correctness]
    return "correctness", ["check", "result", "details", "seconds"], rows


def throughput_section(record: GpuRecord) -> Section:
    rows = []
    for cell in record.throughput:
        report = cell.report
        peak = report.get("peak_memory_mb")
        rows.append([
            cell.cell.name, cell.status if cell.status != "error" else f"error: {cell.error}",
            str(cell.batch or "-"), str(cell.microbatch or "-"), report.get("precision", "-"),
            _number(cell.images_per_s), _number(report.get("step_ms")), _number(report.get("achieved_tflops"), 2),
            _number(100 * report["utilization"] if report else None), _number(peak / 1024 if peak else None, 2),
            str(cell.skipped_steps if cell.skipped_steps is not None else "-"), f"{cell.seconds:.0f}",
        ])
    headers = ["cell", "status", "batch", "microbatch", "precision", "images/s", "ms/step", "TFLOP/s",
               "utilization %", "peak memory GiB", "skipped steps", "seconds"]
    return "training throughput", headers, rows


def data_section(record: GpuRecord) -> Section:
    mild = record.goal()["mild_images_per_s"]
    shown = {None: "-", True: "yes", False: "no"}
    rows = [[str(report.workers), _number(report.images_per_s), f"{report.first_batch_s:.2f}", str(report.batches),
             shown[record.feeds_gpu(report)]] for report in record.data]
    if record.data_error:
        rows.append(["-", f"error: {record.data_error}", "-", "-", "-"])
    return "data pipeline", ["workers", "images/s", "first batch (s)", "timed batches",
                             f"feeds the GPU ({_number(mild)} images/s)"], rows


def _setting(record: GpuRecord) -> list[str]:
    """The lines above the tables: device, software, what was measured on what."""
    goal, files = record.goal(), record.data_files
    lines = [f"{record.device}, torch {record.torch}, {record.started}, {record.seconds:.0f} s"
             f"{' (smoke run: CPU, tiny sizes)' if record.smoke else ''}{'' if record.finished else ' (unfinished)'}"]
    ceilings = {cell.report["precision"]: cell.report["matmul_ceiling_tflops"] for cell in record.throughput
                if cell.report}
    if ceilings:
        shown = ", ".join(f"{dtype} {tflops:.1f}" for dtype, tflops in ceilings.items())
        lines.append(f"Measured matmul ceiling (TFLOP/s, what utilization is a fraction of): {shown}")
    met = {None: "not measured", True: "met", False: "not met"}[goal["met"]]
    measured = (f"{_number(goal['mild_images_per_s'])} images/s ({goal['cell']}, batch {goal['batch']}, "
                f"{goal['image_size']}x{goal['image_size']})" if goal["cell"] else "nothing measured")
    lines.append(f"Goal: {GOAL_IMAGES_PER_S:g} training images/s for the {GOAL_RECIPE} recipe at 512x512 on one "
                 f"H100-class GPU: {measured}: {met}")
    if files:
        lines.append(f"Data: {files.pairs} JPEG/PNG pairs of {files.height}x{files.width} ({files.unique} drawn, the "
                     f"rest hard links; JPEG {files.jpeg_kb_mean:.0f} kB, PNG {files.png_kb_mean:.0f} kB on average)")
    return lines


def markdown(record: GpuRecord) -> str:
    parts = [f"## GPU check: {record.device}", "", *(f"- {line}" for line in _setting(record))]
    for title, headers, rows in (correctness_section(record), throughput_section(record), data_section(record)):
        parts += ["", f"### {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        parts += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(parts) + "\n"


def write_record(record: GpuRecord, out: Path) -> None:
    """Both files, the JSON by a temporary file and a rename (readers never see half of it)."""
    write_json(out / JSON_FILE, record.to_dict())
    (out / MARKDOWN_FILE).write_text(markdown(record))


def print_section(section: Section, console: Console) -> None:
    """The section as a table; into a log (not a terminal) at least ``LOG_WIDTH`` wide, not cut to 80 columns."""
    title, headers, rows = section
    table = Table(*headers, title=title)
    for row in rows:
        table.add_row(*map(escape, row))
    wide = console if console.is_terminal else Console(file=console.file, width=max(console.width, LOG_WIDTH))
    wide.print(table)


def print_setting(record: GpuRecord, console: Console) -> None:
    for line in _setting(record):
        console.print(escape(line), soft_wrap=True)
