"""The names and sample grid of an exported folder, shared by the export and its model card."""

from vae.checkpoint.hub import DEFAULT_HUB_FILE

MODEL_NAME = DEFAULT_HUB_FILE  # the file a bare hf://OWNER/NAME names
CARD_NAME = "README.md"
SAMPLES_NAME = "samples.png"
EXPORTED_FILES = (MODEL_NAME, CARD_NAME, SAMPLES_NAME)
# The grid ``generate`` draws by default: 64 samples, 8 a row, seed 0.
SAMPLE_COUNT, SAMPLE_COLUMNS, SAMPLE_SEED = 64, 8, 0
