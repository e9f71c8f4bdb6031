"""Source selection (Ge & Yu 2017, sections 3.2-3.3): nearest source images by weighted
symmetric KL divergence of descriptors, and iterative levels for hard target images."""
