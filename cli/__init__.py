"""The `mmauto` command line (installed as the `mmauto_cli` package)."""
