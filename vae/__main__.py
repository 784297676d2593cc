"""``python -m vae``: the same entry point as the installed ``vae`` command."""

from vae.entry import vae

vae()
