"""``vae explore``: an interactive latent-space explorer served to the browser.

``decoder`` (NumPy, ready at once: sliders, sample, reset), ``encoder`` (torch, loaded in the
background: encode, interpolate, the latent map, the order of the dimensions), ``app`` (the
Starlette application: the page's own assets in ``static/`` and a JSON API) and ``server``
(binding the address and running uvicorn).
"""
