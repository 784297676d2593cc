"""Pictures of what a model learned: interpolations (grid + GIF), latent traversals, latent
maps, manifolds, training curves, and the README gallery that holds them all.

A conditional model (cvae) encodes and decodes each image as its own class, or, with ``label``,
every image as that one class (images without labels then too). What is decoded from no single
image takes a class too: a traversal its base image's, an interpolation between two images the
mix of their classes along the way (their one-hot vectors interpolated linearly), a manifold
``label`` (default: the first class).

Every function is deterministic for its ``seed``: the same checkpoint and options write the
same bytes.
"""

from vae.visualize.curves import curves
from vae.visualize.gallery import gallery, redraw_outlier_histograms
from vae.visualize.inputs import Inputs, load_inputs
from vae.visualize.interpolation import Interpolation, interpolate
from vae.visualize.planes import latent_map, manifold
from vae.visualize.traversal import Traversal, traverse

__all__ = [
    "Inputs",
    "Interpolation",
    "Traversal",
    "curves",
    "gallery",
    "interpolate",
    "latent_map",
    "load_inputs",
    "manifold",
    "redraw_outlier_histograms",
    "traverse",
]
