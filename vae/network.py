"""The torch network of a layer plan (``vae.plan``): its layers run in order, and the same
function arranged for the cost of importance-weighted evaluation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vae.plan import CONDITION, CONV, FLATTEN, KERNEL, LINEAR, PADDING, STRIDE, UNFLATTEN, Layer


def _module(layer: Layer) -> nn.Module:
    """The torch module of one weighted layer of a plan."""
    if layer.kind == LINEAR:
        return nn.Linear(layer.inputs, layer.outputs)
    if layer.kind == CONV:
        return nn.Conv2d(layer.inputs, layer.outputs, KERNEL, stride=STRIDE, padding=PADDING)
    return nn.ConvTranspose2d(
        layer.inputs,
        layer.outputs,
        KERNEL,
        stride=STRIDE,
        padding=PADDING,
        output_padding=layer.output_padding,
    )


class Network(nn.Module):
    """The layers of a plan (``vae.plan``) run in order, each weighted one an attribute of the
    name the plan gives it (``decoder.hidden1``, ``decoder.output``). A conditional model's
    ``condition`` [N, classes] (its labels' one-hot vectors) joins the features at the plan's
    condition layer."""

    def __init__(self, layers: tuple[Layer, ...]) -> None:
        super().__init__()
        self.layers = layers
        for layer in layers:
            if layer.has_weights:
                self.add_module(layer.name, _module(layer))

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            if layer.kind == FLATTEN:
                x = x.flatten(1)
            elif layer.kind == CONDITION:
                x = _conditioned(x, condition)
            elif layer.kind == UNFLATTEN:
                x = x.view(x.shape[0], *layer.shape)
            else:
                x = self._modules[layer.name](x)
            if layer.relu:
                x = F.relu(x)
        return x

    def forward_for_evaluation(
        self, x: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``forward``'s function arranged for the cost of importance-weighted evaluation, which
        decodes k samples per image (benchmarks/README.md has the figures); the values agree to
        float rounding (a test holds them together, gradients included)."""
        layers = self.layers
        for position, layer in enumerate(layers):
            following = layers[position + 1] if position + 1 < len(layers) else None
            module = self._modules.get(layer.name) if layer.has_weights else None
            if layer.kind == FLATTEN:
                x = x.flatten(1)
            elif layer.kind == CONDITION:
                x = _conditioned(x, condition)
            elif layer.kind == UNFLATTEN:
                if x.dim() == 2:  # not already written as feature maps by the layer before
                    x = x.view(x.shape[0], *layer.shape)
                continue
            elif (
                isinstance(module, nn.Linear)
                and following is not None
                and following.kind == UNFLATTEN
                and len(following.shape) == 3
            ):
                x = _linear_to_channels_last(x, module, following.shape, layer.relu)
                continue
            elif isinstance(module, nn.ConvTranspose2d) and following is None and x.is_cpu:
                # oneDNN spends as long on the transposed convolution to the few image channels
                # as on much larger ones; a matmul and four adds do the same work in less time.
                x = transposed_conv_as_matmul(x, module)
            else:
                x = module(x)  # type: ignore[misc]
            if layer.relu:
                # In place: these activations are the largest the decoder writes.
                x = F.relu(x, inplace=True)
        return x


def _conditioned(x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    """Features [N, F] with the condition [N, classes] after them."""
    if condition is None:
        raise ValueError("a conditional network needs its labels' one-hot vectors")
    return torch.cat([x, condition.to(x.dtype)], 1)


def _linear_to_channels_last(
    x: torch.Tensor, layer: nn.Linear, shape: tuple[int, ...], relu: bool
) -> torch.Tensor:
    """``layer(x)`` viewed as feature maps ``shape`` (channels, height, width), written in
    channels-last memory: the layout oneDNN's transposed convolutions run fastest on. The
    weight's rows are reordered (c, h, w) -> (h, w, c) so that no copy is needed."""
    channels, height, width = shape
    weight = layer.weight.view(channels, height, width, -1).permute(1, 2, 0, 3)
    bias = layer.bias.view(channels, height, width).permute(1, 2, 0)
    features = F.linear(x, weight.reshape(-1, layer.in_features), bias.reshape(-1))
    if relu:
        features = F.relu(features, inplace=True)
    return features.view(x.shape[0], height, width, channels).permute(0, 3, 1, 2)


def transposed_conv_as_matmul(x: torch.Tensor, layer: nn.ConvTranspose2d) -> torch.Tensor:
    """``layer(x)`` for a transposed convolution with kernel 4, stride 2 and padding 1, as one
    matmul giving every input pixel's 4x4 patch of output, then four shifted sums of patches.

    Output row ``2 i + u`` (before the padding crop) takes tap ``u = 2 a + b`` of input row ``i``:
    row ``2 (i + a) + b``. So the taps with the same shift ``a`` (rows) and ``a'`` (columns) are
    added at once, into an output viewed as [rows + 1, 2, columns + 1, 2]. Returns channels-last
    memory in NCHW shape, as oneDNN's transposed convolution does for channels-last input.
    """
    if (layer.kernel_size, layer.stride, layer.padding) != ((4, 4), (2, 2), (1, 1)):
        raise ValueError("transposed_conv_as_matmul needs kernel 4, stride 2, padding 1")
    batch, in_channels, rows, columns = x.shape
    out_channels = layer.out_channels
    weight = layer.weight.view(in_channels, out_channels, 2, 2, 2, 2).permute(0, 2, 4, 3, 5, 1)
    pixels = x.permute(0, 2, 3, 1).reshape(batch * rows * columns, in_channels)
    taps = (pixels @ weight.reshape(in_channels, 16 * out_channels)).view(
        batch, rows, columns, 2, 2, 2, 2, out_channels
    )
    full = x.new_zeros(batch, rows + 1, 2, columns + 1, 2, out_channels, dtype=taps.dtype)
    for row_shift in (0, 1):
        for column_shift in (0, 1):
            full[:, row_shift : row_shift + rows, :, column_shift : column_shift + columns] += taps[
                :, :, :, row_shift, column_shift
            ].permute(0, 1, 3, 2, 4, 5)
    out_rows = 2 * rows + layer.output_padding[0]
    out_columns = 2 * columns + layer.output_padding[1]
    output = full.view(batch, 2 * rows + 2, 2 * columns + 2, out_channels)
    output = output[:, 1 : 1 + out_rows, 1 : 1 + out_columns]
    if layer.bias is not None:
        output = output + layer.bias
    return output.permute(0, 3, 1, 2)
