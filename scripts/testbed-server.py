#!/usr/bin/env python3
"""Services of the testbed's private host (one process, so `scripts/testbed down` kills one pid).

  HTTP  :80    GET  serves --www (index.html, big.bin, big.bin.sha256)
               PUT/POST reads the body (Content-Length or chunked) and answers
                        "<sha256 hex> <byte count>\n" -- the upload check of the e2e tests
  echo  :9000  echoes bytes back and propagates half-close (EOF -> shutdown(SHUT_WR))

Both listen on [::] with IPV6_V6ONLY=0, so one socket serves IPv4 and IPv6. The listen backlog
is large on purpose: socketserver's default of 5 makes 200 simultaneous connects fall back to
SYN retransmits (1 s, 3 s, ...), which would measure the kernel, not the tunnel.
"""
import argparse
import functools
import hashlib
import http.server
import socket
import socketserver
import sys
import threading


class DualStackMixin:
    address_family = socket.AF_INET6
    request_queue_size = 1024
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class HttpServer(DualStackMixin, http.server.ThreadingHTTPServer):
    pass


class EchoServer(DualStackMixin, socketserver.ThreadingTCPServer):
    pass


class Handler(http.server.SimpleHTTPRequestHandler):
    # HTTP/1.1 so curl can PUT with chunked encoding; every response carries a length or closes.
    protocol_version = 'HTTP/1.1'

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass  # 200-connection tests would flood the log

    def _read_body(self, digest):
        total = 0
        if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
            while True:
                size = int(self.rfile.readline().split(b';', 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                        pass  # trailers
                    return total
                remaining = size
                while remaining:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        raise ConnectionError('body ended early')
                    digest.update(chunk)
                    remaining -= len(chunk)
                    total += len(chunk)
                self.rfile.readline()  # CRLF after the chunk
        remaining = int(self.headers.get('Content-Length', '0'))
        while remaining:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                raise ConnectionError('body ended early')
            digest.update(chunk)
            remaining -= len(chunk)
            total += len(chunk)
        return total

    def _sink(self):
        if self.headers.get('Expect', '').lower() == '100-continue':
            self.send_response_only(100)
            self.end_headers()
        digest = hashlib.sha256()
        total = self._read_body(digest)
        body = f'{digest.hexdigest()} {total}\n'.encode()
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = _sink
    do_POST = _sink


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        while True:
            data = sock.recv(65536)
            if not data:
                break
            sock.sendall(data)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--www', required=True)
    ap.add_argument('--http-port', type=int, default=80)
    ap.add_argument('--echo-port', type=int, default=9000)
    args = ap.parse_args()
    http_srv = HttpServer(('::', args.http_port), functools.partial(Handler, directory=args.www))
    echo_srv = EchoServer(('::', args.echo_port), EchoHandler)
    threading.Thread(target=echo_srv.serve_forever, daemon=True).start()
    print(f'testbed-server: http :{args.http_port}, echo :{args.echo_port}', file=sys.stderr, flush=True)
    http_srv.serve_forever()


if __name__ == '__main__':
    main()
