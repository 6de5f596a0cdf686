"""An HTTPS ingest server on Python's http.server, for the HTTPS uplink's
pipelining test against an implementation other than Go's.

    python3 pipeline_server.py PORT CERT KEY CA HOLD

It serves HTTP/1.1 (persistent connections) over TLS on 127.0.0.1:PORT,
requiring a client certificate signed by CA. Every POST is answered
204 No Content, and printed on stdout as one JSON line:
{"conn": N, "k": K, "body": "...", "pipelined": true|false}.

Requests 2..HOLD of a connection are answered only once the first byte of
the next request has arrived (rfile.peek): a client that waits for each
answer before writing its next request never gets one, and after 20 s
gets 500 "not pipelined" ("pipelined": false) instead.
"""

import http.server
import json
import socket
import ssl
import sys
import threading

PORT, CERT, KEY, CA, HOLD = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
out_lock = threading.Lock()
conn_count = 0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        global conn_count
        super().setup()
        with out_lock:
            conn_count += 1
            self.conn_id = conn_count
        self.k = 0

    def do_POST(self):
        self.k += 1
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        pipelined = True
        if 2 <= self.k <= HOLD:
            self.connection.settimeout(20)
            try:
                pipelined = len(self.rfile.peek(1)) > 0
            except (socket.timeout, OSError):
                pipelined = False
            self.connection.settimeout(None)
        with out_lock:
            print(json.dumps({"conn": self.conn_id, "k": self.k, "body": body.decode(),
                              "pipelined": pipelined}), flush=True)
        if not pipelined:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            return
        self.send_response(204)
        self.end_headers()

    def log_message(self, fmt, *args):
        pass  # stdout carries the records; keep stderr for errors


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
ctx.load_cert_chain(CERT, KEY)
ctx.load_verify_locations(CA)
ctx.verify_mode = ssl.CERT_REQUIRED

server = http.server.ThreadingHTTPServer(("127.0.0.1", int(PORT)), Handler)
server.daemon_threads = True
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
