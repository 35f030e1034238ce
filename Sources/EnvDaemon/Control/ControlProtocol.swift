// The daemon's control channel: a Unix socket per mount point, one JSON request line and one
// JSON reply line per connection. `status`, `warm` and `profile save` reach the daemon that
// serves a mount point through it. Requests and replies are enums, one case per operation with
// its own payload, so a request cannot carry fields that mean nothing for its operation.
import EnvFormat
import FoundationEssentials
import SysKit

public enum ControlRequest: Codable, Sendable, Equatable {
    /// The mount's StatusInfo.
    case status
    /// Fetch the chunks of these paths (relative to the root; a directory means all below it).
    case warm(paths: [String], label: String)
    /// Fetch every chunk.
    case warmAll
    /// Fetch a recorded profile's chunks in order.
    case warmProfile(name: String)
    /// Progress of these warm jobs (all when empty).
    case jobs(ids: [Int])
    /// Upload the chunks read so far as a named profile.
    case saveProfile(name: String)
}

public enum ControlReply: Codable, Sendable, Equatable {
    case status(StatusInfo)
    case jobs([JobInfo], missing: Int)
    case profileSaved(key: String, chunks: Int)
    case failed(String)
}

public struct JobInfo: Codable, Sendable, Equatable {
    public var id: Int
    public var label: String
    public var chunks: Int
    public var doneChunks: Int
    public var failedChunks: Int
    public var bytes: UInt64
    public var doneBytes: UInt64
    public var seconds: Double
    public var finished: Bool
    public var error: String?
    /// When the job finished, in seconds since the epoch (for timelines: a start-up prefetch
    /// against the mount command's start and the workload's end).
    public var finishedAt: Double? = nil
}

public struct StatusInfo: Codable, Sendable, Equatable {
    public var mountpoint: String
    public var env: String
    public var revision: UInt64
    public var manifest: String
    public var store: String
    public var pid: Int32
    public var offline: Bool
    public var entries: Int
    public var totalBytes: UInt64
    public var chunks: Int
    public var cacheDir: String
    public var cacheBytes: UInt64?
    public var cacheEntries: Int?
    public var cacheLimit: UInt64?
    public var requests: UInt64
    public var chunksFetched: UInt64
    public var bytesFetched: UInt64
    public var rawBytesFetched: UInt64
    public var cacheHits: UInt64
    public var joinedFetches: UInt64
    public var fetchErrors: UInt64
    public var corruptChunks: UInt64
    public var readAheadQueued: Int
    public var recordedChunks: Int
    public var rssBytes: UInt64
    public var jobs: [JobInfo]
    public var lastError: String?
    /// The id of the trusted key that signed the ref, when the mount required a signature.
    public var signedBy: String? = nil
    /// The writable layer's directory (filled in by `envmount status` from mountinfo).
    public var writableLayer: String? = nil
    /// The materialized tree the kernel serves the files from (filled in by `envmount status`).
    public var nativeTree: String? = nil
    /// Whether this revision is materialized in the cache (for the next mount, if not this one).
    public var materialized: Bool? = nil
    /// What the kernel serves without the daemon (set by the daemon of a native mount).
    public var native: NativeSummary? = nil
    /// Bytes of the cache's materialized trees counted against `cacheLimit` beside `cacheBytes`.
    public var cacheTreeBytes: UInt64? = nil
    /// The store asked again for this status (reachable? newer revision?).
    public var storeCheck: StoreCheck? = nil
    /// FUSE requests the kernel sent, by operation (`lookup`, `read`, `ioctl`, ...), and the
    /// bytes READ replies carried.
    public var fuseOps: [String: UInt64]? = nil
    public var fuseReadBytes: UInt64? = nil
    /// Files put into the kernel's page cache ahead of the workload (KernelPrimer), and their bytes.
    public var fusePushedFiles: UInt64? = nil
    public var fusePushedBytes: UInt64? = nil
    /// Directories KernelPrimer listed through the mount, and whether it has gone through the
    /// whole profile (absent: no primer on this mount).
    public var primedDirectories: Int? = nil
    public var primerFinished: Bool? = nil
    /// A native mount's read-ahead of its profile from the tree into the page cache.
    public var nativeReadAhead: NativeReadAheadInfo? = nil
    /// Reads that waited for chunk bytes (download or first-use hash), and their total wait.
    public var demandWaits: UInt64? = nil
    public var demandWaitSeconds: Double? = nil
    /// Reader misses that moved a queued warm or profile job to where the reader was.
    public var readerFollows: UInt64? = nil
    /// CPU time the daemon has used (all threads), in seconds.
    public var cpuUserSeconds: Double? = nil
    public var cpuSystemSeconds: Double? = nil
}

/// The files a native mount's kernel serves from the cache: the materialized tree's regular
/// files (`files`, `bytes`; of `totalFiles` in the revision: a `partial` tree leaves the others to
/// FUSE), and `relocatedFiles` from the relocation layer above it.
public struct NativeSummary: Codable, Sendable, Equatable {
    public var tree: String
    public var files: Int
    public var bytes: UInt64
    public var partial: Bool
    public var totalFiles: Int
    public var relocationLayer: String?
    public var relocatedFiles: Int
}

/// What a native mount has read ahead of its profile (`NativeReadAhead`): the files and bytes
/// read into the page cache so far, of `plannedBytes`, or nothing when they were there already.
public struct NativeReadAheadInfo: Codable, Sendable, Equatable {
    public var profile: String
    public var files: Int
    public var bytes: UInt64
    public var plannedBytes: UInt64
    public var finished: Bool
    /// A sample of the profile's ranges was in the page cache already: nothing was read.
    public var alreadyCached: Bool? = nil
}

/// One request or reply as the line sent on the socket.
enum ControlCoding {
    static func encodeLine<T: Encodable>(_ value: T) throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = .sortedKeys
        return Array(try enc.encode(value)) + [0x0a]
    }

    static func decode<T: Decodable>(_ type: T.Type, _ line: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(line))
    }
}

public enum ControlPaths {
    /// `/run/envmount` for root; else `$XDG_RUNTIME_DIR/envmount` (a per-user directory the
    /// login manager makes), else `/tmp/envmount-UID`, which `prepareDirectory` refuses if
    /// another user made it first.
    public static func directory() -> String {
        directory(uid: ProcessControl.userID, runtimeDir: ProcessControl.environment("XDG_RUNTIME_DIR"))
    }

    static func directory(uid: UInt32, runtimeDir: String?) -> String {
        if uid == 0 { return "/run/envmount" }
        if let x = runtimeDir, x.hasPrefix("/") { return x + "/envmount" }
        return "/tmp/envmount-\(uid)"
    }

    public static func socket(for mountpoint: String) -> String {
        "\(directory())/\(ChunkID.of(Array(mountpoint.utf8)).hex.prefix(16)).sock"
    }

    /// Creates the socket directory 0700, or checks that the one there is this user's alone.
    public static func prepareDirectory() throws {
        do { try SecureDirectory.prepare(directory()) } catch let e as InsecureDirectoryError {
            throw MountError("control socket \(e)")
        } catch {
            throw MountError("cannot create the control socket directory \(directory()): \(error)")
        }
    }
}
