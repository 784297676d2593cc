"""The hierarchical VAE's architecture, described once and without torch: the sizes of its two
passes and the name and shape of every tensor it holds. Three readers follow it and nothing
else: the torch module (:mod:`vae.models.hierarchical.module`), the checkpoint's tensor table
(``vae.spec.expected_tensors``, through the family) and the NumPy decoder
(:mod:`vae.models.hierarchical.numpy_decoder`); a test holds the module's tensors to it.

Groups are numbered from the top: group 1 is drawn first, from the top prior; group G, the last,
is nearest the pixels. Group i's modules are ``encoder.groups.{i-1}`` (its bottom-up residual
cell and posterior head) and ``decoder.groups.{i-1}`` (its prior head, none for group 1, the
projection of its latent into the top-down state, and its top-down residual cell).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vae.model_spec import ModelSpec
    from vae.plan import Layer

# The residual cells' convolutions: 3x3, stride 1, padding 1 (the feature map keeps its size).
CELL_KERNEL = 3
# Every group's prior and posterior mean lies within +-MEAN_BOUND and log-variance within
# +-LOGVAR_BOUND (a standard deviation from 0.0067 to 148), bounded softly (b * tanh(x / b)), as
# NVAE bounds them: without a bound, the KL warm-up's first steps (a weight near 0) let the
# means grow through the groups until the top-down state saturates and every group collapses.
MEAN_BOUND = 5.0
LOGVAR_BOUND = 10.0
# A prior or posterior head first squeezes its maps to this many channels (a 1x1 convolution),
# then a linear layer reads them: its fan-in stays near a single-level VAE head's (8 x 7 x 7 on
# MNIST). A linear layer on the whole maps (6,272 inputs) moved its outputs so far with Adam's
# first steps (each weight by about the learning rate) that the KL jumped a thousandfold.
HEAD_CHANNELS = 8


@dataclass(frozen=True)
class Layout:
    """The sizes of a hierarchical VAE (``groups`` of ``group_size`` latent dimensions each)
    and the plan layers it shares with the single-level conv VAE: its bottom-up ``stem`` (the
    stride-2 convolutions) and its output ``tail`` (the transposed convolutions)."""

    groups: int
    group_size: int
    cell_channels: int
    features: int  # channels of the bottom-up feature maps
    state: tuple[int, int, int]  # the top-down state, the tail's input: channels, height, width
    stem: tuple[Layer, ...]
    tail: tuple[Layer, ...]

    @property
    def state_values(self) -> int:
        """Values in one image's top-down state."""
        return math.prod(self.state)

    @property
    def head_inputs(self) -> int:
        """Values a head's linear layer reads per image: its squeezed maps."""
        _, height, width = self.state
        return HEAD_CHANNELS * height * width

    def group_slice(self, index: int) -> slice:
        """Where group ``index + 1`` (0: the top) sits in the code of all groups."""
        return slice(index * self.group_size, (index + 1) * self.group_size)


def layout_of(spec: ModelSpec) -> Layout:
    """The layout of the hierarchical VAE ``spec`` describes (its sizes checked by the family)."""
    from vae.plan import conv_feature_sizes, conv_stages, deconv_stages

    # The bottom-up maps and the top-down state have the same size (the family checks that the
    # encoder and decoder have as many stride-2 stages): a posterior head reads both together.
    sizes = conv_feature_sizes(spec.height, spec.width, len(spec.decoder_widths))
    return Layout(
        groups=spec.latent_groups,
        group_size=spec.latent_dim // spec.latent_groups,
        cell_channels=spec.cell_channels,
        features=spec.conv_widths[-1],
        state=(spec.decoder_widths[-1], *sizes[-1]),
        stem=conv_stages(spec),
        tail=deconv_stages(spec),
    )


def _network_shapes(network: str, layers: tuple[Layer, ...]) -> dict[str, tuple[int, ...]]:
    return {
        f"{network}.{layer.name}.{suffix}": shape
        for layer in layers
        for suffix, shape in layer.tensor_shapes().items()
    }


def _cell_shapes(prefix: str, channels: int, hidden: int) -> dict[str, tuple[int, ...]]:
    """A residual cell: x + conv_b(silu(conv_a(silu(x)))), ``channels`` -> ``hidden`` ->
    ``channels``."""
    k = CELL_KERNEL
    return {
        f"{prefix}.conv_a.weight": (hidden, channels, k, k),
        f"{prefix}.conv_a.bias": (hidden,),
        f"{prefix}.conv_b.weight": (channels, hidden, k, k),
        f"{prefix}.conv_b.bias": (channels,),
    }


def _linear_shapes(prefix: str, inputs: int, outputs: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (outputs, inputs), f"{prefix}.bias": (outputs,)}


def _head_shapes(prefix: str, channels: int, layout: Layout) -> dict[str, tuple[int, ...]]:
    """A head: ``squeeze`` (1x1, ``channels`` -> HEAD_CHANNELS), then ``linear`` to a group's
    mean and log-variance."""
    return {
        f"{prefix}.squeeze.weight": (HEAD_CHANNELS, channels, 1, 1),
        f"{prefix}.squeeze.bias": (HEAD_CHANNELS,),
        **_linear_shapes(f"{prefix}.linear", layout.head_inputs, 2 * layout.group_size),
    }


def network_shapes(layout: Layout) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor of the two passes (the prior's and a learned sigma's
    are the family's to add)."""
    size, hidden = layout.group_size, layout.cell_channels
    shapes = _network_shapes("encoder.stem", layout.stem)
    for index in range(layout.groups):
        group = f"encoder.groups.{index}"
        shapes.update(_cell_shapes(f"{group}.cell", layout.features, hidden))
        shapes.update(_head_shapes(f"{group}.posterior", layout.features + layout.state[0], layout))
    shapes["decoder.start"] = layout.state
    for index in range(layout.groups):
        group = f"decoder.groups.{index}"
        if index > 0:  # the top group's prior is the model's prior setting's
            shapes.update(_head_shapes(f"{group}.prior", layout.state[0], layout))
        shapes.update(_linear_shapes(f"{group}.latent", size, layout.state_values))
        shapes.update(_cell_shapes(f"{group}.cell", layout.state[0], hidden))
    shapes.update(_network_shapes("decoder.tail", layout.tail))
    return shapes


def activation_sizes(layout: Layout) -> list[int]:
    """Values per image in the layer outputs the conv plan does not already count: the cells'
    hidden maps and a posterior head's input (the features beside the state)."""
    channels, height, width = layout.state
    return [
        layout.cell_channels * height * width,
        (layout.features + channels) * height * width,
    ]
