// EnvCache: the on-disk chunk cache. One directory serves every mount and environment on a
// machine, so a chunk shared by two environments is kept once.
//
//   <dir>/v1/chunks/<2 hex>/<64 hex>   a chunk's uncompressed bytes, exactly its raw size
//   <dir>/v1/tmp/                      entries being written (`<pid>.<n>`), renamed into place
//   <dir>/v1/manifests/<64 hex>        manifests, for mounting again without the store
//   <dir>/v1/refs/<store hash>/<env>   the last ref seen per store and environment
//
// Entries are stored uncompressed so a read is one pread (or a splice) from the file. Only
// bytes whose SHA-256 matched their id are written, to a temporary file that is then renamed,
// so a kill -9 leaves either a whole entry or none; what a crash left in tmp/ is removed when
// the cache is next opened. Chunk entries are not fsynced: a power cut may leave an entry short
// or holding other bytes, and every process hashes an entry before it first serves it
// (ChunkFetcher), so such an entry is found, removed and fetched again. An fsync per chunk
// cost a cold mount 165 fsyncs on the fetch threads, each delaying the reads that waited for
// that chunk (22 ms apiece on this loaded VM). Manifests and refs, which a mount trusts once
// decoded, are still fsynced.
//
// Size limit and eviction (ChunkCache+Limit.swift): an optional byte limit is enforced by
// evicting least-recently-used entries. The order lives in memory (an index id -> size and
// last-use time, built by scanning chunks/ in the background at open) and survives restarts
// through each entry's mtime: opening an entry bumps its mtime to now (utimensat) at most once an
// hour, and the scan takes max(atime, mtime) as the last use. Pinned entries (a reader between
// fetching and reading a chunk) are never evicted. Eviction unlinks files; a reader that already
// holds an fd on an evicted entry keeps reading its bytes (Linux frees them at the last close).
// Several processes may share one cache directory; each keeps its own index and enforces its own
// limit over what it sees, and entries another process removed are dropped from an index lazily
// (ENOENT on open or unlink).
import Dispatch
import Glibc
import SysKit
import EnvFormat
import Synchronization

public final class ChunkCache: Sendable {
    public static let layoutVersion = "v1"

    public let directory: String
    let root: String
    /// fsync manifests and refs before they are renamed into place (power-loss safety).
    let durable: Bool
    /// The most bytes of chunk entries to keep (nil: no limit; ENOSPC still evicts).
    public let limit: UInt64?
    /// Numbers temporaries. Process-wide: names are `<pid>.<n>`, so two instances on one
    /// directory with their own counters would write the same temporary at once.
    private static let sequence = Atomic<UInt64>(0)
    /// The LRU index and pins; see ChunkCache+Limit.swift.
    let index = Mutex(CacheIndex())
    /// Left when the background scan of chunks/ has been merged into `index`.
    let scanDone = DispatchGroup()
    /// Whether the scan has been started.
    private let scanStarted = Atomic<Bool>(false)

    /// Opens (creating if needed) the cache at `directory`. With `limit`, inserts evict the least
    /// recently used entries to keep chunk bytes at or under it. The existing entries are counted
    /// by a scan that runs in the background; calls that need the totals wait for it.
    /// With `deferScan`, the scan waits for `startScan()` or the first call that needs the
    /// totals (a mount starts it once it answers, so the scan's stats do not compete with the
    /// mount's own work).
    public init(directory: String, durable: Bool = true, limit: UInt64? = nil, deferScan: Bool = false) throws {
        self.directory = directory
        self.root = directory + "/" + ChunkCache.layoutVersion
        self.durable = durable
        self.limit = limit
        // Whoever can write these directories decides what a mount serves (until verification
        // refuses it) and can fill or empty the cache: they must be this user's alone. One made
        // by another user first (say in a shared /tmp), or writable by group or others, is refused.
        for dir in [directory, root] + ["chunks", "tmp", "manifests", "refs"].map({ root + "/" + $0 }) {
            try SecureDirectory.prepare(dir)
        }
        removeAbandonedTemporaries()
        scanDone.enter()
        if !deferScan { startScan() }
    }

    /// Starts the background scan of chunks/ (once; later calls do nothing).
    public func startScan() {
        guard !scanStarted.exchange(true, ordering: .acquiringAndReleasing) else { return }
        DispatchQueue.global(qos: .utility).async { [self] in
            scanEntries()
            scanDone.leave()
        }
    }

    /// The default cache location: `$XDG_CACHE_HOME/envmount` (an absolute one; the XDG spec
    /// says to ignore a relative one), else `/var/cache/envmount` for root, else
    /// `$HOME/.cache/envmount`, else `/tmp/envmount-cache-UID`. That last one sits in a directory
    /// every user can write, so `init` refuses it unless this user owns it and nobody else can
    /// write it (another user could have made it first to plant entries).
    public static func defaultDirectory() -> String {
        defaultDirectory(userID: ProcessControl.userID, environment: ProcessControl.environment)
    }

    static func defaultDirectory(userID: UInt32, environment: (String) -> String?) -> String {
        if let x = environment("XDG_CACHE_HOME"), x.hasPrefix("/") { return x + "/envmount" }
        if userID == 0 { return "/var/cache/envmount" }
        if let h = environment("HOME"), h.hasPrefix("/") { return h + "/.cache/envmount" }
        return "/tmp/envmount-cache-\(userID)"
    }

    public func path(of id: ChunkID) -> String {
        let h = id.hex
        return "\(root)/chunks/\(h.prefix(2))/\(h)"
    }

    /// Opens a cached chunk for reading, or nil when it is not cached. Marks the entry used.
    public func open(_ id: ChunkID) throws -> FileDescriptor? {
        let p = path(of: id)
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(p, O_RDONLY)
        } catch let e as SystemError where e.errno == ENOENT {
            forgetIfGone(id, path: p)
            return nil
        }
        markUsed(id, path: p)
        return fd
    }

    public func contains(_ id: ChunkID, rawSize: UInt32) -> Bool {
        guard let st = try? FS.stat(path(of: id)) else { return false }
        return st.size == UInt64(rawSize)
    }

    /// Adds verified chunk bytes. The caller has checked `SHA256(bytes) == id`.
    ///
    /// With a limit, first evicts least-recently-used unpinned entries so that usage plus this
    /// entry stays within it (when pins leave too little to evict, the entry is added anyway and
    /// the excess goes at the next eviction). When the file system is full (ENOSPC/EDQUOT), evicts
    /// a batch of unpinned entries and retries. Throws `CacheError.full` when nothing can be freed
    /// or the entry alone exceeds the limit: the caller serves the bytes without caching them.
    public func insert(_ id: ChunkID, _ bytes: [UInt8]) throws {
        let size = UInt64(bytes.count)
        if let limit, size > limit {
            throw CacheError.full(needed: size, detail: "larger than the cache limit of \(limit) bytes")
        }
        let final = path(of: id)
        let dir = String(final[..<final.lastIndex(of: "/")!])
        // Inside chunks/, which is ours alone: one mkdir, not one per component of the path.
        if !FS.exists(dir) {
            do { try FS.mkdir(dir.pathBytes, mode: 0o700) } catch let e as SystemError where e.errno == EEXIST {
            } catch { try FS.makeDirectories(dir, mode: 0o700) }
        }
        beginInsert(id, size)
        do {
            while true {
                do {
                    try writeEntry(final, bytes, sync: false)
                    break
                } catch let e as SystemError where e.errno == ENOSPC || e.errno == EDQUOT {
                    let freed = evictForSpace(needed: size)
                    if freed.entries == 0 {
                        throw CacheError.full(needed: size, detail: "\(e); every evictable entry is pinned or gone")
                    }
                }
            }
        } catch {
            endInsert(id, size, landed: false)
            throw error
        }
        endInsert(id, size, landed: true)
    }

    /// Removes an entry found damaged (short or unreadable), so the next read fetches it again.
    /// An entry being inserted right now is left alone: its rename replaces the damaged file.
    public func remove(_ id: ChunkID) {
        let p = path(of: id)
        index.withLock { ix in
            guard ix.inserting[id] == nil else { return }
            try? FS.unlink(p)
            ix.drop(id)
        }
    }

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

    private func writeEntry(_ final: String, _ bytes: [UInt8], sync: Bool? = nil) throws {
        let n = Self.sequence.add(1, ordering: .relaxed).newValue
        try FS.writeFileAtomically(final, bytes, mode: 0o600, sync: sync ?? durable,
                                   temporary: "\(root)/tmp/\(ProcessControl.pid).\(n)")
    }

    /// Deletes temporaries whose writer process is gone (a crash mid-write): entries, and the
    /// directories of materialized trees (`<pid>.tree.<n>`) a killed daemon was building.
    private func removeAbandonedTemporaries() {
        guard let names = try? FS.listDirectory(root + "/tmp") else { return }
        for name in names {
            guard let pid = Int32(name.split(separator: ".").first ?? "") else { continue }
            guard pid != ProcessControl.pid && !ProcessControl.isAlive(pid) else { continue }
            let path = root + "/tmp/" + name
            if (try? FS.unlink(path)) == nil { try? FS.removeTree(path) }
        }
    }
}
