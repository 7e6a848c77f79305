"""The serving defaults, in one place (the batcher, the server and ``modelzoo serve`` share them).

This module imports nothing, so ``modelzoo --help`` does not load the server's stack.
"""

__all__ = [
    "MAX_BATCH_SIZE", "MAX_WAIT_MS", "MAX_BODY_BYTES", "PORT", "MAX_PIXELS", "DECODE_WORKERS",
    "DECODE_TIMEOUT_S", "HEADER_TIMEOUT_S", "BODY_TIMEOUT_S", "KEEP_ALIVE_TIMEOUT_S",
]

#: the most inputs per ``predict_all`` call
MAX_BATCH_SIZE = 32
#: the most a request waits for batch-mates, in milliseconds
MAX_WAIT_MS = 5.0
#: a larger request body (or file named by a path) is answered 413
MAX_BODY_BYTES = 32 * 1024 * 1024
#: the port of a Launch runnable image, used when neither --port nor $PORT is given
PORT = 5005
#: a larger image (width x height, read from its header) is answered 413 before it is decoded;
#: Pillow's own limit is 89,478,485 (and it only warns below twice that)
MAX_PIXELS = 40_000_000
#: threads that parse, read and decode requests (the bounded pool), beside the event loop
DECODE_WORKERS = 8
#: the most a request may wait for, and spend in, that pool, in seconds (then 503)
DECODE_TIMEOUT_S = 30.0
#: a client has this long to send a request's headers (then 408 and the connection is closed)
HEADER_TIMEOUT_S = 10.0
#: ... and this long to send its body
BODY_TIMEOUT_S = 60.0
#: an idle keep-alive connection is closed after this long
KEEP_ALIVE_TIMEOUT_S = 5.0
