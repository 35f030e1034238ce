// The read path's source of chunk bytes: the disk cache first, else the store. A chunk that
// several readers want at once is fetched once (single flight); fetched bytes are decompressed
// and their SHA-256 compared with the chunk's id before anything is cached or returned.
//
// Cached bytes are not trusted either: the first time this process uses a cache entry, the
// whole entry is read and its SHA-256 compared with its name (in the same single flight as a
// fetch), and only then is it served; the result is remembered per chunk for the life of the
// process, so each entry is hashed once per mount. An entry that is short, long, or holds other
// bytes (a flipped bit, a truncation, another chunk's file under this name) is logged, removed
// and fetched again. Entries this process wrote itself were hashed before they were written.
import Dispatch
import Glibc
import Synchronization
import SysKit
import EnvFormat
import EnvStore
import EnvCache

public final class ChunkFetcher: Sendable {
    public let store: any ObjectStore
    public let cache: ChunkCache
    let chunks: [Manifest.ChunkRecord]
    /// Names a chunk for messages (the first file that uses it).
    let describe: @Sendable (UInt32) -> String

    /// One fetch in progress; later askers wait on `done`.
    final class Flight: Sendable {
        let done = DispatchGroup()
        let error = Mutex<FSError?>(nil)
        init() { done.enter() }
    }

    private let flights = Mutex<[UInt32: Flight]>([:])
    /// Per chunk, when this process hashed (or wrote) its cache entry: seconds since `born`,
    /// plus one; 0 for not yet.
    private let verified: Mutex<[UInt32]>
    private let born = monotonicNs()
    /// Chunks the cache had no room for (its file system full of other data, or every entry in
    /// use), held in memory up to `memoryLimit` bytes; see `MemoryChunks`.
    private let memoryChunks: Mutex<MemoryChunks>
    /// Default bytes of chunks held in memory while the cache is full: room for the read-ahead
    /// windows (stream 32 and within-file 16 chunks of ~1 MiB) plus what readers are on.
    public static let defaultMemoryLimit = 96 << 20
    /// Set when the cache refused an insert as full, cleared when one succeeds. While set,
    /// read-ahead stops where memory would have to drop chunks no reader has used yet.
    private let cacheFull = Atomic<Bool>(false)
    private let lastErrorMessage = Mutex<String?>(nil)
    public let stats = FetchStats()

    /// The most recent fetch failure, for status.
    public var lastError: String? { lastErrorMessage.withLock { $0 } }

    /// Called when a reader needs a chunk that is not cached, before it is fetched.
    private let demandMissHandler = Mutex<(@Sendable (UInt32) -> Void)?>(nil)

    public func onDemandMiss(_ handler: @escaping @Sendable (UInt32) -> Void) {
        demandMissHandler.withLock { $0 = handler }
    }

    public init(store: any ObjectStore, cache: ChunkCache, manifest: Manifest, memoryLimit: Int = defaultMemoryLimit,
                describe: @escaping @Sendable (UInt32) -> String = { "chunk \($0)" }) {
        self.memoryChunks = Mutex(MemoryChunks(limit: memoryLimit))
        self.store = store
        self.cache = cache
        self.chunks = manifest.chunks
        self.describe = describe
        self.verified = Mutex([UInt32](repeating: 0, count: manifest.chunks.count))
    }

    /// Whether chunk `index`'s cache entry has been checked by this process.
    public func isVerified(_ index: UInt32) -> Bool {
        verified.withLock { $0[Int(index)] != 0 }
    }

    /// Whether this process hashed or wrote chunk `index`'s cache entry in the last `seconds`:
    /// its pages were read or written then, so they are most likely still in the page cache.
    public func verifiedRecently(_ index: UInt32, within seconds: UInt32 = 30) -> Bool {
        let now = UInt32((monotonicNs() - born) / 1_000_000_000) + 1
        return verified.withLock { v in v[Int(index)] != 0 && now - v[Int(index)] <= seconds }
    }

    private func setVerified(_ index: UInt32, _ on: Bool) {
        let now = UInt32((monotonicNs() - born) / 1_000_000_000) + 1
        verified.withLock { $0[Int(index)] = on ? now : 0 }
    }

    /// Where a chunk's bytes are: a cache file (the caller closes it), or memory when the cache
    /// could not take them (disk full of entries in use).
    public enum Source {
        case file(FileDescriptor)
        case memory([UInt8])
    }

    /// Chunk `index` from the cache when this process has verified it and it is still there;
    /// nil rather than waiting for a download or a first-use hash. Not a cache hit (those count
    /// reads served from the cache); the primer's stores are counted as pushed files.
    public func openAtHand(_ index: UInt32) -> FileDescriptor? {
        guard isVerified(index) else { return nil }
        return try? cache.open(chunks[Int(index)].id)
    }

    /// Opens chunk `index` from the cache, fetching it first if needed.
    public func open(_ index: UInt32) throws(FSError) -> Source {
        let rec = chunks[Int(index)]
        // Pinned from the first look to the open: eviction may not remove it in between. Once
        // open, an evicted (unlinked) file still reads.
        cache.pin(rec.id)
        defer { cache.unpin(rec.id) }
        for _ in 0..<3 {
            if let fd = try? cache.open(rec.id) {
                if isVerified(index) {
                    stats.hits.add(1, ordering: .relaxed)
                    return .file(fd)
                }
                // First use in this process: hashed (or, if damaged, refetched) by `fetch`.
                fd.close()
                try demandFetch(index)
                continue
            }
            // Gone (evicted, or removed by another process): check whatever comes back.
            setVerified(index, false)
            if let bytes = memoryChunks.withLock({ $0.use(index) }) { return .memory(bytes) }
            demandMissHandler.withLock { $0 }?(index)
            try demandFetch(index)
        }
        throw FSError.io("chunk \(rec.id) (\(describe(index))) vanished from the cache after being fetched")
    }

    /// `fetch` for a reader, timed: how often and how long reads waited for chunk bytes (a
    /// download, one already under way, or the first-use hash of a cache entry).
    private func demandFetch(_ index: UInt32) throws(FSError) {
        let t0 = monotonicNs()
        defer {
            stats.demandWaits.add(1, ordering: .relaxed)
            stats.demandWaitNs.add(monotonicNs() - t0, ordering: .relaxed)
        }
        try fetch(index)
    }

    /// Whether chunk `index` is in the cache (one stat) or held in memory.
    public func isCached(_ index: UInt32) -> Bool {
        cache.contains(chunks[Int(index)].id, rawSize: chunks[Int(index)].rawSize)
            || memoryChunks.withLock { $0.holds(index) }
    }

    /// Bytes of chunks held in memory because the cache was full.
    public var memoryBytes: Int { memoryChunks.withLock { $0.bytes } }

    /// Reads `count` bytes at `offset` of chunk `index` into `buffer[at...]`.
    public func read(_ index: UInt32, offset: UInt32, count: Int, into buffer: inout [UInt8], at: Int) throws(FSError) {
        let fd: FileDescriptor
        switch try open(index) {
        case let .memory(bytes):
            buffer.replaceSubrange(at..<at + count, with: bytes[Int(offset)..<Int(offset) + count])
            return
        case let .file(f):
            fd = f
        }
        defer { fd.close() }
        let n: Int
        do { n = try fd.preadFully(into: &buffer, at: at, count: count, offset: UInt64(offset)) } catch {
            throw FSError.io("reading cached chunk \(chunks[Int(index)].id): \(error)")
        }
        if n != count {
            // A short entry cannot come from this cache's write-then-rename; treat it as damage.
            cache.remove(chunks[Int(index)].id)
            throw FSError.io("cached chunk \(chunks[Int(index)].id) is short (\(describe(index))); removed, will refetch")
        }
    }

    /// Makes sure chunk `index` is in the cache (or, when the cache is full, in memory); waits
    /// for a fetch already under way. A `speculative` fetch (read-ahead) is skipped while the
    /// cache is full and memory has no room left without dropping chunks no reader has used: a
    /// guess must not push out bytes a reader is about to ask for, or both are fetched twice.
    public func fetch(_ index: UInt32, speculative: Bool = false) throws(FSError) {
        if speculative && cacheFull.load(ordering: .relaxed) {
            let size = Int(chunks[Int(index)].rawSize)
            if !memoryChunks.withLock({ $0.roomForUnused(size) }) { return }
        }
        let (flight, leader) = flights.withLock { f -> (Flight, Bool) in
            if let existing = f[index] { return (existing, false) }
            let n = Flight()
            f[index] = n
            return (n, true)
        }
        if leader {
            let err: FSError?
            do { try download(index); err = nil } catch { err = error }
            flight.error.withLock { $0 = err }
            flights.withLock { _ = $0.removeValue(forKey: index) }
            flight.done.leave()
        } else {
            stats.joined.add(1, ordering: .relaxed)
            flight.done.wait()
        }
        if let e = flight.error.withLock({ $0 }) { throw e }
    }

    /// Hashes chunk `index`'s cache entry, if there is one. True when it is the chunk; a damaged
    /// entry is logged and removed (false), as is a missing one (false).
    private func verifyCached(_ index: UInt32) -> Bool {
        let rec = chunks[Int(index)]
        guard let fd = try? cache.open(rec.id) else { return false }
        defer { fd.close() }
        let problem: String
        do {
            // One byte more than the chunk, so an entry that is too long is seen too.
            let bytes = try fd.read(count: Int(rec.rawSize) + 1, offset: 0)
            if bytes.count != Int(rec.rawSize) {
                problem = "holds \(bytes.count > Int(rec.rawSize) ? "more than" : "\(bytes.count) of") the chunk's \(rec.rawSize) bytes"
            } else if ChunkID.of(bytes) != rec.id {
                problem = "holds other bytes (SHA-256 \(ChunkID.of(bytes)))"
            } else {
                setVerified(index, true)
                stats.verified.add(1, ordering: .relaxed)
                return true
            }
        } catch {
            problem = "cannot be read: \(error)"
        }
        stats.damaged.add(1, ordering: .relaxed)
        Log.error("cached chunk \(rec.id) (\(describe(index))) at \(cache.path(of: rec.id)) \(problem); removed, fetching it again")
        cache.remove(rec.id)
        return false
    }

    private func download(_ index: UInt32) throws(FSError) {
        let rec = chunks[Int(index)]
        if isVerified(index) && cache.contains(rec.id, rawSize: rec.rawSize) { return }
        if memoryChunks.withLock({ $0.holds(index) }) { return }
        if verifyCached(index) { return }
        let stored: [UInt8]
        do {
            stored = try store.get(rec.id.objectKey)
        } catch {
            stats.errors.add(1, ordering: .relaxed)
            let msg = "cannot fetch chunk \(rec.id) (\(describe(index))): \(error)"
            Log.error(msg)
            lastErrorMessage.withLock { $0 = msg }
            throw FSError.io(msg)
        }
        stats.requests.add(1, ordering: .relaxed)
        stats.bytesFetched.add(UInt64(stored.count), ordering: .relaxed)
        let raw: [UInt8]
        do {
            raw = try Zstd.decompress(stored, expectedSize: Int(rec.rawSize))
        } catch {
            stats.corrupt.add(1, ordering: .relaxed)
            let msg = "chunk \(rec.id) (\(describe(index))) from \(store.description) does not decompress: \(error); refusing it"
            Log.error(msg)
            throw FSError.io(msg)
        }
        guard ChunkID.of(raw) == rec.id else {
            stats.corrupt.add(1, ordering: .relaxed)
            let msg = "chunk \(rec.id) (\(describe(index))) from \(store.description) failed SHA-256 verification; refusing it"
            Log.error(msg)
            throw FSError.io(msg)
        }
        do {
            try cache.insert(rec.id, raw)
            setVerified(index, true)
            if cacheFull.load(ordering: .relaxed) {
                cacheFull.store(false, ordering: .relaxed)
                Log.info("chunk cache has room again")
            }
        } catch let e as CacheError {
            // Nothing could be evicted (the disk is full of other data, or all in use): serve
            // from memory rather than fail the read, and keep it there while readers need it.
            if !cacheFull.exchange(true, ordering: .relaxed) {
                Log.error("cache full, holding chunks in memory (up to \(memoryChunks.withLock { $0.limit } >> 20) MiB) until it has room: \(e)")
            }
            memoryChunks.withLock { $0.put(index, raw) }
        } catch {
            let msg = "cannot cache chunk \(rec.id): \(error)"
            Log.error(msg)
            throw FSError.io(msg)
        }
        stats.chunksFetched.add(1, ordering: .relaxed)
        stats.rawBytesFetched.add(UInt64(raw.count), ordering: .relaxed)
    }
}

/// Chunks held in memory while the cache is full, bounded by bytes. When over the limit, chunks
/// a reader has already used go first (least recently used first), then, only if still over,
/// the oldest unused ones. Read-ahead stops before it would push out an unused one
/// (`roomForUnused`), so what it fetched stays until a reader takes it.
struct MemoryChunks {
    struct Held {
        var bytes: [UInt8]
        var tick: UInt64
        var used: Bool
    }

    let limit: Int
    private(set) var held: [UInt32: Held] = [:]
    private(set) var bytes = 0
    private var unusedBytes = 0
    private var tick: UInt64 = 0

    init(limit: Int) { self.limit = limit }

    func holds(_ index: UInt32) -> Bool { held[index] != nil }

    /// The chunk's bytes, marked used (and most recent).
    mutating func use(_ index: UInt32) -> [UInt8]? {
        guard var h = held[index] else { return nil }
        tick += 1
        h.tick = tick
        if !h.used { h.used = true; unusedBytes -= h.bytes.count }
        held[index] = h
        return h.bytes
    }

    /// Whether `size` more unused bytes fit without dropping other unused chunks.
    func roomForUnused(_ size: Int) -> Bool { unusedBytes + size <= limit }

    mutating func put(_ index: UInt32, _ data: [UInt8]) {
        if let old = held.removeValue(forKey: index) {
            bytes -= old.bytes.count
            if !old.used { unusedBytes -= old.bytes.count }
        }
        tick += 1
        held[index] = Held(bytes: data, tick: tick, used: false)
        bytes += data.count
        unusedBytes += data.count
        while bytes > limit && held.count > 1 {
            // Used chunks before unused ones, older before newer; never the one just put.
            var victim: (key: UInt32, used: Bool, tick: UInt64)?
            for (k, h) in held where k != index {
                if let v = victim, (v.used && !h.used) || (v.used == h.used && v.tick <= h.tick) { continue }
                victim = (k, h.used, h.tick)
            }
            guard let v = victim, let gone = held.removeValue(forKey: v.key) else { break }
            bytes -= gone.bytes.count
            if !gone.used { unusedBytes -= gone.bytes.count }
        }
    }
}

/// Counters for status and logs.
public final class FetchStats: Sendable {
    public let requests = Atomic<UInt64>(0)
    public let chunksFetched = Atomic<UInt64>(0)
    public let bytesFetched = Atomic<UInt64>(0)
    public let rawBytesFetched = Atomic<UInt64>(0)
    public let hits = Atomic<UInt64>(0)
    public let joined = Atomic<UInt64>(0)
    public let errors = Atomic<UInt64>(0)
    public let corrupt = Atomic<UInt64>(0)
    /// Cache entries hashed on first use and found good.
    public let verified = Atomic<UInt64>(0)
    /// Cache entries found damaged (removed and fetched again).
    public let damaged = Atomic<UInt64>(0)
    /// Reads that waited for a chunk (its download, or the first-use hash of its cache entry),
    /// and the time they waited in all, in ns: what a workload lost to the network and hashing.
    public let demandWaits = Atomic<UInt64>(0)
    public let demandWaitNs = Atomic<UInt64>(0)

    public var summary: String {
        "fetched \(chunksFetched.load(ordering: .relaxed)) chunks in \(requests.load(ordering: .relaxed)) requests, "
            + "\(bytesFetched.load(ordering: .relaxed)) bytes compressed (\(rawBytesFetched.load(ordering: .relaxed)) raw); "
            + "\(hits.load(ordering: .relaxed)) cache opens, \(joined.load(ordering: .relaxed)) joined fetches, "
            + "\(errors.load(ordering: .relaxed)) fetch errors, \(corrupt.load(ordering: .relaxed)) corrupt chunks refused, "
            + "\(verified.load(ordering: .relaxed)) cache entries verified, \(damaged.load(ordering: .relaxed)) damaged entries refetched"
    }
}
