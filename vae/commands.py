"""The installed commands, written once (a module of its own, which imports nothing, so that
``vae.entry`` reads it before any slow import and ``vae.cli`` without importing ``vae.entry``).

``vae.cli`` builds the application of each (a group, such as ``visualize``, is its own),
``vae.entry`` their entry points, ``tools/docs_tables.py`` their option tables; pyproject's
[project.scripts] must stay literal and names each beside ``vae`` (tests/test_command_list.py
holds it to this list).
"""

COMMANDS = (
    "train",
    "generate",
    "inference",
    "info",
    "evaluate",
    "explore",
    "export",
    "push",
    "visualize",
)
