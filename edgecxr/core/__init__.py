"""Torch-free pieces every layer may use: the results contract (results.py: what OUT holds and how it is
read; jsonl.py: crash-safe appends), the bundle, preprocessing, the decision rule, reading images
(data/), errors, file-system helpers, metrics and provenance. Never imports the loop, the CLI, an engine
or dicomnet (tests/test_import_contract.py)."""
