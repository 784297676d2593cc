"""``evaluate``: ELBO, importance-weighted NLL, active units and outlier detection."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vae import limits
from vae.checkpoint import DEFAULT_CHECKPOINT
from vae.cli.common import (
    IMAGES_DIR,
    CheckpointOption,
    DataDirOption,
    DatasetOption,
    DeviceOption,
    DownloadOption,
    ImageSource,
    InvertOption,
    LimitOption,
    check_picture_output,
    check_positive,
    handle_errors,
    read_paths,
    say,
    write_json,
    write_safely,
)
from vae.config import check_seed
from vae.errors import ConfigError
from vae.fileio import (
    EVALUATION,
    EVALUATION_PROGRESS,
    OUTLIER_SCORES,
    atomic_write_text,
    check_output_file,
    progress_path,
)
from vae.limits import check_at_most

TEST_BINARIZATIONS = (None, "static", "dynamic", "none")


@handle_errors
def evaluate_command(
    checkpoint: CheckpointOption = DEFAULT_CHECKPOINT,
    k: Annotated[
        int, typer.Option("--k", help="Importance samples per image (5000 for paper comparisons).")
    ] = 1000,
    repeats: Annotated[int, typer.Option(help="Evaluation seeds; reports mean and std.")] = 1,
    binarize_test: Annotated[
        str | None,
        typer.Option(
            help="static (fixed seed, default for Bernoulli models), dynamic (redrawn per repeat) or none."
        ),
    ] = None,
    dataset: DatasetOption = None,
    input_path: Annotated[
        Path | None, typer.Option("--input", help="Evaluate on an image file or folder instead.")
    ] = None,
    invert: InvertOption = False,
    limit: LimitOption = None,
    batch_size: Annotated[int, typer.Option(help="Images per evaluation batch.")] = 100,
    ood_dataset: Annotated[
        str | None,
        typer.Option(
            help="Out-of-distribution dataset (name or folder:PATH) for outlier detection."
        ),
    ] = None,
    histogram: Annotated[
        Path, typer.Option(help="PNG of the score histograms (with --ood-dataset).")
    ] = IMAGES_DIR / "ood_histogram.png",
    output: Annotated[
        Path | None, typer.Option(help="Write every figure to this JSON file.")
    ] = None,
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
    seed: Annotated[int, typer.Option(help="First evaluation seed.")] = 0,
    device: DeviceOption = "auto",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """ELBO, importance-weighted NLL (nats and bits/dim), active units; outlier detection."""
    _check_options(k, repeats, batch_size, seed, limit, binarize_test)
    # An evaluation can take an hour: a path it could never write is refused before it starts.
    reads = read_paths(checkpoint, input_path, dataset, ood_dataset)
    _check_outputs(reads, output, ood_dataset, histogram)
    from vae.evaluation import evaluate_checkpoint
    from vae.reporting import RichReporter

    source = ImageSource(
        input_path=input_path,
        dataset=dataset,
        data_dir=data_dir,
        download=download,
        limit=limit,
        device=device,
        invert=invert,
    )
    result = evaluate_checkpoint(
        checkpoint,
        source.library(),
        k=k,
        repeats=repeats,
        binarize_test=binarize_test,
        batch_size=batch_size,
        seed=seed,
        device=device,
        ood_dataset=ood_dataset,
        histogram=histogram,
        reporter=RichReporter(quiet=quiet),
        progress_file=None if output is None else progress_path(output),
    )
    kept = result.pop("progress_file", None)  # None when this evaluation kept none
    result["command"] = command_line(sys.argv)
    _report(result, output)
    if kept is not None:
        kept.unlink(missing_ok=True)  # its evaluation is written


def _check_options(
    k: int,
    repeats: int,
    batch_size: int,
    seed: int,
    limit: int | None,
    binarize_test: str | None,
) -> None:
    check_positive(k=k, repeats=repeats, batch_size=batch_size)
    check_at_most("--k", k, limits.MAX_IMPORTANCE_SAMPLES)
    check_at_most("--repeats", repeats, limits.MAX_REPEATS)
    check_at_most("--batch-size", batch_size, limits.MAX_BATCH_SIZE)
    check_seed(seed, count=repeats)
    if limit is not None:
        check_positive(limit=limit)
    if binarize_test not in TEST_BINARIZATIONS:
        raise ConfigError(
            f"invalid value for --binarize-test: {binarize_test!r} (expected static, dynamic or none)"
        )


def _check_outputs(
    reads: list[Path], output: Path | None, ood_dataset: str | None, histogram: Path
) -> None:
    if output is not None and ood_dataset is not None:
        from vae.ood import scores_path

        if histogram.resolve() in (output.resolve(), scores_path(output).resolve()):
            raise ConfigError(
                f"--histogram {histogram} is a file --output also writes: name two files"
            )
    if output is not None:
        check_output_file(output, "--output", EVALUATION, reads)
        check_output_file(progress_path(output), "--output", EVALUATION_PROGRESS, reads)
        if ood_dataset is not None:
            from vae.ood import scores_path

            check_output_file(scores_path(output), "--output", OUTLIER_SCORES, reads)
    if ood_dataset is not None:
        check_picture_output(histogram, "--histogram", reads)


def _report(result: dict[str, Any], output: Path | None) -> None:
    """Print the tables; write the JSON (and the outlier scores beside it) to ``output``."""
    from rich.console import Console

    from vae.reporting import evaluation_table, ood_table

    console = Console(highlight=False)
    console.print(evaluation_table(result))
    if "ood" in result:
        console.print(ood_table(result["ood"]))
    per_image = result.get("ood", {}).pop("per_image", None)
    if output is None:
        return
    if per_image is not None:
        from vae.ood import scores_csv, scores_path

        scores_file = scores_path(output)
        result["ood"]["scores_file"] = scores_file.name  # beside the JSON
        write_safely(lambda: _write_scores(scores_file, scores_csv(per_image)), scores_file)
        say(f"wrote {scores_file}")
    write_safely(lambda: write_json(output, result, _write_evaluation), output)
    say(f"wrote {output}")


def _write_evaluation(path: Path, text: str) -> None:
    atomic_write_text(path, text, replaces=EVALUATION)


def _write_scores(path: Path, text: str) -> Path:
    atomic_write_text(path, text, replaces=OUTLIER_SCORES)
    return path


def command_line(argv: list[str]) -> str:
    """The command as typed, for the evaluation JSON: the program's name (``python -m vae`` for
    vae's ``__main__.py``) and its arguments, quoted where a POSIX shell needs it."""
    program = Path(argv[0])
    is_vae_main = program.name == "__main__.py" and program.parent.name == "vae"
    head = ["python", "-m", "vae"] if is_vae_main else [program.name]
    return shlex.join([*head, *argv[1:]])
