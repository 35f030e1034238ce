import Foundation
import SysKit

/// One-line log records on standard error (the daemon's log file), with a UTC timestamp.
public enum Log {
    public static func info(_ message: String) { emit("info", message) }
    public static func error(_ message: String) { emit("error", message) }

    private static func emit(_ level: String, _ message: String) {
        let ts = Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true))
        Console.error("\(ts) \(level) \(message)")
    }
}
