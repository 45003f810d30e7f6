"""The `mme-local` command line: thin commands over library calls."""
