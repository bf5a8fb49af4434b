"""``segrecipes bench``: training throughput, data-pipeline throughput and recipe races to a target mIoU."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.console import Console
from rich.table import Table

from segrecipes.bench.driver import LITERAL, bench_config, bench_trainer, synthetic_batch
from segrecipes.bench.gpu.run import run_gpu
from segrecipes.bench.methods import measure_method_costs
from segrecipes.bench.overhead import LAYOUT_METHOD, engine_overhead
from segrecipes.bench.pipeline import measure_pipeline, measure_stages
from segrecipes.bench.entries import parse_entries
from segrecipes.bench.race.plot import write_race
from segrecipes.bench.race.run import evaluation_data, race_configs, run_race
from segrecipes.bench.race.score import BASELINE_TARGET, score, summarize
from segrecipes.bench.study.frontier import CURRENCIES
from segrecipes.bench.study.plan import parse_budget_lists, study_plan
from segrecipes.bench.study.report import score_study, write_study
from segrecipes.bench.study.runs import StudyRun, finished_runs, run_study
from segrecipes.bench.threads import torch_threads
from segrecipes.cli.bench_tiled import tiled_command
from segrecipes.cli.study_table import print_study, shown
from segrecipes.bench.throughput import device_name, measure_throughput
from segrecipes.config import ConfigError, load_config
from segrecipes.run import training_data

bench_app = typer.Typer(help="Measure speed: training throughput, data loading, time to a target mIoU.",
                        no_args_is_help=True)
bench_app.command("tiled")(tiled_command)

SetOption = Annotated[Optional[list[str]], typer.Option("--set", help="section.key=value override (repeatable).")]
RecipeOption = Annotated[Optional[str], typer.Option(help="Preset to start from (see `segrecipes recipes`).")]


def _names(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _integers(option: str, text: str) -> list[int]:
    try:
        return [int(part) for part in _names(text)]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected comma-separated whole numbers such as 0,2,4") from None


@bench_app.command("throughput")
def throughput_command(
    recipe: RecipeOption = None,
    model: Annotated[Optional[str], typer.Option(help="deeplabv3plus | smp:<Arch>")] = None,
    backbone: Annotated[Optional[str], typer.Option(help="e.g. resnet101, resnet18")] = None,
    image_size: Annotated[int, typer.Option(help="Square training crop side.")] = 512,
    batch: Annotated[int, typer.Option(help="Images per optimizer step.")] = 16,
    precision: Annotated[Optional[str], typer.Option(help="auto | fp32 | bf16 | fp16 (a CPU runs fp32)")] = None,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="Enable the channels_last method.")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated: ema,channels_last,mixup,sam")] = None,
    loss: Annotated[Optional[str], typer.Option(help="ce | dice_ce (default: the recipe's)")] = None,
    classes: Annotated[Optional[int], typer.Option(help="Classes of the synthetic data (150 = ADE20k's).")] = None,
    steps: Annotated[int, typer.Option(help="Timed steps.")] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed steps first (compilation, allocator).")] = 5,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    breakdown: Annotated[bool, typer.Option(help="Time each phase of the step (synchronizes a GPU per phase).")] = True,
    overhead: Annotated[bool, typer.Option(help="Also compare the engine step with a bare PyTorch loop.")] = True,
    set_: SetOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Training images/s of the real engine step on synthetic batches, with a step-time breakdown."""
    overrides = [f"train.device={device}"]
    overrides += [f"model.name={model}"] if model else []
    overrides += [f"model.backbone={backbone}"] if backbone else []
    overrides += [f"train.precision={precision}"] if precision else []
    overrides += ["train.compile=true"] if compile_ else []
    overrides += [f"loss.name={loss}"] if loss else []
    overrides += [f"data.synthetic_num_classes={classes}"] if classes else []
    switches = _names(methods) + ([LAYOUT_METHOD] if channels_last else [])
    config = bench_config(load_config(recipe, None, [LITERAL, *overrides, *(set_ or [])], switches), image_size,
                          batch)
    trainer = bench_trainer(config)
    report = measure_throughput(trainer, config, steps, warmup, breakdown)
    comparable = set(config.enabled_methods()) <= {LAYOUT_METHOD}
    comparison = None
    if overhead and comparable:
        images, target = synthetic_batch(trainer, image_size, torch.Generator().manual_seed(config.train.seed + 1))
        comparison = engine_overhead(trainer, images, target, steps_per_round=max(1, steps // 4))
    if json_out:
        print(json.dumps({"throughput": report.to_dict(),
                          "engine_overhead": comparison.to_dict() if comparison else None}, indent=2))
        return
    console = Console()
    console.print(f"[bold]{report.model} {report.backbone}[/] {report.image_size}x{report.image_size}, batch "
                  f"{report.batch_size}, {report.precision}, methods: {', '.join(report.methods) or 'none'}, "
                  f"loss {report.loss}, {report.classes} classes, compile {'on' if report.compile else 'off'}, "
                  f"on {report.device}")
    console.print(f"train throughput  {report.images_per_s:.2f} images/s  ({report.step_ms:.1f} ms/step, "
                  f"{report.steps} steps after {report.warmup} warm-up)")
    if report.breakdown_ms:
        parts = "  ".join(f"{phase} {ms:.1f}" for phase, ms in report.breakdown_ms.items())
        console.print(f"step breakdown    {parts} ms")
    console.print(f"peak memory       {report.peak_memory_mb:.0f} MiB ({report.peak_memory_kind})")
    console.print(f"FLOPs per image   forward {report.forward_gflops_per_image:.1f} GFLOP, "
                  f"training step {report.train_gflops_per_image:.1f} GFLOP (3x forward)")
    console.print(f"achieved          {report.achieved_tflops:.3f} TFLOP/s = {100 * report.utilization:.1f}% of the "
                  f"measured {report.precision} matmul ceiling ({report.matmul_ceiling_tflops:.3f} TFLOP/s)")
    if comparison is not None:
        verdict = "ok" if comparison.ratio <= comparison.target else "ABOVE TARGET"
        console.print(f"engine overhead   engine {comparison.engine_images_per_s:.2f} vs bare PyTorch loop "
                      f"{comparison.bare_images_per_s:.2f} images/s: ratio {comparison.ratio:.3f} "
                      f"(target <= {comparison.target}) {verdict}")
    elif overhead:
        console.print("engine overhead   skipped: the bare-loop comparison needs a run without ema, mixup or sam")


@bench_app.command("methods")
def methods_command(
    classes: Annotated[int, typer.Option(help="Classes of the synthetic data (150 = ADE20k's).")] = 150,
    backbone: Annotated[str, typer.Option(help="e.g. resnet18, resnet101")] = "resnet18",
    output_stride: Annotated[int, typer.Option(help="8 (the reference) costs about 3x more than 16.")] = 16,
    head_channels: Annotated[int, typer.Option(help="Width of the DeepLabv3+ head (512 = the reference).")] = 128,
    image_size: Annotated[int, typer.Option(help="Square training crop side.")] = 128,
    batch: Annotated[int, typer.Option(help="Images per optimizer step.")] = 8,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds; the ratio is the median over them.")] = 5,
    steps: Annotated[int, typer.Option(help="Steps per block (a multiple of 10).")] = 10,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "cpu",
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (1 on a machine shared with others).")]
        = None,
    memory: Annotated[bool, typer.Option(help="Also measure each variant's peak memory (CPU: a process each).")]
        = True,
    set_: SetOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Each training method's cost as a ratio to a plain cross-entropy step, measured side by side."""
    if threads:
        torch.set_num_threads(threads)
    base = [f"model.backbone={backbone}", f"model.output_stride={output_stride}",
            f"model.head_channels={head_channels}", f"data.synthetic_num_classes={classes}", f"train.device={device}",
            *(set_ or [])]
    started = time.perf_counter()
    costs, used = measure_method_costs(base, image_size, batch, rounds, steps, memory=memory)
    memory_kind = "cuda max allocated" if used.type == "cuda" else "process peak RSS"
    setting = {"backbone": backbone, "output_stride": output_stride, "head_channels": head_channels,
               "image_size": image_size, "batch": batch, "classes": classes, "rounds": rounds, "steps": steps,
               "device": device_name(used), "torch": torch.__version__, "seconds": time.perf_counter() - started,
               "peak_memory_kind": memory_kind}
    if json_out:
        print(json.dumps({"setting": setting, "costs": [cost.to_dict() for cost in costs]}, indent=2))
        return
    table = Table("method", "ms/step", "ratio to plain", "range over rounds", "target", "within",
                  f"peak memory (MiB, {memory_kind})",
                  title=f"DeepLabv3+ {backbone} OS{output_stride} head {head_channels}, {batch} x {image_size}x"
                        f"{image_size}, {classes} classes, {setting['device']}: {rounds} rounds of {steps} steps")
    for cost in costs:
        within = "-" if cost.within is None else ("yes" if cost.within else "NO")
        target = "-" if cost.target is None else f"<= {cost.target}x"
        peak = "-" if cost.peak_memory_mb is None else f"{cost.peak_memory_mb:.0f}"
        table.add_row(cost.name, f"{cost.ms_per_step:.0f}", f"{cost.ratio:.3f}x",
                      f"{cost.ratio_min:.3f}-{cost.ratio_max:.3f}", target, within, peak)
    Console().print(table)


@bench_app.command("data")
def data_command(
    data: Annotated[str, typer.Option(help="ade20k:PATH | camvid:PATH | folder:PATH | synthetic")],
    workers: Annotated[str, typer.Option(help="Worker counts to compare, e.g. 0,2,4,8")] = "0,1,2",
    batch: Annotated[int, typer.Option(help="Images per batch.")] = 8,
    batches: Annotated[int, typer.Option(help="Timed batches per worker count (after the first).")] = 20,
    crop_size: Annotated[Optional[int], typer.Option(help="Training crop side (default: the config's).")] = None,
    stage_samples: Annotated[int, typer.Option(help="Samples for the per-stage breakdown (0: none).")] = 50,
    threads: Annotated[int, typer.Option(help="torch threads of the stage breakdown (a worker uses 1).")] = 1,
    recipe: RecipeOption = None,
    set_: SetOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Images/s of the real training DataLoader (decode + augmentation) for several worker counts, and
    the time of each stage of a sample (decode, resize, crop search, flip, photometric, pad)."""
    if stage_samples < 0 or threads < 1:
        raise ConfigError(f"bench data: need --stage-samples >= 0 and --threads >= 1 (got {stage_samples} and "
                          f"{threads})")
    overrides = [f"data.spec={data}", *([f"data.crop_size={crop_size}"] if crop_size else []), *(set_ or [])]
    config = load_config(recipe, overrides=overrides)
    counts = _integers("--workers", workers)
    dataset = training_data(config)
    reports = measure_pipeline(dataset, counts, batch, batches, config.train.seed, config.data.pin_memory)
    stages = None
    if stage_samples:
        with torch_threads(threads):
            stages = measure_stages(dataset, stage_samples, config.train.seed)
    if json_out:
        print(json.dumps({"data": data, "crop_size": config.data.crop_size,
                          "results": [report.to_dict() for report in reports],
                          "stages": stages.to_dict() if stages else None}, indent=2))
        return
    table = Table("workers", "images/s", "first batch (s)", "timed batches",
                  title=f"train DataLoader, {data}, crop {config.data.crop_size}, batch {batch}")
    for report in reports:
        table.add_row(str(report.workers), f"{report.images_per_s:.1f}", f"{report.first_batch_s:.2f}",
                      str(report.batches))
    console = Console()
    console.print(table)
    if stages:
        breakdown = Table("stage", "ms per sample", "share", title=f"one sample, stage by stage ({threads} thread"
                          f"{'s' if threads > 1 else ''}, mean of {stages.samples} samples, this process)")
        for name, ms in stages.ms_per_sample.items():
            breakdown.add_row(name, f"{ms:.2f}", f"{100 * ms / stages.total_ms:.0f}%")
        breakdown.add_row("total", f"{stages.total_ms:.2f}", "100%")
        console.print(breakdown)


@bench_app.command("race")
def race_command(
    data: Annotated[str, typer.Option(help="ade20k:PATH | camvid:PATH | folder:PATH | synthetic")],
    target_miou: Annotated[str, typer.Option(help="The mIoU (percent) each entry races to, or 'baseline': the "
                                                  "first entry's mean final mIoU.")],
    recipes: Annotated[str, typer.Option(help="Comma-separated entries: RECIPE, RECIPE[key=value ...] or "
                                              "LABEL=RECIPE[key=value ...]; speedups are relative to the first.")] =
        "baseline,mild,medium",
    scale: Annotated[float, typer.Option(help="Multiply every recipe's duration (e.g. 0.1 for a quick race).")] = 1.0,
    seeds: Annotated[int, typer.Option(help="Runs per recipe (seeds seed, seed+1, ...).")] = 1,
    evals: Annotated[int, typer.Option(help="Evaluations over the shortest recipe's duration.")] = 10,
    eval_every: Annotated[Optional[str], typer.Option(help="Evaluation interval for all recipes, e.g. 200ba, 1ep")] =
        None,
    eval_data: Annotated[Optional[str], typer.Option(help="Score every run's final model on this dataset instead "
                                                          "of the run's validation split (SPEC).")] = None,
    eval_split: Annotated[str, typer.Option(help="The split of --eval-data to score on.")] = "val",
    set_: SetOption = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default runs/race-<time>).")] = None,
) -> None:
    """Train each entry, record mIoU against wall time, report time and images to reach the target."""
    target = _race_target(target_miou)
    entries = parse_entries(recipes)
    out_dir = out or Path("runs") / f"race-{time.strftime('%Y%m%d-%H%M%S')}"
    plan = race_configs(entries, data, scale, seeds, list(set_ or []), evals, eval_every)
    scored_on = evaluation_data(plan[0][2], eval_data, eval_split) if eval_data else None
    settings = {"recipes": [asdict(entry) for entry in entries], "data": data, "scale": scale, "seeds": seeds,
                "overrides": list(set_ or []), "eval_interval": str(plan[0][2].train.eval_interval),
                "final_scores_on": f"{eval_data} ({eval_split})" if eval_data else f"{data} (val)",
                "target": target_miou, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "torch": torch.__version__}
    runs = run_race(plan, out_dir, scored_on)
    value = score(runs, target)
    paths = write_race(out_dir, runs, value, settings)
    title = f"race to {value:.4g} mIoU" + (" (the baseline's final mean)" if target == BASELINE_TARGET else "")
    table = Table(title=f"{title} on {data}")
    table.add_column("recipe", no_wrap=True)
    for header in ("reached", "to target (s)", "images to target", "speedup", "final mIoU",
                   "mIoU at baseline time", "images/s", "wall (s)"):
        table.add_column(header, justify="right")
    for summary in summarize(runs):
        table.add_row(
            summary.recipe, f"{summary.reached}/{summary.runs}", shown(summary.time_to_target_s, 1),
            shown(summary.images_to_target, 0), f"{summary.speedup:.2f}x" if summary.speedup else "-",
            shown(summary.final_miou), shown(summary.miou_at_reference_time), shown(summary.images_per_s, 1),
            shown(summary.wall_time_s, 1),
        )
    console = Console()
    console.print(table)
    console.print(f"final mIoU on {settings['final_scores_on']}; curves, target and time to target on each run's "
                  f"validation split ({data})")
    console.print(f"wrote {', '.join(str(path) for path in paths.values())}")


def _race_target(text: str) -> float | str:
    if text.strip().lower() == BASELINE_TARGET:
        return BASELINE_TARGET
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--target-miou {text!r}: give a number (percent) or 'baseline'") from None


@bench_app.command("study")
def study_command(
    data: Annotated[str, typer.Option(help="ade20k:PATH | camvid:PATH | folder:PATH | synthetic")],
    budgets: Annotated[list[str], typer.Option(help="Comma-separated budgets (8ep,16ep,360ba, or bare fractions of "
                                                    "--reference-budget); LABEL=... gives one entry its own list "
                                                    "(repeatable).")],
    recipes: Annotated[str, typer.Option(help="Comma-separated entries: RECIPE, RECIPE[key=value ...] or "
                                              "LABEL=RECIPE[key=value ...]; the first is the baseline.")] =
        "baseline,mild,medium",
    seeds: Annotated[int, typer.Option(help="Runs per entry and budget (seeds seed, seed+1, ...).")] = 1,
    reference_budget: Annotated[Optional[str], typer.Option(help="What bare budgets are fractions of (default: "
                                                                 "each entry's preset duration).")] = None,
    currency: Annotated[str, typer.Option(help="Cost to compare: passes (image forward/backward passes, a SAM step "
                                               "counts two) or wall_time_s.")] = "passes",
    target_miou: Annotated[Optional[float], typer.Option(help="Target for the speed-ups (default: the baseline's "
                                                              "mean at its longest budget).")] = None,
    shard: Annotated[str, typer.Option(help="I/N: train only this process's share of the runs (start N processes "
                                            "with I = 0..N-1 on the same --out).")] = "0/1",
    report_only: Annotated[bool, typer.Option("--report-only", help="Train nothing: score the finished runs.")] =
        False,
    set_: SetOption = None,
    out: Annotated[Path, typer.Option(help="Study folder: runs/ and the study's files; rerun the same command to "
                                           "continue it.")] = Path("runs/study"),
) -> None:
    """Train each entry at each budget and seed, resumably, and score it against the baseline's frontier:
    regime check, speed-up to the target, quality at equal cost."""
    entries = parse_entries(recipes)
    labels = [entry.label for entry in entries]
    if currency not in CURRENCIES:
        raise ConfigError(f"--currency {currency!r}: use one of {', '.join(CURRENCIES)}")
    index, count = _shard(shard)
    plan = study_plan(entries, data, parse_budget_lists(budgets, labels), seeds, list(set_ or []), reference_budget)
    settings = {"recipes": [asdict(entry) for entry in entries], "data": data, "budgets": list(budgets),
                "seeds": seeds, "overrides": list(set_ or []), "reference_budget": reference_budget,
                "torch": torch.__version__}
    console = Console()

    def report(runs: list[StudyRun]) -> None:
        scores = score_study(runs, labels, currency, target_miou)
        write_study(out, scores, runs, {**settings, "written": time.strftime("%Y-%m-%d %H:%M:%S %Z")})

    if report_only:
        runs = finished_runs(plan, out)
    else:
        runs = run_study(plan, out, (index, count), on_finish=report)
    scores = score_study(runs, labels, currency, target_miou)
    paths = write_study(out, scores, runs, {**settings, "written": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
    print_study(console, scores, len(runs), len(plan))
    console.print(f"wrote {', '.join(str(path) for path in paths.values())}")


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        return int(index), int(count)
    except ValueError:
        raise ConfigError(f"--shard {text!r}: give I/N, e.g. 0/2") from None


@bench_app.command("gpu")
def gpu_command(
    out: Annotated[Path, typer.Option(help="Folder for gpu_check.json and gpu_check.md (created if missing).")],
    smoke: Annotated[bool, typer.Option("--smoke", help="The same code on a CPU at tiny sizes (under a minute).")]
        = False,
    budget_s: Annotated[float, typer.Option(help="Seconds from the start; a throughput cell that would end later "
                                                 "is skipped.")] = 420.0,
) -> None:
    """Everything that needs a GPU in one run of at most ~8 minutes: correctness, throughput, data pipeline.
    Exits with 1 if a correctness check failed."""
    if run_gpu(out, smoke, budget_s, Console()).failed:
        raise typer.Exit(1)
