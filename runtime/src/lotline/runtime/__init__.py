"""What every Lotline service runs on: settings, the batch consumer, MongoDB, HTTP health."""
