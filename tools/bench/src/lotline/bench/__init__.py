"""`make bench`: Lotline measured end to end, beside the raw ceilings of the same machine."""
