import CKernels
import Glibc

/// Stream sockets in the file system (AF_UNIX), for the daemon's control channel.
public enum UnixSocket {
    static func address(_ path: String) throws -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { throw SystemError(errno: ENAMETOOLONG, call: "bind", path: path) }
        // SAFETY: copies fewer than `capacity` bytes into sun_path, which stays NUL-terminated.
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return addr
    }

    /// Binds and listens at `path`, replacing a leftover socket file there.
    public static func listen(_ path: String, mode: UInt32 = 0o600) throws -> FileDescriptor {
        var addr = try address(path)
        try? FS.unlink(path)
        let fd = try valueOrErrno("socket") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        // SAFETY: sockaddr_un is passed with its own size.
        let r = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if r != 0 {
            let e = errno
            close(fd)
            throw SystemError(errno: e, call: "bind", path: path)
        }
        try FS.chmod(path.pathBytes, mode)
        _ = try valueOrErrno("listen", path) { Glibc.listen(fd, 16) }
        return FileDescriptor(rawValue: fd)
    }

    public static func accept(_ listener: FileDescriptor) throws -> FileDescriptor {
        FileDescriptor(rawValue: try valueOrErrno("accept") { Glibc.accept(listener.rawValue, nil, nil) })
    }

    /// The process id of the peer of a connected socket (SO_PEERCRED), as of when it connected
    /// or listened.
    public static func peerPid(_ fd: FileDescriptor) -> Int32? {
        let pid = envmount_peer_pid(fd.rawValue)
        return pid > 0 ? pid : nil
    }

    public static func connect(_ path: String) throws -> FileDescriptor {
        var addr = try address(path)
        let fd = try valueOrErrno("socket") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        // SAFETY: sockaddr_un is passed with its own size.
        let r = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if r != 0 {
            let e = errno
            close(fd)
            throw SystemError(errno: e, call: "connect", path: path)
        }
        return FileDescriptor(rawValue: fd)
    }
}

extension FileDescriptor {
    /// Reads until a newline or end of stream (the newline is not returned).
    public func readLine(limit: Int = 64 << 20) throws -> [UInt8] {
        var out: [UInt8] = []
        var byte = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            // SAFETY: read writes at most byte.count bytes into the local buffer.
            let n = try byte.withUnsafeMutableBytes { (raw) throws -> Int in
                try valueOrErrno("read") { Glibc.read(rawValue, raw.baseAddress!, raw.count) }
            }
            if n == 0 { return out }
            if let nl = byte[0..<n].firstIndex(of: 0x0a) {
                out.append(contentsOf: byte[0..<nl])
                return out
            }
            out.append(contentsOf: byte[0..<n])
        }
        throw SystemError(errno: E2BIG, call: "readLine")
    }
}

extension UnixSocket {
    /// Makes a blocked `read`/`write` on `fd` fail with EAGAIN after `seconds` (SO_RCVTIMEO,
    /// SO_SNDTIMEO), so a peer that connects and sends nothing cannot hold a worker forever.
    public static func setTimeouts(_ fd: FileDescriptor, seconds: Double) throws {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1_000_000))
        for opt in [SO_RCVTIMEO, SO_SNDTIMEO] {
            // SAFETY: setsockopt reads exactly MemoryLayout<timeval>.size bytes from the local.
            _ = try valueOrErrno("setsockopt") {
                setsockopt(fd.rawValue, SOL_SOCKET, opt, &tv, socklen_t(MemoryLayout<timeval>.size))
            }
        }
    }

    /// Wakes every thread blocked in `accept` on a listener (they get EINVAL), before it is closed.
    public static func shutdown(_ fd: FileDescriptor) { _ = Glibc.shutdown(fd.rawValue, Int32(SHUT_RDWR)) }
}

extension FileDescriptor {
    /// Waits until any of `fds` is readable (data or end of stream) or `milliseconds` pass
    /// (poll(2)); returns, per descriptor, whether it is readable.
    public static func waitReadable(_ fds: [FileDescriptor], milliseconds: Int32) throws -> [Bool] {
        var p = fds.map { pollfd(fd: $0.rawValue, events: Int16(POLLIN), revents: 0) }
        // SAFETY: poll reads and writes exactly p.count pollfds of the local array.
        let n = try p.withUnsafeMutableBufferPointer { b in
            try valueOrErrno("poll") { poll(b.baseAddress!, nfds_t(b.count), milliseconds) }
        }
        return n == 0 ? fds.map { _ in false } : p.map { $0.revents != 0 }
    }

    /// Waits until the descriptor is readable (data or end of stream) or `milliseconds` pass
    /// (poll(2)); returns whether it is readable.
    public func waitReadable(milliseconds: Int32) throws -> Bool {
        var p = pollfd(fd: rawValue, events: Int16(POLLIN), revents: 0)
        // SAFETY: poll reads and writes the one local pollfd.
        let n = try valueOrErrno("poll") { poll(&p, 1, milliseconds) }
        return n > 0
    }

    /// One read(2) of at most `max` bytes from a pipe or socket; empty at end of stream.
    public func readSome(max: Int = 65536) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: max)
        // SAFETY: read writes at most buf.count bytes into the local buffer.
        let n = try buf.withUnsafeMutableBytes { raw in
            try valueOrErrno("read") { Glibc.read(rawValue, raw.baseAddress!, raw.count) }
        }
        return Array(buf[0..<n])
    }
}
