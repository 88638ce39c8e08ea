"""The `ctscribe` command line: one thin module per command group."""
