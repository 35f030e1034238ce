import CKernels
import Glibc

/// Runs a program to completion without Foundation (envpublish links only the standard
/// library): posix_spawn, output to a file, a time limit that stops the program's whole
/// process group.
public enum Subprocess {
    public struct Result: Sendable {
        /// Exit status, or 128 + signal number when a signal ended it.
        public var status: Int32
        public var timedOut: Bool
        public var seconds: Double
    }

    /// Runs `argv[0]` (an absolute path) with `argv`. `environment`: name=value pairs (nil: this
    /// process's). Output (stdout and stderr) is appended to `outputFile` when given.
    /// A waitpid status as a shell gives it: the exit status, or 128 + the signal that ended it.
    public static func exitCode(waitStatus status: Int32) -> Int32 {
        (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    public static func run(_ argv: [String], environment: [String]? = nil, directory: String? = nil,
                           outputFile: String? = nil, timeoutSeconds: Double? = nil) throws -> Result {
        precondition(!argv.isEmpty)
        let start = ProcessControl.monotonicNs()
        var pid: Int32 = 0
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = environment.map { $0.map { strdup($0) } + [nil] }
        defer {
            for p in cArgs { free(p) }
            for p in cEnv ?? [] { free(p) }
        }
        // SAFETY: the C strings live until the deferred free above, after posix_spawn returns;
        // the arrays are NULL-terminated and only read by the callee.
        let rc = cArgs.withUnsafeBufferPointer { a in
            (cEnv ?? []).withUnsafeBufferPointer { e in
                envmount_spawn(argv[0], a.baseAddress!, cEnv == nil ? nil : e.baseAddress!, directory, outputFile, &pid)
            }
        }
        guard rc == 0 else { throw SystemError(errno: rc, call: "posix_spawn", path: argv[0]) }
        var timedOut = false
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, timeoutSeconds == nil ? 0 : WNOHANG)
            if r == pid { break }
            if r < 0 {
                if errno == EINTR { continue }
                throw SystemError(errno: errno, call: "waitpid", path: argv[0])
            }
            if let t = timeoutSeconds, Double(ProcessControl.monotonicNs() - start) / 1e9 > t, !timedOut {
                timedOut = true
                kill(-pid, SIGKILL)
            }
            usleep(20_000)
        }
        return Result(status: exitCode(waitStatus: status), timedOut: timedOut, seconds: Double(ProcessControl.monotonicNs() - start) / 1e9)
    }
}

extension Subprocess {
    /// Stops child `pid` of this process: SIGTERM, up to `grace` seconds for it to end, then
    /// SIGKILL; reaps it either way and says which it took (for the error that follows).
    public static func stop(_ pid: Int32, grace: Double = 3) -> String {
        kill(pid, SIGTERM)
        let end = ProcessControl.monotonicNs() + UInt64(grace * 1e9)
        var status: Int32 = 0
        while ProcessControl.monotonicNs() < end {
            if waitpid(pid, &status, WNOHANG) == pid { return "stopped it (SIGTERM)" }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return "killed it (SIGKILL)"
    }
}

extension Subprocess {
    /// Where a started child's standard stream goes: /dev/null, or a pipe to this process.
    public enum Stream: Sendable { case null, pipe }

    /// A child started by `start`, still to be waited for. The pipe ends (this process's side,
    /// close-on-exec) belong to the caller, who closes them.
    public struct Child: Sendable {
        public let pid: Int32
        /// The write end of the child's stdin, when it is a pipe.
        public let input: FileDescriptor?
        /// The read ends of the child's stdout and stderr, when they are pipes.
        public let output: FileDescriptor?
        public let errorOutput: FileDescriptor?

        /// nil while the child runs; once it has ended (it is reaped here, so ask until it is
        /// not nil, then no more), its raw waitpid status.
        public func endedStatus() -> Int32? {
            var status: Int32 = 0
            while true {
                let r = waitpid(pid, &status, WNOHANG)
                if r == pid { return status }
                if r < 0 && errno == EINTR { continue }
                // 0: still running; ECHILD: reaped already, which the caller does not do.
                return nil
            }
        }

        /// Waits for the child to end; its raw waitpid status.
        public func waitForEnd() -> Int32 {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            return status
        }
    }

    /// Starts `argv[0]` (an absolute path) with `argv` and this process's environment, each
    /// standard stream from /dev/null or a pipe; what Foundation's `Process` did for the daemon
    /// launch and fusermount3: the child gets a process group of its own, and no descriptor of
    /// this process but the three it is given.
    public static func start(_ argv: [String], stdin: Stream = .null, stdout: Stream = .null,
                             stderr: Stream = .null) throws -> Child {
        precondition(!argv.isEmpty)
        // Per stream: (the child's end, this process's end), or nil for /dev/null.
        var ends: [(child: Int32, parent: Int32)?] = []
        func closeAll() {
            for e in ends { if let e { _ = close(e.child); _ = close(e.parent) } }
        }
        for (i, s) in [stdin, stdout, stderr].enumerated() {
            guard s == .pipe else { ends.append(nil); continue }
            var fds: [Int32] = [-1, -1]
            // SAFETY: pipe2 writes exactly two descriptors into the local array.
            let rc = fds.withUnsafeMutableBufferPointer { envmount_pipe_cloexec($0.baseAddress!) }
            if rc != 0 {
                let e = errno
                closeAll()
                throw SystemError(errno: e, call: "pipe2", path: argv[0])
            }
            // fds[0] reads, fds[1] writes: the child reads stdin and writes stdout/stderr.
            ends.append(i == 0 ? (fds[0], fds[1]) : (fds[1], fds[0]))
        }
        let stdio: [Int32] = ends.map { $0?.child ?? -1 }
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        var pid: Int32 = 0
        // SAFETY: the C strings live until the deferred free above, after posix_spawn returns;
        // the arrays are read only by the callee, argv NULL-terminated, stdio three entries.
        let rc = cArgs.withUnsafeBufferPointer { a in
            stdio.withUnsafeBufferPointer { s in envmount_spawn_stdio(argv[0], a.baseAddress!, s.baseAddress!, &pid) }
        }
        guard rc == 0 else {
            closeAll()
            throw SystemError(errno: rc, call: "posix_spawn", path: argv[0])
        }
        for e in ends { if let e { _ = close(e.child) } }
        return Child(pid: pid, input: ends[0].map { FileDescriptor(rawValue: $0.parent) },
                     output: ends[1].map { FileDescriptor(rawValue: $0.parent) },
                     errorOutput: ends[2].map { FileDescriptor(rawValue: $0.parent) })
    }
}
