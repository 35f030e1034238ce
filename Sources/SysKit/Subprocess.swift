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
