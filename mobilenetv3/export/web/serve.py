"""Serve this folder on http://127.0.0.1:8000 (or the port given), with the
cross-origin isolation headers that let onnxruntime-web use threads.

    python serve.py [PORT]

Any static server works (`python -m http.server` too: one thread); the page
cannot be opened as a file:// URL (browsers do not load WebAssembly or
module scripts from files). Python's standard library only.
"""

import functools
import http.server
import os
import sys


class IsolatedHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with COOP/COEP (threads need `crossOriginIsolated`)."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    handler = functools.partial(IsolatedHandler, directory=os.path.dirname(os.path.abspath(__file__)))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"serving on http://127.0.0.1:{port}/ (Ctrl-C to stop)")
        server.serve_forever()


if __name__ == "__main__":
    main()
