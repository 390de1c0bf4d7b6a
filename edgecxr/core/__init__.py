"""Torch-free pieces every layer may use: the bundle, preprocessing, the decision rule, reading images
(data/), errors, file-system helpers, metrics and provenance. Never imports the loop, the CLI, an engine
or dicomnet (tests/test_import_contract.py)."""
