#!/usr/bin/env python3
"""Loopback WAN emulation: a TCP proxy that adds a fixed one-way delay.

    delayproxy.py LPORT UPORT [--delay-ms 20] [--host 127.0.0.1]

Listens on HOST:LPORT and forwards every connection to HOST:UPORT. Each byte is held
for DELAY ms in each direction, so a round trip through the proxy costs 2*DELAY
(default 40 ms RTT) on top of loopback. This kernel has no netem, hence userspace.

Design, for throughput (stdlib only):
- asyncio Protocols, not streams: data_received() appends (deliver_at, bytes) to a
  per-direction deque; one timer per direction (loop.call_at) flushes every item whose
  time has come with a single writelines(). Connections and directions never wait on one
  another, so many parallel connections each see the same latency, and a stream is
  bandwidth-limited only by the queue bound (bytes in flight per direction), not by the
  delay.
- Backpressure: the source stops reading when its direction's queue holds more than
  --max-queue bytes (default 32 MiB, i.e. 1.6 GB/s at 20 ms) or the destination's
  write buffer is above its high-water mark; it resumes below half of that.
- Half-close (EOF) and close are delayed like data, so they stay in order with it.
- TCP_NODELAY on both sockets so Nagle does not add latency on top of ours.

Shape bandwidth separately with tc on lo (see wan.sh), filtered on LPORT.
"""
import argparse
import asyncio
import collections
import signal
import socket
import sys

_EOF = object()
_CLOSE = object()


class Pipe:
    """One direction: bytes read from `src` are written to `dst` after `delay` s."""

    __slots__ = ("loop", "delay", "limit", "src", "dst", "queue", "queued",
                 "timer", "dst_paused", "reading", "done", "dst_side")

    def __init__(self, loop, delay, limit):
        self.loop = loop
        self.delay = delay
        self.limit = limit
        self.src = None  # transports
        self.dst = None
        self.queue = collections.deque()  # (deliver_at, bytes | _EOF | _CLOSE)
        self.queued = 0
        self.timer = None
        self.dst_paused = False
        self.reading = True
        self.done = False
        self.dst_side = None

    def _push(self, item, size):
        if self.done:
            return
        when = self.loop.time() + self.delay
        self.queue.append((when, item))
        self.queued += size
        if self.timer is None:
            self.timer = self.loop.call_at(when, self._flush)
        self._update_reading()

    def data(self, data):
        self._push(data, len(data))

    def eof(self):
        self._push(_EOF, 0)

    def close(self):
        self._push(_CLOSE, 0)

    def abort(self):
        self.done = True
        self.queue.clear()
        self.queued = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _flush(self):
        self.timer = None
        now = self.loop.time()
        q = self.queue
        batch = []
        dst = self.dst
        while q and q[0][0] <= now:
            _, item = q.popleft()
            if item is _EOF or item is _CLOSE:
                if batch:
                    dst.writelines(batch)
                    batch = []
                if item is _EOF:
                    if dst.can_write_eof() and not dst.is_closing():
                        try:
                            dst.write_eof()
                        except OSError:
                            pass
                    side = self.dst_side
                    side.sent_eof = True
                    if side.got_eof:  # both halves shut: nothing more to do here
                        dst.close()
                else:
                    dst.close()  # flushes its buffer first
                    self.done = True
                    q.clear()
                    self.queued = 0
                    return
                continue
            self.queued -= len(item)
            batch.append(item)
        if batch and not dst.is_closing():
            dst.writelines(batch)
        if q:
            self.timer = self.loop.call_at(q[0][0], self._flush)
        self._update_reading()

    def set_dst_paused(self, paused):
        self.dst_paused = paused
        self._update_reading()

    def _update_reading(self):
        src = self.src
        if src is None:
            return
        if self.reading:
            if self.dst_paused or self.queued > self.limit:
                self.reading = False
                src.pause_reading()
        elif not self.dst_paused and self.queued <= self.limit // 2:
            self.reading = True
            src.resume_reading()


class Side(asyncio.Protocol):
    """One socket of a proxied connection: feeds `out`, is the destination of `inp`."""

    def __init__(self, out, inp):
        self.out = out
        self.inp = inp
        self.transport = None
        self.got_eof = False   # the peer half-closed towards us
        self.sent_eof = False  # we half-closed towards the peer

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        transport.set_write_buffer_limits(high=4 << 20)
        self.out.src = transport
        self.inp.dst = transport
        self.inp.dst_side = self

    def data_received(self, data):
        self.out.data(data)

    def eof_received(self):
        self.got_eof = True
        self.out.eof()
        if self.sent_eof:
            return False  # both halves shut: let asyncio close the transport
        return True  # keep our write half open until the peer is done

    def connection_lost(self, exc):
        # closed or reset: close the peer after the same delay, behind the queued data
        self.out.close()
        self.inp.abort()

    def pause_writing(self):
        self.inp.set_dst_paused(True)

    def resume_writing(self):
        self.inp.set_dst_paused(False)


class Downstream(Side):
    """The accepted client socket: connects upstream before it starts reading."""

    def __init__(self, args, loop):
        self.args = args
        self.loop = loop
        up = Pipe(loop, args.delay, args.max_queue)    # client -> server
        down = Pipe(loop, args.delay, args.max_queue)  # server -> client
        super().__init__(up, down)

    def connection_made(self, transport):
        super().connection_made(transport)
        transport.pause_reading()
        self.out.reading = False
        self.loop.create_task(self._connect())

    async def _connect(self):
        try:
            upstream, _ = await self.loop.create_connection(
                lambda: Side(self.inp, self.out), self.args.host, self.args.uport)
        except OSError as e:
            print(f"delayproxy: upstream {self.args.host}:{self.args.uport}: {e}",
                  file=sys.stderr)
            self.transport.close()
            return
        if self.transport.is_closing():
            upstream.close()
            return
        self.out.reading = True
        self.transport.resume_reading()
        self.out._update_reading()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("lport", type=int)
    ap.add_argument("uport", type=int)
    ap.add_argument("--delay-ms", type=float, default=20.0, help="one-way delay (default 20)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--max-queue", type=int, default=32 << 20,
                    help="bytes in flight per direction before reading pauses")
    args = ap.parse_args()
    args.delay = args.delay_ms / 1000.0
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Downstream(args, loop), args.host, args.lport,
                                      reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    print(f"delayproxy: {args.host}:{args.lport} -> {args.host}:{args.uport}, "
          f"one-way delay {args.delay_ms:g} ms", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
