"""Model bundles shipped with edgecxr: `reference/` is the default for watch, classify, parity-check and bench."""
