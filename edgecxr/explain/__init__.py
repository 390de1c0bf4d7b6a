"""Explanation maps computed through a Runner (numpy only); never imports torch, an engine or the watcher."""
