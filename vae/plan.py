"""The architecture, described once: each network as an ordered list of named layers.

Three readers follow this plan and nothing else: ``vae.model`` builds the ``nn`` modules from it,
``vae.spec.expected_tensors`` derives the checkpoint's tensor table from it, and
``vae.numpy_sampling`` runs the decoder from it without torch. A change of architecture is a
change here; a test builds a made-up plan and checks that all three follow.

Kept free of torch (and of ``vae.spec``, which imports this module; ``ModelSpec`` comes from
``vae.model_spec``) so that ``info`` and the NumPy ``generate`` stay fast to start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vae.models import family_of, prior_of

if TYPE_CHECKING:
    from vae.model_spec import ModelSpec

# Every convolution halves (and every transposed one doubles) the image side: kernel 4,
# stride 2, padding 1, so that floor(n / 2) is undone exactly with an output padding of 0 or 1.
KERNEL, STRIDE, PADDING = 4, 2, 1

LINEAR, CONV, DECONV, FLATTEN, UNFLATTEN = "linear", "conv", "deconv", "flatten", "unflatten"
# A conditional model's label enters here: its one-hot vector concatenated after the features.
CONDITION = "condition"
WEIGHTED_KINDS = (LINEAR, CONV, DECONV)


@dataclass(frozen=True)
class Layer:
    """One step of a network.

    ``kind`` is ``linear``, ``conv`` (stride-2 convolution), ``deconv`` (stride-2 transposed
    convolution), ``flatten`` (to one vector per image), ``unflatten`` (to ``shape`` per
    image) or ``condition`` (the label's one-hot vector of ``outputs - inputs`` classes
    concatenated after the ``inputs`` features of each image). Layers with weights have a ``name``: the module's attribute name, and the middle
    of its tensors' names (``decoder.hidden1.weight``). ``relu`` applies a ReLU after the layer.
    """

    kind: str
    name: str = ""
    inputs: int = 0
    outputs: int = 0
    relu: bool = False
    output_padding: tuple[int, int] = (0, 0)
    shape: tuple[int, ...] = ()

    @property
    def has_weights(self) -> bool:
        """Whether the layer holds a weight and a bias."""
        return self.kind in WEIGHTED_KINDS

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """The layer's weight and bias shapes, as torch lays them out (empty without weights)."""
        if self.kind == LINEAR:
            weight: tuple[int, ...] = (self.outputs, self.inputs)
        elif self.kind == CONV:
            weight = (self.outputs, self.inputs, KERNEL, KERNEL)
        elif self.kind == DECONV:
            weight = (self.inputs, self.outputs, KERNEL, KERNEL)
        else:
            return {}
        return {"weight": weight, "bias": (self.outputs,)}


@dataclass(frozen=True)
class Plan:
    """A model's networks (``encoder``, ``decoder``: layers in order) and the tensors it holds
    outside them (``extras``: a learned sigma, a mixture prior, an autoencoder's fitted
    Gaussian), by name and shape."""

    encoder: tuple[Layer, ...]
    decoder: tuple[Layer, ...]
    extras: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def networks(self) -> dict[str, tuple[Layer, ...]]:
        """The networks by the attribute name the model gives them."""
        return {"encoder": self.encoder, "decoder": self.decoder}

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every stored tensor's name and shape: what ``model.state_dict()`` holds."""
        shapes: dict[str, tuple[int, ...]] = {}
        for network, layers in self.networks().items():
            for layer in layers:
                for suffix, shape in layer.tensor_shapes().items():
                    shapes[f"{network}.{layer.name}.{suffix}"] = shape
        return {**shapes, **self.extras}


def conv_feature_sizes(height: int, width: int, layers: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 convolution (kernel 4, padding 1): floor(n / 2)."""
    sizes = [(height, width)]
    for _ in range(layers):
        h, w = sizes[-1]
        sizes.append((h // 2, w // 2))
    return sizes


def layer_plan(spec: ModelSpec) -> Plan:
    """The layers of the model ``spec`` describes (whose sizes the caller has checked)."""
    pixels = spec.channels * spec.height * spec.width
    if spec.architecture == "mlp":
        dense, features = _conditioned_dense(spec, pixels, spec.hidden_sizes)
        encoder = [Layer(FLATTEN), *dense, Layer(LINEAR, "head", features, _encoder_outputs(spec))]
        decoder, features = _conditioned_dense(
            spec, spec.latent_dim, list(reversed(spec.decoder_hidden))
        )
        decoder += [
            Layer(LINEAR, "output", features, pixels),
            Layer(UNFLATTEN, shape=(spec.channels, spec.height, spec.width)),
        ]
    else:
        encoder = _conv_encoder(spec)
        decoder = _conv_decoder(spec)
    return Plan(tuple(encoder), tuple(decoder), _extras(spec))


def _encoder_outputs(spec: ModelSpec) -> int:
    """Values the encoder's head gives per image, as the model's family says."""
    return family_of(spec).encoder_outputs(spec.latent_dim)


def _conditioned_dense(spec: ModelSpec, inputs: int, sizes: list[int]) -> tuple[list[Layer], int]:
    """``_dense``'s layers, after a condition layer for a conditional model (its label's one-hot
    joins the ``inputs``; a model without classes has none), and the values per image after
    them."""
    classes = len(spec.classes)
    condition = [Layer(CONDITION, inputs=inputs, outputs=inputs + classes)] if classes else []
    layers = [*condition, *_dense(inputs + classes, sizes)]
    return layers, sizes[-1] if sizes else inputs + classes


def _dense(inputs: int, sizes: list[int]) -> list[Layer]:
    """Hidden linear layers ``hidden1``, ``hidden2``... of ``sizes``, each followed by a ReLU."""
    layers = []
    for number, outputs in enumerate(sizes, start=1):
        layers.append(Layer(LINEAR, f"hidden{number}", inputs, outputs, relu=True))
        inputs = outputs
    return layers


def _conv_encoder(spec: ModelSpec) -> list[Layer]:
    layers, channels = [], spec.channels
    for number, width in enumerate(spec.conv_widths, start=1):
        layers.append(Layer(CONV, f"conv{number}", channels, width, relu=True))
        channels = width
    h, w = conv_feature_sizes(spec.height, spec.width, len(spec.conv_widths))[-1]
    dense, features = _conditioned_dense(spec, channels * h * w, spec.hidden_sizes)
    layers += [Layer(FLATTEN), *dense]
    layers.append(Layer(LINEAR, "head", features, _encoder_outputs(spec)))
    return layers


def _conv_decoder(spec: ModelSpec) -> list[Layer]:
    widths = list(spec.decoder_widths)
    sizes = conv_feature_sizes(spec.height, spec.width, len(widths))
    layers, features = _conditioned_dense(
        spec, spec.latent_dim, list(reversed(spec.decoder_hidden))
    )
    start = (widths[-1], *sizes[-1])
    layers += [
        # The dense layer that paints the smallest feature grid, which the deconvolutions grow.
        Layer(LINEAR, "grid", features, start[0] * start[1] * start[2], relu=True),
        Layer(UNFLATTEN, shape=start),
    ]
    channels = widths[-1]
    outputs = [*reversed(widths[:-1]), spec.channels]
    for index, out_channels in enumerate(outputs):
        (in_h, in_w), (out_h, out_w) = sizes[-1 - index], sizes[-2 - index]
        last = index == len(outputs) - 1
        layers.append(
            Layer(
                DECONV,
                "output" if last else f"deconv{index + 1}",
                channels,
                out_channels,
                relu=not last,
                # Undo floor(n / 2) exactly: odd sizes (7 -> 3 -> 7) need one extra row/column.
                output_padding=(out_h - 2 * in_h, out_w - 2 * in_w),
            )
        )
        channels = out_channels
    return layers


def _extras(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    extras: dict[str, tuple[int, ...]] = {}
    if spec.learned_sigma:
        extras["log_sigma"] = (spec.channels,)
    extras.update(prior_of(spec).tensor_shapes(spec))
    return extras


def version1_names(spec: ModelSpec) -> dict[str, str]:
    """Tensor names of checkpoint format 1 mapped to today's, for the model ``spec`` describes.

    Format 1 kept each network's layers in ``nn.Sequential`` containers, so a tensor was named by
    its position there (``decoder.deconv.2.weight``), ReLU and Flatten modules counted; the
    encoder's last layer was ``head``. The conv decoder had two containers, ``dense`` before
    the unflatten and ``deconv`` after it; the other networks one, ``body``.
    """
    plan = layer_plan(spec)
    renames: dict[str, str] = {}
    for network, layers in plan.networks().items():
        split = network == "decoder" and spec.architecture == "conv"
        container, index = ("dense" if split else "body"), 0
        for layer in layers:
            if layer.kind == UNFLATTEN:
                # A view in forward(), no module: it only separates the conv decoder's containers.
                container, index = "deconv", 0
                continue
            if layer.kind == FLATTEN:
                index += 1
                continue
            old = f"{network}.head" if layer.name == "head" else f"{network}.{container}.{index}"
            for suffix in layer.tensor_shapes():
                renames[f"{old}.{suffix}"] = f"{network}.{layer.name}.{suffix}"
            index += 2 if layer.relu else 1
    return renames


def conv_stages(spec: ModelSpec) -> tuple[Layer, ...]:
    """The stride-2 convolutions of the conv encoder ``spec`` describes, in order: what a
    hierarchical model's bottom-up pass starts with (:mod:`vae.models.hierarchical`)."""
    return tuple(layer for layer in _conv_encoder(spec) if layer.kind == CONV)


def deconv_stages(spec: ModelSpec) -> tuple[Layer, ...]:
    """The transposed convolutions of the conv decoder ``spec`` describes, from its smallest
    feature map to the image: what a hierarchical model's top-down pass ends with."""
    return tuple(layer for layer in _conv_decoder(spec) if layer.kind == DECONV)
