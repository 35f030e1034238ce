import Glibc

/// Starting a background daemon by fork(2) without exec: the child carries on with the state the
/// parent built (parsed options, checked mount point), so a mount pays one process start, not two.
/// Safe only while this process has one thread: `forkDaemon` checks that and returns nil (the
/// caller then re-executes itself instead).
public enum DaemonFork {
    /// The parent's side: the child's PID and the pipe on which it reports READY.
    public struct Child: Sendable {
        public let pid: Int32
        public let ready: FileDescriptor
    }

    /// What the child got: the write end of the READY pipe (close-on-exec, so nothing the daemon
    /// runs inherits it and holds the parent waiting).
    public struct Ready: Sendable {
        public let fd: FileDescriptor
        /// Tells the parent the mount answers; the parent then exits 0.
        public func signal() {
            try? fd.writeAll("READY\n")
            fd.close()
        }
    }

    public enum Side: Sendable {
        case parent(Child)
        case child(Ready)
    }

    /// Threads of this process, from /proc/self/status.
    public static func threadCount() -> Int {
        guard let s = try? FS.readFile("/proc/self/status") else { return 0 }
        for line in String(decoding: s, as: UTF8.self).split(separator: "\n") where line.hasPrefix("Threads:") {
            return Int(String(line.filter { $0.isNumber })) ?? 0
        }
        return 0
    }

    /// Forks when this process has exactly one thread; nil otherwise (or when fork fails). The
    /// child starts a new session (no terminal signals reach it) with /dev/null as stdin.
    public static func forkDaemon() -> Side? {
        guard threadCount() == 1 else { return nil }
        var fds: [Int32] = [0, 0]
        // SAFETY: pipe writes exactly two descriptors into the local array.
        guard fds.withUnsafeMutableBufferPointer({ pipe($0.baseAddress!) }) == 0 else { return nil }
        // One thread: nothing can exec between pipe and these.
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        let pid = fork()
        if pid < 0 {
            _ = close(fds[0]); _ = close(fds[1])
            return nil
        }
        if pid > 0 {
            _ = close(fds[1])
            return .parent(Child(pid: pid, ready: FileDescriptor(rawValue: fds[0])))
        }
        _ = close(fds[0])
        // Nothing the caller handed this process but the standard streams: a descriptor it did
        // not mean to pass on (Foundation's Process watches a socket's end of stream to learn
        // that its child exited) would otherwise stay open as long as the daemon runs.
        for name in (try? FS.listDirectory("/proc/self/fd")) ?? [] {
            if let fd = Int32(name), fd > 2, fd != fds[1] { _ = close(fd) }
        }
        _ = setsid()
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        if null >= 0 { _ = dup2(null, 0); _ = close(null) }
        return .child(Ready(fd: FileDescriptor(rawValue: fds[1])))
    }

    public enum Outcome: Sendable, Equatable {
        case ready
        /// The child ended without READY: its exit status, or 128 + the signal that ended it.
        case exited(Int32)
        case timedOut
    }

    /// Waits up to `deadline` seconds for the child's READY, or for it to end.
    public static func wait(_ child: Child, deadline: Double) -> Outcome {
        defer { child.ready.close() }
        let end = ProcessControl.monotonicNs() + UInt64(deadline * 1e9)
        var seen: [UInt8] = []
        while true {
            let now = ProcessControl.monotonicNs()
            if now >= end { return .timedOut }
            let ms = Int32(min((end - now) / 1_000_000 + 1, 1000))
            guard (try? child.ready.waitReadable(milliseconds: ms)) == true else { continue }
            let b: [UInt8]
            do { b = try child.ready.readSome() } catch let e as SystemError where e.errno == EINTR { continue } catch { break }
            if b.isEmpty { break }
            seen += b
            if seen.count >= 6 && String(decoding: seen, as: UTF8.self).contains("READY\n") { return .ready }
        }
        return .exited(reap(child.pid))
    }

    /// Waits for `pid` to end; its exit status, or 128 + the signal that ended it.
    public static func reap(_ pid: Int32) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return Subprocess.exitCode(waitStatus: status)
    }

}
