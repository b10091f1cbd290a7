"""A loopback server for media URLs (<Play>, MMS): a short silent WAV for any path."""

from __future__ import annotations

import io
import threading
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def silence(seconds: float = 0.5) -> bytes:
    """Silence as a WAV file (8 kHz, 16-bit mono)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\0\0" * int(8000 * seconds))
    return out.getvalue()


def media_server(fetched: list[str]) -> ThreadingHTTPServer:
    """Serve silence on 127.0.0.1 (a free port) until shutdown(); appends each path asked for to
    `fetched`."""
    body = silence()

    class Media(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetched.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet in test output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Media)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
