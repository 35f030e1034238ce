// The daemon's control channel: a Unix socket per mount point, one JSON request line and one
// JSON reply line per connection. `status`, `warm` and `profile` talk to the daemon that serves
// a mount point through it.
import EnvFormat
import Foundation
import SysKit

struct ControlRequest: Codable {
    var op: String
    var paths: [String]? = nil
    var label: String? = nil
    var name: String? = nil
    var ids: [Int]? = nil
}

struct JobInfo: Codable {
    var id: Int
    var label: String
    var chunks: Int
    var doneChunks: Int
    var failedChunks: Int
    var bytes: UInt64
    var doneBytes: UInt64
    var seconds: Double
    var finished: Bool
    var error: String?
}

struct StatusInfo: Codable {
    var mountpoint: String
    var env: String
    var revision: UInt64
    var manifest: String
    var store: String
    var pid: Int32
    var offline: Bool
    var entries: Int
    var totalBytes: UInt64
    var chunks: Int
    var cacheDir: String
    var cacheBytes: UInt64?
    var cacheEntries: Int?
    var cacheLimit: UInt64?
    var requests: UInt64
    var chunksFetched: UInt64
    var bytesFetched: UInt64
    var rawBytesFetched: UInt64
    var cacheHits: UInt64
    var joinedFetches: UInt64
    var fetchErrors: UInt64
    var corruptChunks: UInt64
    var readAheadQueued: Int
    var recordedChunks: Int
    var rssBytes: UInt64
    var jobs: [JobInfo]
    var lastError: String?
    /// The store asked again for this status (reachable? newer revision?).
    var storeCheck: StoreCheck? = nil
}

struct ControlReply: Codable {
    var ok: Bool
    var error: String? = nil
    var status: StatusInfo? = nil
    var jobs: [JobInfo]? = nil
    var missing: Int? = nil
    var key: String? = nil
    var chunks: Int? = nil
}

enum ControlPaths {
    /// `/run/envmount` for root, else `$XDG_RUNTIME_DIR/envmount` or `/tmp/envmount-UID`.
    static func directory() -> String {
        if ProcessControl.userID == 0 { return "/run/envmount" }
        if let x = ProcessControl.environment("XDG_RUNTIME_DIR"), !x.isEmpty { return x + "/envmount" }
        return "/tmp/envmount-\(ProcessControl.userID)"
    }

    static func socket(for mountpoint: String) -> String {
        "\(directory())/\(ChunkID.of(Array(mountpoint.utf8)).hex.prefix(16)).sock"
    }
}

enum ControlClient {
    struct NoDaemon: Error, CustomStringConvertible {
        let mountpoint: String
        let reason: String
        var description: String {
            "no envmount daemon serves \(mountpoint) (\(reason)); `envmount status` lists the mounts"
        }
    }

    /// Sends one request to the daemon serving `mountpoint`.
    static func send(_ mountpoint: String, _ request: ControlRequest) throws -> ControlReply {
        let path = ControlPaths.socket(for: mountpoint)
        let fd: FileDescriptor
        do { fd = try UnixSocket.connect(path) } catch {
            let mounted = Mountpoints.find(mountpoint)
            throw NoDaemon(mountpoint: mountpoint, reason: mounted == nil ? "it is not mounted" : "its control socket \(path) does not answer: \(error)")
        }
        defer { fd.close() }
        var line = try JSONEncoder().encode(request)
        line.append(0x0a)
        try fd.writeAll(Array(line))
        let reply = try fd.readLine()
        let r = try JSONDecoder().decode(ControlReply.self, from: Data(reply))
        if !r.ok { throw MountError(r.error ?? "the daemon refused the request") }
        return r
    }
}
