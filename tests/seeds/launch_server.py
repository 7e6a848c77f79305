"""The HTTP server of the runnable-image seed: GET /readyz, POST /predict ({"x", "y"} -> x * 2 + len(y)).

It listens on 127.0.0.1 at $PORT (Launch sets 5005), or at the port given as its first argument.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()

    def do_POST(self):
        args = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert os.environ.get("TEST_KEY") == "test_value"
        out = json.dumps(args["x"] * 2 + len(args["y"])).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(out)


port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("PORT", "5005"))
HTTPServer(("127.0.0.1", port), Handler).serve_forever()
