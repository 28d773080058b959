"""An independent HTTP/3 client for the spec tests: aioquic (pure Python QUIC and HTTP/3).

Sends every request given on stdin (a JSON list of {"method", "path", "body_len"}) at once,
as concurrent streams on ONE connection, and prints one JSON object per request:
{"status", "headers", "trailers", "len", "sha256", "text"} (text: the body if short), or
{"error": ...}. Request bodies are the tests' pattern: byte i is i * 7 % 256.

usage: h3client.py HOST PORT CA_PEM < requests.json
"""

import asyncio
import hashlib
import json
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamReset


def pattern(n):
    return bytes((i * 7) % 256 for i in range(n))


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.exchanges = {}

    def quic_event_received(self, event):
        if isinstance(event, StreamReset) and event.stream_id in self.exchanges:
            self._finish(event.stream_id, error=f"stream reset ({event.error_code:#x})")
        for ev in self.h3.handle_event(event):
            exchange = self.exchanges.get(ev.stream_id)
            if exchange is None:
                continue
            if isinstance(ev, HeadersReceived):
                fields = {k.decode(): v.decode() for k, v in ev.headers}
                if exchange["status"] is None:
                    exchange["status"] = int(fields.pop(":status"))
                    exchange["headers"] = fields
                else:
                    exchange["trailers"] = fields
            elif isinstance(ev, DataReceived):
                exchange["body"] += ev.data
            if getattr(ev, "stream_ended", False):
                self._finish(ev.stream_id)

    def _finish(self, stream_id, error=None):
        exchange = self.exchanges[stream_id]
        if exchange["done"].done():
            return
        if error is not None:
            exchange["error"] = error
        exchange["done"].set_result(None)

    async def request(self, authority, method, path, body):
        stream_id = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
        ]
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        exchange = {
            "status": None,
            "headers": {},
            "trailers": None,
            "body": bytearray(),
            "done": asyncio.get_running_loop().create_future(),
        }
        self.exchanges[stream_id] = exchange
        self.h3.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self.h3.send_data(stream_id, body, end_stream=True)
        self.transmit()
        await asyncio.wait_for(exchange["done"], 60)
        if "error" in exchange:
            return {"error": exchange["error"]}
        body = bytes(exchange["body"])
        return {
            "status": exchange["status"],
            "headers": exchange["headers"],
            "trailers": exchange["trailers"],
            "len": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "text": body.decode("utf-8", "replace") if len(body) <= 4096 else None,
        }


async def main(host, port, ca):
    requests = json.load(sys.stdin)
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(ca)
    config.server_name = "localhost"
    authority = f"localhost:{port}"
    async with connect(host, port, configuration=config, create_protocol=Client) as client:
        results = await asyncio.gather(
            *(
                client.request(authority, r["method"], r["path"], pattern(r.get("body_len", 0)))
                for r in requests
            ),
            return_exceptions=True,
        )
    out = [r if isinstance(r, dict) else {"error": repr(r)} for r in results]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
