"""``vae explore``: an interactive latent-space explorer served to the browser.

``decoder`` (NumPy, ready at once: sliders, sample, reset), ``encoder`` (torch, loaded in the
background: encode, interpolate, the latent map, the order of the dimensions), ``app`` (the
Starlette application: the page's own assets in ``static/`` and a JSON API), ``server``
(binding the address and running uvicorn), ``connections`` (the limit on open connections and
the deadlines on requests) and ``footprint`` (few threads and malloc arenas).
"""
