"""File-system events that wake the watcher early (inotify, or polling on network shares).

Events only shorten the wait: the periodic rescan finds everything anyway, so an observer
that cannot start (no watchdog, an inbox that just vanished, no inotify watches left) is
logged and the watcher goes on rescanning.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path


def start_observer(inbox: Path, *, recursive: bool, poll: bool, wake: threading.Event,
                   log: Callable[[str], None]):
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver
    except ImportError:
        log("watchdog is not installed: relying on periodic rescans")
        return None

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event):
            wake.set()

    observer = PollingObserver(timeout=1.0) if poll else Observer()
    try:
        observer.schedule(Handler(), str(inbox), recursive=recursive)
        observer.daemon = True
        observer.start()
    except (OSError, RuntimeError) as exc:  # e.g. inotify watch limit reached, inbox gone
        log(f"file-system events unavailable ({exc}); relying on rescans")
        return None
    return observer
