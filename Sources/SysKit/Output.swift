import Glibc

/// Writes to the process's standard streams by file descriptor (Swift 6 rejects the global
/// `stderr` FILE pointer as shared mutable state).
public enum Console {
    public static func error(_ line: String) { write(2, line + "\n") }
    public static func out(_ line: String) { write(1, line + "\n") }

    public static func write(_ fd: Int32, _ s: String) {
        let bytes = Array(s.utf8)
        var done = 0
        while done < bytes.count {
            // SAFETY: the pointer is used only inside the closure, within the array's bounds.
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
            if n < 0 { if Glibc.errno == EINTR { continue } else { return } }
            done += n
        }
    }

    public static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }
}

/// Process-level calls used by the daemon.
public enum ProcessControl {
    public static func ignoreSIGPIPE() { signal(SIGPIPE, SIG_IGN) }
    public static func newSession() { _ = setsid() }
    public static var pid: Int32 { getpid() }
    public static func isAlive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 || Glibc.errno == EPERM }
    /// Whether `pid` is gone or a zombie (exited, not yet reaped by its parent).
    public static func hasExited(_ pid: Int32) -> Bool {
        guard isAlive(pid) else { return true }
        guard let stat = try? FS.readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: UInt8(ascii: ")")),
              close + 2 < stat.count else { return false }
        return stat[close + 2] == UInt8(ascii: "Z")
    }
    /// Polls until `pid` has exited (`hasExited`), at most `seconds`; whether it did.
    public static func waitForExit(_ pid: Int32, seconds: Double) -> Bool {
        let end = monotonicNs() + UInt64(seconds * 1e9)
        while !hasExited(pid) {
            if monotonicNs() > end { return false }
            usleep(5_000)
        }
        return true
    }
    public static func monotonicNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
    /// CLOCK_REALTIME in nanoseconds since the epoch (comparable with file times).
    public static func wallClockNs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
    public static func wallClockSeconds() -> Int64 { Int64(time(nil)) }
    public static var userID: UInt32 { getuid() }
    public static func environment(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        return String(cString: v)
    }
    /// Resident set size in bytes, from /proc/self/statm.
    public static func residentBytes() -> UInt64 {
        guard let s = try? FS.readFile("/proc/self/statm") else { return 0 }
        let parts = String(decoding: s, as: UTF8.self).split(separator: " ")
        guard parts.count > 1, let pages = UInt64(parts[1]) else { return 0 }
        return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
    }
}

extension ProcessControl {
    /// Peak resident set size (VmHWM) in bytes.
    public static func peakResidentBytes() -> UInt64 { procKiB("/proc/self/status", "VmHWM:") ?? 0 }

    /// The memory the kernel says is available without swapping (`MemAvailable`), in bytes; nil
    /// where /proc/meminfo does not say.
    public static func availableMemoryBytes() -> UInt64? { procKiB("/proc/meminfo", "MemAvailable:") }

    /// The `key:   N kB` line of a /proc file, in bytes.
    private static func procKiB(_ file: String, _ key: String) -> UInt64? {
        guard let s = try? FS.readFile(file) else { return nil }
        for line in String(decoding: s, as: UTF8.self).split(separator: "\n") where line.hasPrefix(key) {
            return UInt64(line.filter { $0.isNumber }).map { $0 * 1024 }
        }
        return nil
    }
}

extension ProcessControl {
    /// CPU time this process has used so far, in seconds (getrusage RUSAGE_SELF, all threads).
    public static func cpuSeconds() -> (user: Double, system: Double) {
        var u = rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &u) == 0 else { return (0, 0) }
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return (s(u.ru_utime), s(u.ru_stime))
    }
}

/// Phase marks for measuring where a command's time goes: with ENVMOUNT_TIMING=FILE each mark
/// appends "PID wall-clock-ms label" to FILE (for benchmarks; nothing is written otherwise).
public enum PhaseMarks {
    private static let path: String? = ProcessControl.environment("ENVMOUNT_TIMING")
    public static func mark(_ label: @autoclosure () -> String) {
        guard let path else { return }
        let ms = Double(ProcessControl.wallClockNs()) / 1e6
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        Console.write(fd, "\(ProcessControl.pid) \(String(format2: ms)) \(label())\n")
        close(fd)
    }
}
