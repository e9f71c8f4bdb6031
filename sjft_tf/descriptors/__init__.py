"""Low-level descriptors (Ge & Yu 2017, section 3.1): filter-bank responses summarised
as per-channel histograms with adaptive, equal-mass bins fitted on the target."""
