"""The `lotline` command line: what a store worker or operator types."""
