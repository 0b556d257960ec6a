"""Writes sdk_wire_vectors.json: edge cases of the AK/SK algorithm as a server receives them.

Each case is signed by the official signer (huaweicloudsdkcore 3.1.219, clock pinned to
2024-01-15 08:30:00 UTC) and then sent, as the SDK's HTTP client sends it (requests, the URL
being the resource path plus the SDK's canonical query), to a raw socket server on 127.0.0.1
that records the request line, the header bytes and the body exactly as received. The
simulator's verifier is tested against those recordings, so the tests start from the wire,
not from any signer's inputs.

Run (the SDK writes ~/.huaweicloud/application_id on import unless HOME is empty):

    python3 -m venv /tmp/hwsdk && /tmp/hwsdk/bin/pip install huaweicloudsdkcore==3.1.219
    HOME= /tmp/hwsdk/bin/python src/sim/aksk/sdk_wire_vectors.py > src/sim/aksk/sdk_wire_vectors.json
"""

import datetime as _dt
import json
import socket
import threading

import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials, GlobalCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
import huaweicloudsdkcore.signer.signer as signer_module

AK = "HPUAEXAMPLEAK0000001"
SK = "EXAMPLEsecretKEY0000000000000000000000001"
PROJECT = "ea7b4a9c1f8d4c8b9a4f0f2e3d1c5b6a"
DOMAIN = "5a775fdcb14f4431b6c0015618140bc3"
HOST = "artifact.ap-southeast-3.myhuaweicloud.com"


class PinnedDatetime(_dt.datetime):
    @classmethod
    def utcnow(cls):
        return cls(2024, 1, 15, 8, 30, 0)


signer_module.datetime = PinnedDatetime

# Capture what the signer computes on the way.
captured = {}
_canonical = signer_module.Signer._process_canonical_request
_to_sign = signer_module.Signer._process_string_to_sign


def _capture_canonical(self, request, signed_headers):
    captured["canonical_request"] = _canonical(self, request, signed_headers)
    return captured["canonical_request"]


def _capture_to_sign(self, canonical_request, t):
    captured["string_to_sign"] = _to_sign(self, canonical_request, t)
    return captured["string_to_sign"]


signer_module.Signer._process_canonical_request = _capture_canonical
signer_module.Signer._process_string_to_sign = _capture_to_sign


def serve_once(listener, out):
    conn, _ = listener.accept()
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = []
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        value = value.strip(b" \t")
        headers.append([name.decode("ascii"), value.decode("utf-8")])
        if name.lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    conn.close()
    method, target, _ = lines[0].decode("ascii").split(" ")
    out.update(method=method, target=target, headers=headers, body=body.decode("utf-8"))


def case(name, description, method="GET", path="/cloudartifact/v5/storage", query=None,
         headers=None, body=None, credentials=None, host=HOST):
    headers = dict(headers if headers is not None else {"Content-Type": "application/json"})
    request = SdkRequest(method=method, schema="http", host=host, resource_path=path,
                         query_params=list(query or []), header_params=headers,
                         body=body.encode("utf-8") if body is not None else None)
    sdk_input = {"method": method, "host": host, "resource_path": path,
                 "query_params": [list(p) for p in (query or [])],
                 "headers": dict(headers), "body": body}
    captured.clear()
    (credentials or BasicCredentials(AK, SK)).sign_request(request)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    received = {}
    server = threading.Thread(target=serve_once, args=(listener, received))
    server.start()
    port = listener.getsockname()[1]
    # What HttpClient.do_request_sync does, to this server instead of the endpoint.
    requests.request(request.method.lower(), "http://127.0.0.1:%d%s" % (port, request.uri),
                     headers=request.header_params, data=request.body, timeout=5)
    server.join()
    listener.close()
    authorization = request.header_params["Authorization"]
    return {
        "name": name,
        "description": description,
        "access_key": AK,
        "secret_key": SK,
        "sdk_input": sdk_input,
        "received": received,
        "canonical_request": captured["canonical_request"],
        "string_to_sign": captured["string_to_sign"],
        "signature": authorization.rsplit("Signature=", 1)[1],
    }


CASES = [
    case("trailing_slash_kept", "a path that already ends with / gets no second one",
         path="/cloudartifact/v5/storage/"),
    case("empty_segments_kept", "// in the path keeps its empty segment", path="/a//b"),
    case("lower_case_escapes", "lower-case escapes come out upper-case in the canonical URI",
         path="/caf%c3%a9/x%3ay"),
    case("encoded_slash_is_a_separator", "%2F is decoded, then split on, in the canonical URI",
         path="/v4/repositories/team%2Frepo/remote-mirror"),
    case("invalid_escape", "%ZZ stays literal and its % becomes %25 (requests sends %25ZZ)",
         path="/a%ZZb"),
    case("trailing_percent", "a lone % at the end (requests sends %25)", path="/100%"),
    case("non_utf8_escape", "%FF decodes to a byte that is not UTF-8: U+FFFD", path="/a%FFb"),
    case("unicode_path", "a raw non-ASCII path (requests percent-encodes it on the wire)",
         path="/files/café"),
    case("query_repeated_keys", "a list value is one pair per element, sorted by value",
         query=[("format", ["npm", "maven2", "go"]), ("a", "z")]),
    case("query_empty_values", "empty values give k=", query=[("b", ""), ("a", "1"), ("c", "")]),
    case("query_sorted_before_encoding", "~a before éa, A before _x before a",
         query=[("k", ["éa", "~a"]), ("a", "3"), ("_x", "2"), ("A", "1"), ("éa", "1"), ("~a", "2")]),
    case("query_special_characters", "space is %20, + is %2B, reserved characters encoded",
         query=[("q", "a b+c/=&,:|*%~"), ("name", "日本"), ("p", "+a"), ("s", " a")]),
    case("query_bool_and_int", "booleans lower-case, integers decimal",
         query=[("page_size", 20), ("is_recycle_bin", True), ("page_no", 1)]),
    case("header_trimming_and_underscore",
         "values trimmed (inner spaces kept); a name with _ is sent but not signed",
         headers={"Content-Type": "application/json", "X_Custom_Trace": "  abc  ",
                  "User-Agent": "  huaweicloud-usdk-python/3.0  ", "X-Custom": " a  b "}),
    case("utf8_header_value", "a non-ASCII header value is signed and sent as UTF-8",
         headers={"Content-Type": "application/json", "X-Display-Name": "café 日本"}),
    case("unsigned_payload", "a non-JSON content type with a body: UNSIGNED-PAYLOAD",
         method="POST", path="/upload", headers={"Content-Type": "text/plain"}, body="hello"),
    case("unsigned_payload_empty_body",
         "a non-JSON content type without a body: the empty hash all the same",
         method="PUT", path="/upload", headers={"Content-Type": "application/octet-stream"}),
    case("no_content_type_with_body", "no Content-Type: the body is hashed",
         method="POST", path="/upload", headers={}, body="hello"),
    case("json_charset_array_body", "application/json;charset=UTF-8 hashes the exact body",
         method="DELETE", path="/devreposerver/v5/files/compeletion",
         headers={"Content-Type": "application/json;charset=UTF-8"},
         body='["a.tgz", "b.tgz"]'),
    case("lower_case_method", "the method is upper-cased in the canonical request",
         method="delete", path="/cloudartifact/v5/trashes",
         body='[{"id": "r", "format": "npm"}]'),
    case("non_default_port", "Host with a port is signed as host:port",
         host="127.0.0.1:18080"),
    case("project_id", "BasicCredentials with a project id add X-Project-Id",
         query=[("format_list", "npm,maven2")], credentials=BasicCredentials(AK, SK, PROJECT)),
    case("domain_id_and_security_token", "GlobalCredentials: X-Domain-Id and X-Security-Token",
         path="/v3/OS-CREDENTIAL/credentials",
         credentials=GlobalCredentials(AK, SK, DOMAIN).with_security_token("tok+en/=="),
         host="iam.myhuaweicloud.com"),
]

print(json.dumps({
    "generator": "src/sim/aksk/sdk_wire_vectors.py: huaweicloudsdkcore 3.1.219 Signer, clock "
                 "pinned, sent with requests %s to a raw socket server" % requests.__version__,
    "vectors": CASES,
}, ensure_ascii=False, indent=2))
