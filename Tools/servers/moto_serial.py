"""moto's S3 server with one request at a time, so that its conditional writes are atomic.

moto 5 answers a PUT with If-Match or If-None-Match by comparing the ETag and then storing the
object, with no lock between the two, on a threaded server: two racing compare-and-swaps with
the same ETag can both succeed, which real S3, R2 and MinIO never allow. Tests of envmount's ref
updates race exactly that, so this wrapper runs moto's own app behind one lock. Connections stay
threaded (keep-alive works); only the handling of each request is serialized.

    python3 moto_serial.py -H 127.0.0.1 -p PORT      (the same arguments as moto.server)
"""
import threading

import moto.server

_lock = threading.Lock()
_run_simple = moto.server.run_simple


def _serialized(app):
    def handle(environ, start_response):
        with _lock:
            # The body is produced under the lock too: moto builds it while iterating.
            return list(app(environ, start_response))
    return handle


def run_simple(host, port, app, *args, **kwargs):
    return _run_simple(host, port, _serialized(app), *args, **kwargs)


moto.server.run_simple = run_simple

if __name__ == "__main__":
    moto.server.main()
