"""The images a picture command shows its model: the options every such command has, declared
once (:class:`ImageSource`), given to a command as one argument (:func:`reads_images`), and the
checkpoint and images loaded from them."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from vae.cli.common.checks import check_positive
from vae.cli.common.options import (
    DataDirOption,
    DatasetOption,
    DeviceOption,
    DownloadOption,
    InputOption,
    InvertOption,
    LimitOption,
    ShownClassOption,
)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ImageSource:
    """The images a picture command shows its model, from the options every such command has:
    ``--input`` files, else the test split of ``--dataset`` or of the checkpoint's named dataset
    (``--data-dir``, ``--download``, ``--limit``), on ``--device``, inverted with ``--invert``;
    a conditional model shown them as their own classes, or all as ``--label``."""

    input_path: InputOption = None
    dataset: DatasetOption = None
    data_dir: DataDirOption = None
    download: DownloadOption = True
    limit: LimitOption = None
    device: DeviceOption = "cpu"
    invert: InvertOption = False
    label: ShownClassOption = None

    def library(self) -> Any:
        """The library's description of these images (``vae.data.ImageSource``: the same
        fields but the device), their limit checked."""
        from vae.data import ImageSource as Images

        if self.limit is not None:
            check_positive(limit=self.limit)
        return Images(
            dataset=self.dataset,
            input_path=self.input_path,
            data_dir=self.data_dir,
            download=self.download,
            limit=self.limit,
            invert=self.invert,
        )

    def load(self, checkpoint: Path, binarize: bool = True) -> Any:
        """The checkpoint's model and these images (``vae.visualize.Inputs``); torch is
        imported only here, when a command needs it. Images on light backgrounds for a model
        that draws dark ones get a warning on stderr."""
        from vae.reporting import RichReporter
        from vae.visualize import load_inputs

        return load_inputs(
            checkpoint,
            self.library(),
            device=self.device,
            binarize=binarize,
            reporter=RichReporter(),
            label=self.label,
        )


def reads_images(*, limit: bool = True) -> Callable[[F], F]:
    """Give a command the options of :class:`ImageSource` (without ``--limit`` when ``limit``
    is False), declared once there, and pass them to it as one ``source`` argument."""
    hints = typing.get_type_hints(ImageSource, include_extras=True)
    added = [
        inspect.Parameter(
            field.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=field.default,
            annotation=hints[field.name],
        )
        for field in fields(ImageSource)
        if limit or field.name != "limit"
    ]

    def decorate(function: F) -> F:
        own = typing.get_type_hints(function, include_extras=True)
        signature = inspect.signature(function)
        kept = [
            parameter.replace(annotation=own[parameter.name])
            for parameter in signature.parameters.values()
            if parameter.name != "source"
        ]

        @functools.wraps(function)
        def wrapper(**kwargs: Any) -> Any:
            source = ImageSource(
                **{parameter.name: kwargs.pop(parameter.name) for parameter in added}
            )
            return function(source=source, **kwargs)

        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept] + added
        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=parameters, return_annotation=own.get("return", None)
        )
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper  # type: ignore[return-value]

    return decorate
