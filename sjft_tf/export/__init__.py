"""Export of the target classifier as a SavedModel for TF Serving."""
