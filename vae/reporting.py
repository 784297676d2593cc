"""The one reporting layer: the library tells a Reporter what happened; only Reporters print."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from vae.loss_name import ELBO, LossName, training_loss_name

# Seconds between plain progress lines when the output is no terminal (a log file, a pipe).
PLAIN_STEP_SECONDS = 30.0
# The parts of the trained loss in each row of the epoch table, after the loss and its total.
TERMS = ("neg_elbo", "recon", "kl")


def printable(text: object) -> str:
    """``text`` with every character the terminal would act on shown escaped, as repr shows it
    (ESC as \\x1b, a newline as \\n): strings from files (checkpoint metadata, file names) can
    hold escape sequences or extra lines that must not reach the terminal raw."""
    value = str(text)
    if value.isprintable():  # the common case, without building a new string
        return value
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in value)


def plain(text: object) -> Any:
    """A rich Text of ``printable(text)``: shown as it is, with no markup ([link=...], [red])
    or emoji codes interpreted."""
    from rich.text import Text

    return Text(printable(text))


class Reporter:
    """Silent reporter: the default for library use and tests. Subclasses decide what to show."""

    def run_started(self, description: str, total_steps: int, start_step: int) -> None:
        """Training begins (or resumes at ``start_step``)."""

    def step(self, step: int, metrics: dict[str, float]) -> None:
        """One optimisation step finished; metrics hold loss, recon, kl, beta, images_per_second."""

    def epoch_ended(self, record: dict[str, Any]) -> None:
        """One epoch finished; ``record`` is the line written to metrics.jsonl."""

    def run_ended(self) -> None:
        """Training stopped (normally or not): release the terminal."""

    def task_started(self, description: str, total: int) -> None:
        """A long computation other than training begins (evaluation, scoring)."""

    def task_advanced(self, amount: int) -> None:
        """``amount`` more units of the current task are done."""

    def task_ended(self) -> None:
        """The current task is over."""

    def message(self, text: str) -> None:
        """A line for the user."""

    def warning(self, text: str) -> None:
        """A line the user should not miss."""

    def run_configured(self, config: dict[str, Any]) -> None:
        """The resolved configuration of the run that is starting."""

    def images_written(self, epoch: int, images: dict[str, Path]) -> None:
        """Sample and reconstruction grids were written after ``epoch``."""

    def run_finished(self, summary: dict[str, Any]) -> None:
        """Training finished; ``summary`` holds the final figures (best validation -ELBO...)."""


class ReporterGroup(Reporter):
    """Several reporters hearing the same events (the terminal and an experiment tracker)."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = reporters


def _fan_out(name: str) -> Any:
    def method(self: ReporterGroup, *args: Any, **kwargs: Any) -> None:
        for reporter in self.reporters:
            getattr(reporter, name)(*args, **kwargs)

    method.__name__ = name
    return method


for _name, _value in list(vars(Reporter).items()):
    if callable(_value) and not _name.startswith("_"):
        setattr(ReporterGroup, _name, _fan_out(_name))


class RichReporter(Reporter):
    """Progress bar, a table per epoch and messages on the terminal, with rich."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console

        self.console = Console(stderr=False, highlight=False)
        self.error_console = Console(stderr=True, highlight=False)
        # A log file or a pipe gets whole plain lines: no live bar (rich would leave truncated
        # frames in the file), no wrapping at a width that no reader has.
        self.live = self.console.is_terminal
        for console in (self.console, self.error_console):
            console.soft_wrap = not console.is_terminal
        self.quiet = quiet
        self._progress: Any = None
        self._task: Any = None
        self._loss: LossName = ELBO
        self._total_steps = 0
        self._last_line = 0.0

    def _start_progress(
        self, label: str, total: int, completed: int, stats: str, console: Any, **fields: Any
    ) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn()]
        if stats:
            columns.append(TextColumn(stats))
        columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
        self._progress = Progress(*columns, console=console)
        self._progress.start()
        self._task = self._progress.add_task(label, total=total, completed=completed, **fields)

    def run_configured(self, config: dict[str, Any]) -> None:
        self._loss = training_loss_name(config)

    def run_started(self, description: str, total_steps: int, start_step: int) -> None:
        self.message(description)
        self._total_steps = total_steps
        self._last_line = time.monotonic()
        if self.quiet or not self.live:
            return
        stats = (
            (
                "loss {task.fields[loss]:.2f} recon {task.fields[recon]:.2f} "
                "KL {task.fields[kl]:.2f} beta {task.fields[beta]:.3g} "
            )
            if self._loss.has_kl
            else "loss {task.fields[loss]:.2f} "
        ) + "{task.fields[images_per_second]:.0f} img/s"
        nan = float("nan")
        self._start_progress(
            "train", total_steps, start_step, stats, self.console,
            loss=nan, recon=nan, kl=nan, beta=0.0, images_per_second=0.0,
        )  # fmt: skip

    def step(self, step: int, metrics: dict[str, float]) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, **metrics)
        elif not self.quiet and not self.live and self._due(PLAIN_STEP_SECONDS):
            terms = (
                f"recon {metrics['recon']:.2f}  KL {metrics['kl']:.2f}  "
                f"beta {metrics['beta']:.3g}  "
                if self._loss.has_kl
                else ""
            )
            self.console.print(
                f"step {step}/{self._total_steps}  loss {metrics['loss']:.2f}  {terms}"
                f"{metrics['images_per_second']:.0f} img/s"
            )

    def _due(self, seconds: float) -> bool:
        """Whether ``seconds`` have passed since the last plain progress line (then restart)."""
        now = time.monotonic()
        if now - self._last_line < seconds:
            return False
        self._last_line = now
        return True

    def epoch_ended(self, record: dict[str, Any]) -> None:
        if self.quiet:
            return
        has_kl = self._loss.has_kl
        caption = (f"beta {record['beta']:.3g}  " if has_kl else "") + (
            f"lr {record['lr']:.3g}  {record['images_per_second']:.0f} img/s"
        )
        if "val_mse" in record:
            caption += f"  val MSE/pixel {record['val_mse']:.5f}"
        # The loss with beta, then the trained loss and its parts; a model without a KL term has
        # only its loss (the three would be equal, with a KL of 0 and a beta of nothing).
        # Validation has no beta-weighted loss: its loss column is its trained loss at beta = 1.
        # A run training the IWAE bound shows the -ELBO beside it, in a column of its own.
        trained = self._loss.key
        terms = TERMS if trained == TERMS[0] else (trained, *TERMS)
        loss_keys = {"train": "train_loss", "val": f"val_{trained}"}
        rows = [
            (
                label,
                *(
                    f"{record[key]:.3f}"
                    for key in (
                        (loss_keys[split], *(f"{split}_{term}" for term in terms))
                        if has_kl
                        else (f"{split}_{trained}",)
                    )
                ),
            )
            for split, label in (("train", "train"), ("val", "val (beta=1)" if has_kl else "val"))
        ]
        title = f"epoch {record['epoch']} (step {record['step']})"
        if not self.live:
            best = "  new best" if record.get("best") else ""
            names = self._columns()[1:]
            parts = [
                f"{label} " + "  ".join(f"{n} {v}" for n, v in zip(names, values, strict=True))
                for label, *values in rows
            ]
            self.console.print(plain(f"{title}{best}: " + " | ".join(parts) + f" | {caption}"))
            return
        from rich.text import Text

        best = ("  new best", "green") if record.get("best") else ""
        columns = [("split", "left")] + [(name, "right") for name in self._columns()[1:]]
        table = _table(Text.assemble(title, best), columns, caption)
        for row in rows:
            table.add_row(*row)
        target = self._progress.console if self._progress is not None else self.console
        target.print(table)

    def _columns(self) -> list[str]:
        """The epoch table's columns: the split, the loss, the trained loss's name, its parts
        (the split and the trained loss alone for a model without a KL term; the -ELBO too
        for a run that trains another bound)."""
        if not self._loss.has_kl:
            return ["split", self._loss.total]
        elbo = [ELBO.total] if self._loss.key != ELBO.key else []
        return ["split", "loss", self._loss.total, *elbo, "recon", "KL"]

    def run_ended(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def task_started(self, description: str, total: int) -> None:
        if not self.quiet and self.error_console.is_terminal:
            # rich's own estimate of units per second over the last half minute (none at first).
            rate = "{task.fields[rate]}"
            self._start_progress(description, total, 0, rate, self.error_console, rate="")

    def task_advanced(self, amount: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, amount)
            speed = self._progress.tasks[0].speed
            if speed is not None and "rate" in self._progress.tasks[0].fields:
                self._progress.update(self._task, rate=f"{speed:,.0f}/s")

    def task_ended(self) -> None:
        self.run_ended()

    def message(self, text: str) -> None:
        # Messages name run folders and datasets, which can come from a checkpoint: no markup.
        if self._progress is not None:
            self._progress.console.print(plain(text))
        else:
            self.console.print(plain(text))

    def warning(self, text: str) -> None:
        from rich.text import Text

        self.error_console.print(Text.assemble(("warning:", "yellow"), " ", printable(text)))


def print_error(text: str, prefix: str = "error: ") -> None:
    """One line on stderr for an expected failure (used by the CLI): control characters in
    ``text`` (a file name with a newline or an escape sequence) are shown escaped."""
    sys.stderr.write(f"{prefix}{printable(text)}\n")
    sys.stderr.flush()


_METRIC_LABELS = {
    "nll": ("NLL (importance-weighted)", "nats"),
    "nll_bits_per_dim": ("NLL", "bits/dim"),
    "neg_elbo": ("-ELBO (beta = 1)", "nats"),
    "neg_elbo_bits_per_dim": ("-ELBO", "bits/dim"),
    # A conditional model's: of x given its label (vae.models.conditional).
    "nll_given_label": ("NLL given the label, -log p(x|y) (importance-weighted)", "nats"),
    "nll_given_label_bits_per_dim": ("NLL given the label", "bits/dim"),
    "neg_elbo_given_label": ("-ELBO(x|y) (beta = 1)", "nats"),
    "neg_elbo_given_label_bits_per_dim": ("-ELBO(x|y)", "bits/dim"),
    "recon": ("reconstruction -log p(x|z)", "nats"),
    "kl": ("KL(q(z|x) || p(z))", "nats"),
    "mse": ("MSE per pixel", ""),
    "reconstruction_error": ("reconstruction error (no likelihood)", "per image"),
    "ssim": ("SSIM of the reconstruction", ""),
}


def _mean_std(summary: dict[str, Any]) -> str:
    text = f"{summary['mean']:.3f}"
    if summary.get("std") is not None:
        text += f" ± {summary['std']:.3f}"
    return text


def _table(title: Any, columns: list[tuple[str, str]], caption: str) -> Any:
    """A left-aligned rich Table with (name, justify) columns and a caption; the title and
    caption are shown as they are (they name datasets and files: no markup)."""
    from rich.table import Table

    table = Table(
        title=plain(title) if isinstance(title, str) else title,
        title_justify="left",
        caption=plain(caption),
        caption_justify="left",
    )
    for name, justify in columns:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    return table


def evaluation_table(result: dict[str, Any]) -> Any:
    """A rich Table of an evaluation result, with its protocol as the caption."""
    samples = f"k = {result['k']}" if result.get("k") is not None else "reconstruction error"
    table = _table(
        f"{result['dataset']}: {result['num_images']:,} images, {samples}, "
        f"{result['repeats']} repeat(s)",
        [("figure", "left"), ("value", "right"), ("unit", "left")],
        f"protocol: {result['protocol']}; seeds {result['seeds']}",
    )
    for key, (label, unit) in _METRIC_LABELS.items():
        if key in result["metrics"]:
            table.add_row(label, _mean_std(result["metrics"][key]), unit)
    table.add_row("active units", f"{result['active_units']} / {result['latent_dim']}", "")
    table.add_row("time", f"{result['seconds']:.1f}", "s")
    return table


def ood_table(ood: dict[str, Any]) -> Any:
    """A rich Table of outlier-detection metrics for the raw and corrected scores."""
    histogram = f"; histogram {ood['histogram']}" if ood["histogram"] else ""
    table = _table(
        f"outlier detection: {ood['in_dataset']} (in, {ood['num_in']:,}) vs "
        f"{ood['out_dataset']} (out, {ood['num_out']:,})",
        [("score", "left"), ("AUROC", "right"), ("AUPRC", "right"), ("FPR at 95% TPR", "right")],
        f"protocol: {ood['protocol']}{histogram}",
    )
    for row in ood["scores"].values():
        table.add_row(
            plain(row["score"]),
            f"{row['auroc']:.3f}",
            f"{row['auprc']:.3f}",
            f"{row['fpr_at_95_tpr']:.3f}",
        )
    return table
