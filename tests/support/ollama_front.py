#!/usr/bin/env python3
"""An Ollama-API front for tests: serves POST /api/chat on 127.0.0.1 by
translating to an OpenAI-compatible /v1/chat/completions upstream (the llama.cpp
server that scripts/model-server.sh starts) and back.

Translation:
  request  {model, messages, stream:false, format, options{temperature, seed, num_predict}}
        -> {model, messages, stream:false, temperature, seed, max_tokens,
            response_format: {type: json_schema, json_schema: {name, schema: format, strict}}}
           (format "json" -> response_format {type: json_object})
  response choices[0].message.content, usage.prompt_tokens / completion_tokens
        -> {model, created_at, message{role, content}, done, done_reason,
            prompt_eval_count, eval_count}

Upstream errors keep their status with {"error": ...}. Streaming is refused (400).
Standard library only. Usage:

  ollama_front.py --upstream http://127.0.0.1:PORT [--port 0] [--url-file FILE]

It prints its base URL on the first line of stdout (and writes it to --url-file,
atomically, once listening), then serves until SIGTERM or SIGINT.
"""

import argparse
import datetime
import http.server
import json
import os
import signal
import sys
import urllib.error
import urllib.request

MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_UPSTREAM_BYTES = 4 * 1024 * 1024
UPSTREAM_TIMEOUT_SECONDS = 300
SCHEMA_NAME = "format"


def to_openai(req):
    body = {"model": req.get("model", ""), "messages": req.get("messages", []), "stream": False}
    options = req.get("options") or {}
    if "temperature" in options:
        body["temperature"] = options["temperature"]
    if "seed" in options:
        body["seed"] = options["seed"]
    if "num_predict" in options:
        body["max_tokens"] = options["num_predict"]
    fmt = req.get("format")
    if fmt == "json":
        body["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": SCHEMA_NAME, "schema": fmt, "strict": True},
        }
    elif fmt not in (None, ""):
        raise ValueError("format must be \"json\" or a JSON Schema object")
    return body


def from_openai(model, answer):
    choice = answer["choices"][0]
    usage = answer.get("usage") or {}
    return {
        "model": model,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "message": {"role": "assistant", "content": choice["message"].get("content") or ""},
        "done": True,
        "done_reason": choice.get("finish_reason") or "stop",
        "prompt_eval_count": usage.get("prompt_tokens", 0),
        "eval_count": usage.get("completion_tokens", 0),
    }


class Front(http.server.BaseHTTPRequestHandler):
    upstream = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("ollama_front: " + (fmt % args) + "\n")

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def do_GET(self):
        if self.path in ("/", "/api/version"):
            self.reply(200, {"version": "0.0.0-jaros-test-front"})
        else:
            self.reply(404, {"error": "only POST /api/chat is served"})

    def do_POST(self):
        if self.path != "/api/chat":
            return self.reply(404, {"error": "only POST /api/chat is served"})
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            return self.reply(400, {"error": "bad Content-Length"})
        if length > MAX_REQUEST_BYTES:
            return self.reply(413, {"error": "request too large"})
        try:
            req = json.loads(self.rfile.read(length) or b"{}")
            if req.get("stream", True):
                return self.reply(400, {"error": "streaming is not supported by this front; send stream:false"})
            body = to_openai(req)
        except (ValueError, AttributeError) as e:
            return self.reply(400, {"error": "bad request: %s" % e})
        upstream = urllib.request.Request(
            self.upstream.rstrip("/") + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(upstream, timeout=UPSTREAM_TIMEOUT_SECONDS) as resp:
                answer = json.loads(resp.read(MAX_UPSTREAM_BYTES + 1)[:MAX_UPSTREAM_BYTES])
        except urllib.error.HTTPError as e:
            text = e.read(64 * 1024).decode("utf-8", "replace")
            return self.reply(e.code, {"error": "upstream: %s" % text})
        except (urllib.error.URLError, OSError, ValueError) as e:
            return self.reply(502, {"error": "upstream unreachable or unreadable: %s" % e})
        try:
            self.reply(200, from_openai(req.get("model", ""), answer))
        except (KeyError, IndexError, TypeError) as e:
            self.reply(502, {"error": "upstream answer has no choices[0].message: %s" % e})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", required=True, help="OpenAI-compatible base URL")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--url-file", help="write the base URL here once listening")
    args = ap.parse_args()

    Front.upstream = args.upstream
    server = http.server.HTTPServer(("127.0.0.1", args.port), Front)
    url = "http://127.0.0.1:%d" % server.server_address[1]
    if args.url_file:
        tmp = args.url_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(url + "\n")
        os.replace(tmp, args.url_file)
    print(url, flush=True)

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
