"""The one reporting layer: the library tells a Reporter what happened; only Reporters print."""

from __future__ import annotations

import sys
from typing import Any


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

    def message(self, text: str) -> None:
        """A line for the user."""

    def warning(self, text: str) -> None:
        """A line the user should not miss."""


class RichReporter(Reporter):
    """Progress bar, a table per epoch and messages on the terminal, with rich."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console

        self.console = Console(stderr=False, highlight=False)
        self.error_console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self._progress: Any = None
        self._task: Any = None

    def run_started(self, description: str, total_steps: int, start_step: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.message(description)
        if self.quiet:
            return
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "loss {task.fields[loss]:.2f} recon {task.fields[recon]:.2f} "
                "KL {task.fields[kl]:.2f} beta {task.fields[beta]:.3f} "
                "{task.fields[images_per_second]:.0f} img/s"
            ),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "train",
            total=total_steps,
            completed=start_step,
            loss=float("nan"),
            recon=float("nan"),
            kl=float("nan"),
            beta=0.0,
            images_per_second=0.0,
        )

    def step(self, step: int, metrics: dict[str, float]) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, **metrics)

    def epoch_ended(self, record: dict[str, Any]) -> None:
        from rich.table import Table

        if self.quiet:
            return
        best = "  [green]new best[/green]" if record.get("best") else ""
        table = Table(
            title=f"epoch {record['epoch']} (step {record['step']}){best}", title_justify="left"
        )
        table.add_column("split")
        for name in ("loss", "-ELBO", "recon", "KL"):
            table.add_column(name, justify="right")
        table.add_row(
            "train",
            f"{record['train_loss']:.3f}",
            f"{record['train_neg_elbo']:.3f}",
            f"{record['train_recon']:.3f}",
            f"{record['train_kl']:.3f}",
        )
        table.add_row(
            "val (beta=1)",
            f"{record['val_neg_elbo']:.3f}",
            f"{record['val_neg_elbo']:.3f}",
            f"{record['val_recon']:.3f}",
            f"{record['val_kl']:.3f}",
        )
        extra = f"beta {record['beta']:.3f}  lr {record['lr']:.2e}  {record['images_per_second']:.0f} img/s"
        if "val_mse" in record:
            extra += f"  val MSE/pixel {record['val_mse']:.5f}"
        table.caption = extra
        table.caption_justify = "left"
        target = self._progress.console if self._progress is not None else self.console
        target.print(table)

    def run_ended(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def message(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            self.console.print(text)

    def warning(self, text: str) -> None:
        self.error_console.print(f"[yellow]warning:[/yellow] {text}")


def print_error(text: str, prefix: str = "error: ") -> None:
    """One line on stderr for an expected failure (used by the CLI)."""
    sys.stderr.write(f"{prefix}{text}\n")
    sys.stderr.flush()
