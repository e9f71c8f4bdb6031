"""Joint fine-tuning: the two-head model, the paired input, the training drivers."""
