// The read path's source of chunk bytes: the disk cache first, else the store. A chunk that
// several readers want at once is fetched once (single flight); fetched bytes are decompressed
// and their SHA-256 compared with the chunk's id before anything is cached or returned.
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
    /// Chunks the cache had no room for, served from memory (a few, oldest dropped first).
    private let memoryChunks = Mutex<[UInt32: [UInt8]]>([:])
    static let memoryChunkLimit = 16
    private let lastErrorMessage = Mutex<String?>(nil)
    public let stats = FetchStats()

    /// The most recent fetch failure, for status.
    public var lastError: String? { lastErrorMessage.withLock { $0 } }

    /// Called when a reader needs a chunk that is not cached, before it is fetched.
    private let demandMissHandler = Mutex<(@Sendable (UInt32) -> Void)?>(nil)

    public func onDemandMiss(_ handler: @escaping @Sendable (UInt32) -> Void) {
        demandMissHandler.withLock { $0 = handler }
    }

    public init(store: any ObjectStore, cache: ChunkCache, manifest: Manifest,
                describe: @escaping @Sendable (UInt32) -> String = { "chunk \($0)" }) {
        self.store = store
        self.cache = cache
        self.chunks = manifest.chunks
        self.describe = describe
    }

    /// Where a chunk's bytes are: a cache file (the caller closes it), or memory when the cache
    /// could not take them (disk full of entries in use).
    public enum Source {
        case file(FileDescriptor)
        case memory([UInt8])
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
                stats.hits.add(1, ordering: .relaxed)
                return .file(fd)
            }
            if let bytes = memoryChunks.withLock({ $0[index] }) { return .memory(bytes) }
            demandMissHandler.withLock { $0 }?(index)
            try fetch(index)
        }
        throw FSError.io("chunk \(rec.id) (\(describe(index))) vanished from the cache after being fetched")
    }

    /// Whether chunk `index` is in the cache (one stat).
    public func isCached(_ index: UInt32) -> Bool {
        cache.contains(chunks[Int(index)].id, rawSize: chunks[Int(index)].rawSize)
    }

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

    /// Makes sure chunk `index` is in the cache; waits for a fetch already under way.
    public func fetch(_ index: UInt32) throws(FSError) {
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

    private func download(_ index: UInt32) throws(FSError) {
        let rec = chunks[Int(index)]
        if cache.contains(rec.id, rawSize: rec.rawSize) { return }
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
        } catch let e as CacheError {
            // Nothing could be evicted (all in use): serve from memory rather than fail the read.
            Log.error("cache full, serving chunk \(rec.id) from memory: \(e)")
            memoryChunks.withLock { m in
                if m.count >= Self.memoryChunkLimit, let k = m.keys.first { m.removeValue(forKey: k) }
                m[index] = raw
            }
        } catch {
            let msg = "cannot cache chunk \(rec.id): \(error)"
            Log.error(msg)
            throw FSError.io(msg)
        }
        stats.chunksFetched.add(1, ordering: .relaxed)
        stats.rawBytesFetched.add(UInt64(raw.count), ordering: .relaxed)
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

    public var summary: String {
        "fetched \(chunksFetched.load(ordering: .relaxed)) chunks in \(requests.load(ordering: .relaxed)) requests, "
            + "\(bytesFetched.load(ordering: .relaxed)) bytes compressed (\(rawBytesFetched.load(ordering: .relaxed)) raw); "
            + "\(hits.load(ordering: .relaxed)) cache opens, \(joined.load(ordering: .relaxed)) joined fetches, "
            + "\(errors.load(ordering: .relaxed)) fetch errors, \(corrupt.load(ordering: .relaxed)) corrupt chunks refused"
    }
}
