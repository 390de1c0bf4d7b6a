"""The imaging-room status page: reads status.json, results.jsonl, thumbnails and maps; serves its own
static files; never imports an engine, torch or the watcher's loop."""
