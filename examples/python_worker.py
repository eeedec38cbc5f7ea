"""A stateful Python interpreter for Sluice.Worker (examples/python_worker.exs).

Requests arrive on fd 3 and responses leave on fd 4, each a {:packet, 4} frame: a 4-byte
big-endian length, then that many bytes. A request is Python source, evaluated in one
namespace shared by every request: an expression's response is the repr of its value, a
statement's is "None". stdout and stderr stay free for the program's own prints (they go
wherever the worker's `stdout:` and `stderr:` options say). An exception that nobody
catches ends the interpreter with status 1, as Python does, and the worker sees it.
"""
import os
import struct
import sys

REQUESTS, RESPONSES = 3, 4
namespace = {"__name__": "__worker__"}


def read_exact(size):
    data = b""
    while len(data) < size:
        chunk = os.read(REQUESTS, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def write_all(data):
    while data:
        data = data[os.write(RESPONSES, data):]


while True:
    header = read_exact(4)
    if header is None:
        break
    (size,) = struct.unpack(">I", header)
    source = read_exact(size).decode()
    try:
        code = compile(source, "<request>", "eval")
    except SyntaxError:
        exec(compile(source, "<request>", "exec"), namespace)
        result = None
    else:
        result = eval(code, namespace)
    # Prints of this request reach the console before its response.
    sys.stdout.flush()
    response = repr(result).encode()
    write_all(struct.pack(">I", len(response)) + response)
