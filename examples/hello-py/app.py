"""A wafer function in Python: a wasi:http incoming handler that componentize-py builds.

Build, deploy and call (in this folder, with `wafer up` running; NAME is the manifest's name):

    wafer deploy                         # builds with componentize-py first (./build.sh)
    curl http://127.0.0.1:8080/NAME       # Hello from wafer! (GET /NAME) [python]
    curl -d 'echo me' http://127.0.0.1:8080/NAME

GET answers a greeting (GREETING from the manifest's [env]); any other method echoes the body.
Each call logs one line to stdout.
"""

import os

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import streams
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    Method_Head,
    Method_Other,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def method_name(method) -> str:
    if isinstance(method, Method_Other):
        return method.value
    return type(method).__name__.removeprefix("Method_").upper()


def read_body(request: IncomingRequest) -> bytes:
    body = request.consume()
    chunks = []
    with body.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(64 * 1024))
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    break
                raise
    return b"".join(chunks)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method = request.method()
        path = request.path_with_query() or "/"
        name = method_name(method)
        print(f"{name} {path}")
        if isinstance(method, (Method_Get, Method_Head)):
            greeting = os.environ.get("GREETING", "Hello")
            body = f"{greeting} from wafer! ({name} {path}) [python]\n".encode()
        else:
            body = read_body(request)

        headers = Fields.from_list([("content-type", b"text/plain; charset=utf-8")])
        response = OutgoingResponse(headers)
        outgoing = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with outgoing.write() as stream:
            # A single blocking write takes at most 4096 bytes.
            for start in range(0, len(body), 4096):
                stream.blocking_write_and_flush(body[start : start + 4096])
        OutgoingBody.finish(outgoing, None)
