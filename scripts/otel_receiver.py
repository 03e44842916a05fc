#!/usr/bin/env python3
"""An OTLP/HTTP JSON trace receiver for the tests of `jaros trace`.

Listens on 127.0.0.1 (port 0: any free one; the first line on stdout is
the port). Every POST to /v1/traces must parse, with the `opentelemetry-proto`
package's own protobuf types, into an ExportTraceServiceRequest
(json_format.Parse, unknown fields refused); OTLP/JSON writes trace and span
ids as hex, which the protobuf JSON mapping reads as base64, so they are
converted first, as collectors do. A request that does not parse, or whose
ids have the wrong length, answers 400 and is listed in the report.

With `--sleep SECONDS`, every POST waits that long before it is read: a
slow collector, for the live exporter's tests.

GET /report answers {"requests": N, "errors": [...], "spans": [...]}: every
span received, in order, ids in hex, attributes as a flat object.
"""
import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

LOCK = threading.Lock()
REQUESTS = []
ERRORS = []
SPANS = []
SLEEP = 0.0


def hex_to_base64(obj):
    """OTLP/JSON hex ids -> the base64 the protobuf JSON mapping reads."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                out[k] = base64.b64encode(bytes.fromhex(v)).decode() if v else ""
            else:
                out[k] = hex_to_base64(v)
        return out
    if isinstance(obj, list):
        return [hex_to_base64(v) for v in obj]
    return obj


def value_of(v):
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "int_value":
        return v.int_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "double_value":
        return v.double_value
    return None


def spans_of(request):
    out = []
    for rs in request.resource_spans:
        resource = {a.key: value_of(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                if len(s.trace_id) != 16 or len(s.span_id) != 8:
                    raise ValueError(f"span {s.name!r}: ids of the wrong length")
                if s.parent_span_id and len(s.parent_span_id) != 8:
                    raise ValueError(f"span {s.name!r}: parent id of the wrong length")
                if s.end_time_unix_nano < s.start_time_unix_nano:
                    raise ValueError(f"span {s.name!r} ends before it starts")
                out.append({
                    "service": resource.get("service.name"),
                    "scope": ss.scope.name,
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent": s.parent_span_id.hex(),
                    "name": s.name,
                    "kind": s.kind,
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "attributes": {a.key: value_of(a.value) for a in s.attributes},
                    "links": [{"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex()}
                              for l in s.links],
                    "status": s.status.code,
                    "status_message": s.status.message,
                })
    return out


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body, content_type="application/json"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        if SLEEP:
            time.sleep(SLEEP)
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            if self.path != "/v1/traces":
                raise ValueError(f"POST to {self.path}, not /v1/traces")
            if self.headers.get("Content-Type") != "application/json":
                raise ValueError(f"Content-Type {self.headers.get('Content-Type')!r}")
            request = ExportTraceServiceRequest()
            json_format.Parse(json.dumps(hex_to_base64(json.loads(raw))), request)
            spans = spans_of(request)
        except Exception as e:  # every failure is reported to the test
            with LOCK:
                ERRORS.append(f"{type(e).__name__}: {e}")
            self.reply(400, json.dumps({"error": str(e)}))
            return
        with LOCK:
            REQUESTS.append(len(raw))
            SPANS.extend(spans)
        self.reply(200, json_format.MessageToJson(ExportTraceServiceResponse()))

    def do_GET(self):
        if self.path != "/report":
            self.reply(404, "{}")
            return
        with LOCK:
            body = json.dumps({"requests": len(REQUESTS), "errors": ERRORS, "spans": SPANS})
        self.reply(200, body)


def main():
    global SLEEP
    if len(sys.argv) == 3 and sys.argv[1] == "--sleep":
        SLEEP = float(sys.argv[2])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
