"""Exploratory probes: short scripts that check an assumption; replaced by the real machinery later."""
