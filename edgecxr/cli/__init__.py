"""The `edgecxr` command line. Each command imports its heavy libraries inside itself."""
