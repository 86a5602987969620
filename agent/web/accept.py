"""The accept loop: it sleeps until a connection comes, a reap is due or shutdown wakes it.

socketserver's loop wakes every half second to notice a shutdown and to run its service
actions, two wake-ups a second for nothing on an idle agent. Here shutdown writes to a pipe
the loop also watches, and the loop wakes for reaping only as often as the head timeout asks.
"""

from __future__ import annotations

import selectors
import socket
import threading
from socketserver import TCPServer


class AcceptLoop(TCPServer):
    """serve_forever and shutdown for a server whose only timed work is `service_actions`."""

    tick = 0.5  # seconds between service_actions; a server sets it from its own timeouts

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept until shutdown(); run service_actions every `tick` (poll_interval unused)."""
        wake_r, self._wake_w = socket.socketpair()
        self._stopping, self._stopped = False, threading.Event()
        try:
            with wake_r, selectors.DefaultSelector() as selector:
                selector.register(self.fileno(), selectors.EVENT_READ)
                selector.register(wake_r, selectors.EVENT_READ)
                while not self._stopping:
                    ready = selector.select(self.tick)
                    if self._stopping:
                        break
                    if any(key.fd == self.fileno() for key, _ in ready):
                        self._handle_request_noblock()  # type: ignore[attr-defined]  # as serve_forever
                    self.service_actions()
        finally:
            self._wake_w.close()
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serve_forever at once and wait until it has (call it from another thread)."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except (AttributeError, OSError):  # not serving, or already stopped
            return
        self._stopped.wait()
