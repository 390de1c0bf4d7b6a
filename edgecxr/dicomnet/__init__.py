"""DICOM network node: the C-STORE listener filling an inbox, and DICOM delivery of results; never imports an engine."""
