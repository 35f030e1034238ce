import FoundationEssentials
import Synchronization
import SysKit

/// One-line log records on standard error (the daemon's log file), with a UTC timestamp.
public enum Log {
    public static func info(_ message: String) { emit("info", message) }
    public static func error(_ message: String) { emit("error", message) }

    /// Lines kept in memory while standard error is still the user's terminal (a daemon before
    /// it has its log); nil when lines are written at once.
    private static let held = Mutex<[String]?>(nil)

    /// Keeps the lines that follow in memory until `release`.
    public static func hold() { held.withLock { $0 = $0 ?? [] } }

    /// Writes the kept lines to standard error (the log by now, or with an error) and writes
    /// the lines that follow at once.
    public static func release() {
        let lines = held.withLock { h -> [String] in
            defer { h = nil }
            return h ?? []
        }
        for line in lines { Console.error(line) }
    }

    private static func emit(_ level: String, _ message: String) {
        let ts = Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true))
        let line = "\(ts) \(level) \(message)"
        let kept = held.withLock { h -> Bool in
            guard h != nil else { return false }
            h!.append(line)
            return true
        }
        if !kept { Console.error(line) }
    }
}
