"""Stock: on-hand and quarantined quantities per SKU, location and lot (FEFO, recalls)."""
