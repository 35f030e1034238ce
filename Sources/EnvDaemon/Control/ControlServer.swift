// The daemon's side of the control channel. A fixed set of worker threads each accept and serve
// one connection at a time, so no peer can make the daemon start threads; each connection has a
// read and write timeout, so an idle peer holds a worker for at most `ioTimeout`; and a failing
// accept (EMFILE, ENFILE, ENOMEM) backs off instead of spinning.
import Glibc
import Synchronization
import SysKit

final class ControlServer: Sendable {
    let path: String
    let workers: Int
    let ioTimeout: Double
    let handler: @Sendable (ControlRequest) -> ControlReply
    private let listener: FileDescriptor
    /// The socket file's inode once bound: `stop` removes the path only while it is still ours.
    private let inode: UInt64?
    private let stopped = Atomic<Bool>(false)
    /// Accept calls that failed (for tests: a spinning loop makes thousands).
    let acceptErrors = Atomic<Int>(0)
    /// Connections dropped because the peer sent no complete request in time.
    let timedOut = Atomic<Int>(0)

    /// Binds `path` (mode 0600) and starts `workers` threads.
    init(path: String, workers: Int = 4, ioTimeout: Double = 5,
         handler: @escaping @Sendable (ControlRequest) -> ControlReply) throws {
        self.path = path
        self.workers = workers
        self.ioTimeout = ioTimeout
        self.handler = handler
        listener = try UnixSocket.listen(path)
        inode = (try? FS.lstat(path))?.inode
        for i in 0..<workers {
            DetachedThread.start(name: "em-control-\(i)") { [self] in serveLoop() }
        }
    }

    /// Stops accepting and removes the socket file. Connections being served finish.
    func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        // A daemon that exits after its mount point was unmounted must not remove the socket of
        // the next mount at the same path, which may already have bound it.
        if let inode, (try? FS.lstat(path))?.inode == inode { try? FS.unlink(path) }
        UnixSocket.shutdown(listener)
    }

    private func serveLoop() {
        var backoffMs: UInt32 = 0
        while !stopped.load(ordering: .relaxed) {
            let conn: FileDescriptor
            do {
                conn = try UnixSocket.accept(listener)
                backoffMs = 0
            } catch {
                if stopped.load(ordering: .relaxed) { return }
                acceptErrors.add(1, ordering: .relaxed)
                // Out of descriptors or memory: wait for some to be freed, longer each time.
                backoffMs = min(max(backoffMs * 2, 10), 1000)
                usleep(backoffMs * 1000)
                continue
            }
            serve(conn)
            conn.close()
        }
    }

    private func serve(_ conn: FileDescriptor) {
        let reply: ControlReply
        do {
            try UnixSocket.setTimeouts(conn, seconds: ioTimeout)
            let line = try conn.readLine(limit: 1 << 20)
            if line.isEmpty { return }
            do { reply = handler(try ControlCoding.decode(ControlRequest.self, line)) } catch {
                reply = .failed("malformed control request (is this envmount the same version as the daemon?)")
            }
        } catch let e as SystemError where e.errno == EAGAIN || e.errno == EWOULDBLOCK {
            timedOut.add(1, ordering: .relaxed)
            return
        } catch {
            return
        }
        if let out = try? ControlCoding.encodeLine(reply) { try? conn.writeAll(out) }
    }
}
