"""Workstation-only training code (torch, transformers, accelerate).

Nothing in the on-device runtime imports this package.
"""
