"""Reports built from run directories only: sweep summaries, study tables beside the published
numbers, ensembles. Nothing here imports the training code's config handling."""
