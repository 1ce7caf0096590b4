#!/usr/bin/env python3
"""A stand-in for firmanted on a Unix socket, for testing what `titulos sign`
checks before it asks for a sello: it answers GET /v1/keys with the key list
given as a JSON file, records every request line in a log, and refuses
POST /v1/sign with a problem reply (so a test can tell whether titulos asked).

Usage: titulos_fake_agent.py SOCKET KEYS_JSON LOG
Serves until killed.
"""
import http.server
import json
import os
import socketserver
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # the peer of a Unix socket has no address
        pass

    def _reply(self, status, body, ctype="application/json"):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _log(self):
        with open(self.server.log_path, "a") as f:
            f.write("%s %s\n" % (self.command, self.path))

    def do_GET(self):
        self._log()
        if self.path == "/v1/keys":
            with open(self.server.keys_path) as f:
                self._reply(200, json.load(f))
        else:
            self._reply(404, {"type": "about:blank", "code": "not-found",
                              "title": "not found", "status": 404},
                        "application/problem+json")

    def do_POST(self):
        self._log()
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        self._reply(403, {"type": "about:blank", "code": "user-denied",
                          "title": "the holder refused", "status": 403},
                    "application/problem+json")


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    sock, keys, log = sys.argv[1:4]
    if os.path.exists(sock):
        os.unlink(sock)
    srv = Server(sock, Handler)
    srv.keys_path = keys
    srv.log_path = log
    srv.serve_forever()


if __name__ == "__main__":
    main()
