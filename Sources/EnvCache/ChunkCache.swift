// EnvCache: the on-disk chunk cache. One directory serves every mount and environment on a
// machine, so a chunk shared by two environments is kept once.
//
//   <dir>/v1/chunks/<2 hex>/<64 hex>   a chunk's uncompressed bytes, exactly its raw size
//   <dir>/v1/tmp/                      entries being written (`<pid>.<n>`), renamed into place
//   <dir>/v1/manifests/<64 hex>        manifests, for mounting again without the store
//   <dir>/v1/refs/<store hash>/<env>   the last ref seen per store and environment
//
// Entries are stored uncompressed so a read is one pread (or a splice) from the file. Only
// bytes whose SHA-256 matched their id are written, to a temporary file that is fsynced and
// then renamed, so a crash (kill -9 or power loss) leaves either a whole entry or none; what
// a crash left in tmp/ is removed when the cache is next opened.
import Glibc
import SysKit
import EnvFormat
import Synchronization

public final class ChunkCache: Sendable {
    public static let layoutVersion = "v1"

    public let directory: String
    let root: String
    /// fsync each entry before it is renamed into place (power-loss safety).
    let durable: Bool
    /// Numbers temporaries. Process-wide: names are `<pid>.<n>`, so two instances on one
    /// directory with their own counters would write the same temporary at once.
    private static let sequence = Atomic<UInt64>(0)

    public init(directory: String, durable: Bool = true) throws {
        self.directory = directory
        self.root = directory + "/" + ChunkCache.layoutVersion
        self.durable = durable
        for sub in ["chunks", "tmp", "manifests", "refs"] { try FS.makeDirectories(root + "/" + sub, mode: 0o700) }
        removeAbandonedTemporaries()
    }

    /// The default cache location: `$XDG_CACHE_HOME/envmount`, else `~/.cache/envmount`
    /// (`/var/cache/envmount` for root).
    public static func defaultDirectory() -> String {
        if let x = ProcessControl.environment("XDG_CACHE_HOME"), !x.isEmpty { return x + "/envmount" }
        if ProcessControl.userID == 0 { return "/var/cache/envmount" }
        if let h = ProcessControl.environment("HOME"), !h.isEmpty { return h + "/.cache/envmount" }
        return "/tmp/envmount-cache-\(ProcessControl.userID)"
    }

    public func path(of id: ChunkID) -> String {
        let h = id.hex
        return "\(root)/chunks/\(h.prefix(2))/\(h)"
    }

    /// Opens a cached chunk for reading, or nil when it is not cached.
    public func open(_ id: ChunkID) throws -> FileDescriptor? {
        do {
            return try FileDescriptor.open(path(of: id), O_RDONLY)
        } catch let e as SystemError where e.errno == ENOENT {
            return nil
        }
    }

    public func contains(_ id: ChunkID, rawSize: UInt32) -> Bool {
        guard let st = try? FS.stat(path(of: id)) else { return false }
        return st.size == UInt64(rawSize)
    }

    /// Adds verified chunk bytes. The caller has checked `SHA256(bytes) == id`.
    public func insert(_ id: ChunkID, _ bytes: [UInt8]) throws {
        let final = path(of: id)
        let dir = String(final[..<final.lastIndex(of: "/")!])
        if !FS.exists(dir) { try FS.makeDirectories(dir, mode: 0o700) }
        try writeEntry(final, bytes)
    }

    /// Removes an entry found damaged (short or unreadable), so the next read fetches it again.
    public func remove(_ id: ChunkID) { try? FS.unlink(path(of: id)) }

    // MARK: manifests and refs, for offline mounts

    public func storeManifest(_ id: ChunkID, _ bytes: [UInt8]) throws {
        try writeEntry("\(root)/manifests/\(id.hex)", bytes)
    }

    public func loadManifest(_ id: ChunkID) -> [UInt8]? { try? FS.readFile("\(root)/manifests/\(id.hex)") }

    public func storeRef(store: String, env: String, _ bytes: [UInt8]) throws {
        let dir = "\(root)/refs/\(Self.storeKey(store))"
        try FS.makeDirectories(dir, mode: 0o700)
        try writeEntry("\(dir)/\(env)", bytes)
    }

    public func loadRef(store: String, env: String) -> [UInt8]? {
        try? FS.readFile("\(root)/refs/\(Self.storeKey(store))/\(env)")
    }

    public func cachedEnvironments(store: String) -> [String] {
        ((try? FS.listDirectory("\(root)/refs/\(Self.storeKey(store))")) ?? []).sorted()
    }

    static func storeKey(_ store: String) -> String { String(ChunkID.of(Array(store.utf8)).hex.prefix(16)) }

    // MARK: internals

    private func writeEntry(_ final: String, _ bytes: [UInt8]) throws {
        let n = Self.sequence.add(1, ordering: .relaxed).newValue
        let tmp = "\(root)/tmp/\(ProcessControl.pid).\(n)"
        let fd = try FileDescriptor.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        do {
            try fd.writeAll(bytes)
            if durable { try fd.fsync() }
            fd.close()
            try FS.rename(tmp, final)
        } catch {
            fd.close()
            try? FS.unlink(tmp)
            throw error
        }
    }

    /// Deletes temporaries whose writer process is gone (a crash mid-write).
    private func removeAbandonedTemporaries() {
        guard let names = try? FS.listDirectory(root + "/tmp") else { return }
        for name in names {
            guard let pid = Int32(name.split(separator: ".").first ?? "") else { continue }
            if pid != ProcessControl.pid && !ProcessControl.isAlive(pid) { try? FS.unlink(root + "/tmp/" + name) }
        }
    }
}
