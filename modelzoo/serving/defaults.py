"""The serving defaults, in one place (the batcher, the server and ``modelzoo serve`` share them).

This module imports nothing, so ``modelzoo --help`` does not load the server's stack.
"""

__all__ = ["MAX_BATCH_SIZE", "MAX_WAIT_MS", "MAX_BODY_BYTES", "PORT"]

#: the most inputs per ``predict_all`` call
MAX_BATCH_SIZE = 32
#: the most a request waits for batch-mates, in milliseconds
MAX_WAIT_MS = 5.0
#: a larger request body is answered 413
MAX_BODY_BYTES = 32 * 1024 * 1024
#: the port of a Launch runnable image, used when neither --port nor $PORT is given
PORT = 5005
