"""The fixed seeds of the data: the validation split, the test split of a dataset that has none,
and every binarization drawn once are the same in every run."""

# The order that carves the validation split from the training images, and the fixed tenth that
# is the test split of a dataset without one (``vae.data.source.fixed_tenth_split``).
SPLIT_SEED = 0
# The one draw of a statically binarized training set (and of the images an autoencoder's code
# distribution is fitted on). Equal to SPLIT_SEED's value only because the two were once one
# constant: changing it would change every static-binarized model trained since.
TRAINING_BINARIZATION_SEED = 0
VALIDATION_BINARIZATION_SEED = 1
TEST_BINARIZATION_SEED = 2
