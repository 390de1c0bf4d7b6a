"""Intended use: tag rules, pixel statistics and the learned out-of-scope score; pure numpy.

The gate decides whether an image is inside what the model was made for (frontal chest
radiographs of the bundle's population) before any label is written, sent or shown. Its
three stages run in the order a file is read: tags before decode, pixels after decode, the
learned score after the engine. Nothing here imports the loop, the CLI, an engine, dicomnet,
torch or transformers.
"""
