// The chunk cache's size limit: an in-memory LRU index over chunks/, eviction, pins, and the
// maintenance operations behind `envmount cache` (usage, prune, clear, verify).
//
// Last use survives restarts through the entry file's mtime, not its atime: many file systems are
// mounted noatime or relatime (atime moves at most once a day there), and any reader (backup,
// `envmount cache verify`, a stray grep) would reorder an atime-based LRU. `open` bumps both times
// to now with utimensat at most once an hour per entry, so a busy mount costs at most one extra
// syscall per entry per hour. The scan at open still takes max(atime, mtime), so an atime the
// kernel did move is not wasted; verify reads with O_NOATIME so checking is not taken for use.
import Glibc
import SysKit
import EnvFormat

/// What the cache holds (chunk entries only; manifests and refs are not counted).
public struct CacheUsage: Sendable, Equatable {
    public var entries: Int
    public var bytes: UInt64
    /// The limit this `ChunkCache` enforces (nil: none; the limit is a per-mount option).
    public var limit: UInt64?
    /// Bytes kept beside the chunks that count against the limit (materialized trees).
    public var otherBytes: UInt64 = 0
}

/// Entries removed by an eviction, `prune` or `clear`.
public struct CacheRemoval: Sendable, Equatable {
    public var entries: Int = 0
    public var bytes: UInt64 = 0
    public init(entries: Int = 0, bytes: UInt64 = 0) { self.entries = entries; self.bytes = bytes }
}

/// Progress and result of `ChunkCache.verify`.
public struct CacheVerification: Sendable, Equatable {
    /// Entries found in chunks/ when verification started.
    public var total = 0
    /// Entries read so far (good + bad + vanished).
    public var checked = 0
    public var good = 0
    /// Entries whose SHA-256 did not match their name, or that could not be read; removed.
    public var bad = 0
    /// Entries evicted or removed by someone else while verification ran.
    public var vanished = 0
    /// Bytes read and hashed.
    public var bytes: UInt64 = 0
}

/// The LRU index, guarded by `ChunkCache.index`.
struct CacheIndex {
    struct Entry {
        var size: UInt64
        /// Last use, wall-clock ns (made strictly increasing within this process).
        var tick: Int64
        /// When the file's mtime was last set to mark a use.
        var persisted: Int64
    }

    var entries: [ChunkID: Entry] = [:]
    /// Sum of `entries` sizes.
    var bytes: UInt64 = 0
    /// Bytes outside chunks/ that count against the limit (`setOtherBytes`).
    var other: UInt64 = 0
    /// Bytes of inserts under way (counted against the limit before they land).
    var reserved: UInt64 = 0
    /// Pin counts; a pinned id is never evicted (it need not be cached yet).
    var pins: [ChunkID: Int] = [:]
    /// Inserts under way per id, from before the entry's file is renamed into place until it is
    /// in `entries`. Such an id is never evicted, removed or learned from disk: between the
    /// rename and `endInsert` its file exists while the index does not know it yet, and an
    /// eviction or a learn in that window would leave the index counting a file that is gone.
    var inserting: [ChunkID: Int] = [:]
    var lastTick: Int64 = 0
    /// False until the background scan has been merged.
    var scanned = false
    /// Ids removed before the scan was merged, so the scan does not bring them back.
    var forgottenDuringScan: Set<ChunkID> = []

    mutating func nextTick(_ now: Int64) -> Int64 {
        lastTick = max(now, lastTick + 1)
        return lastTick
    }

    mutating func drop(_ id: ChunkID) {
        if let e = entries.removeValue(forKey: id) { bytes -= e.size }
        if !scanned { forgottenDuringScan.insert(id) }
    }

    mutating func put(_ id: ChunkID, _ e: Entry) {
        if let old = entries.updateValue(e, forKey: id) { bytes -= old.size }
        bytes += e.size
    }
}

extension ChunkCache {
    /// How long an entry's mtime may lag behind its last use (one utimensat per entry per hour).
    static let persistIntervalNs: Int64 = 3600 * 1_000_000_000

    // MARK: public API

    /// Chunk entries and bytes (waits for the scan started at open).
    public var usage: CacheUsage {
        waitForScan()
        return index.withLock { CacheUsage(entries: $0.entries.count, bytes: $0.bytes, limit: limit, otherBytes: $0.other) }
    }

    /// Declares `bytes` kept in the cache directory beside the chunks (materialized trees): with
    /// a limit, chunks are evicted until chunks plus these bytes fit, and inserts keep it so.
    public func setOtherBytes(_ bytes: UInt64) {
        waitForScan()
        index.withLock { ix in
            ix.other = bytes
            guard let limit else { return }
            let room = limit > bytes ? limit - bytes : 0
            if ix.bytes + ix.reserved > room { _ = evictLocked(&ix, atLeast: ix.bytes + ix.reserved - room) }
        }
    }

    /// Makes `ids` the first entries evicted (their bytes are kept elsewhere too, e.g. as files of
    /// a materialized tree); a later use puts an entry back in its place.
    public func demote(_ ids: [ChunkID]) {
        waitForScan()
        index.withLock { ix in
            var t = Int64.min
            for id in ids where ix.entries[id] != nil {
                ix.entries[id]!.tick = t
                t += 1
            }
        }
    }

    /// Waits until the entries present at open have been counted.
    public func waitForScan() {
        startScan()
        scanDone.wait()
    }

    /// Whether the startup scan of chunks/ has finished (so `usage` will not wait).
    public var isScanned: Bool { scanDone.wait(timeout: .now()) == .success }

    /// Protects `id` from eviction until a matching `unpin` (pins are counted). The id need not be
    /// cached yet: pin before fetching, read, then unpin.
    public func pin(_ id: ChunkID) {
        index.withLock { $0.pins[id, default: 0] += 1 }
    }

    public func unpin(_ id: ChunkID) {
        index.withLock { ix in
            guard let n = ix.pins[id] else { return }
            ix.pins[id] = n > 1 ? n - 1 : nil
        }
    }

    /// Runs `body` with `id` pinned.
    public func withPin<T, E: Error>(_ id: ChunkID, _ body: () throws(E) -> T) throws(E) -> T {
        pin(id)
        defer { unpin(id) }
        return try body()
    }

    /// Evicts least-recently-used unpinned entries until chunk bytes are at most `bytes`.
    @discardableResult
    public func prune(to bytes: UInt64) -> CacheRemoval {
        waitForScan()
        return index.withLock { ix in
            ix.bytes > bytes ? evictLocked(&ix, atLeast: ix.bytes - bytes) : CacheRemoval()
        }
    }

    /// Removes every chunk entry except pinned ones; with `includeMetadata`, also the cached
    /// manifests and refs (which let an environment mount without its store).
    @discardableResult
    public func clear(includeMetadata: Bool = false) -> CacheRemoval {
        waitForScan()
        var removed = CacheRemoval()
        index.withLock { ix in
            for (shard, name) in listEntryFiles() {
                let p = "\(root)/chunks/\(shard)/\(name)"
                if let id = ChunkID(hex: name), ix.pins[id] != nil || ix.inserting[id] != nil { continue }
                guard let st = try? FS.lstat(p) else { continue }
                do { try FS.removeTree(p) } catch { continue }
                removed.entries += 1
                removed.bytes += st.size
                if let id = ChunkID(hex: name) { ix.drop(id) }
            }
            for id in Array(ix.entries.keys) where ix.pins[id] == nil && ix.inserting[id] == nil { ix.drop(id) }
        }
        if includeMetadata {
            for sub in ["manifests", "refs"] {
                for name in (try? FS.listDirectory("\(root)/\(sub)")) ?? [] { try? FS.removeTree("\(root)/\(sub)/\(name)") }
            }
        }
        return removed
    }

    /// Re-reads every entry and checks that the SHA-256 of its bytes is its name; removes entries
    /// that fail (or cannot be read, or are misnamed). `progress` is called after each entry.
    @discardableResult
    public func verify(progress: (CacheVerification) -> Void = { _ in }) -> CacheVerification {
        waitForScan()
        let files = listEntryFiles()
        var r = CacheVerification()
        r.total = files.count
        progress(r)
        for (shard, name) in files {
            let p = "\(root)/chunks/\(shard)/\(name)"
            let id = ChunkID(hex: name)
            let wellNamed = id != nil && Self.isEntryName(name, shard: shard)
            var bad = !wellNamed
            if !bad {
                do {
                    let data = try Self.readWithoutAtime(p)
                    r.bytes += UInt64(data.count)
                    bad = ChunkID.of(data) != id!
                } catch let e as SystemError where e.errno == ENOENT {
                    r.vanished += 1
                    r.checked += 1
                    progress(r)
                    continue
                } catch {
                    bad = true
                }
            }
            if bad {
                index.withLock { ix in
                    // An insert under way renames good bytes over this file: leave it to that.
                    if let id, ix.inserting[id] != nil { return }
                    try? FS.removeTree(p)
                    if let id { ix.drop(id) }
                }
                r.bad += 1
            } else {
                r.good += 1
            }
            r.checked += 1
            progress(r)
        }
        return r
    }

    // MARK: used by ChunkCache.swift

    /// Notes a use of `id` (just opened at `path`); bumps the file's mtime at most once an hour.
    func markUsed(_ id: ChunkID, path: String) {
        let now = ProcessControl.wallClockNs()
        enum Next { case nothing, touch, learn }
        let next = index.withLock { ix -> Next in
            let t = ix.nextTick(now)
            guard var e = ix.entries[id] else { return .learn }
            e.tick = t
            let stale = now - e.persisted >= Self.persistIntervalNs
            if stale { e.persisted = now }
            ix.entries[id] = e
            return stale ? .touch : .nothing
        }
        switch next {
        case .nothing:
            return
        case .touch:
            try? FS.touch(path)
        case .learn:
            // Written by another process, or not scanned yet: learn its size now. The lstat runs
            // under the lock, as evictions unlink under it: a stat taken before the lock could
            // describe a file that an eviction removed meanwhile, and the index would then count
            // bytes that are not on disk, outside any reservation (so over the limit). An entry
            // this process is inserting is left to `endInsert`.
            var touch = false
            index.withLock { ix in
                guard ix.entries[id] == nil, ix.inserting[id] == nil, let st = try? FS.lstat(path) else { return }
                touch = now - max(st.mtimeNs, st.atimeNs) >= Self.persistIntervalNs
                ix.put(id, .init(size: st.size, tick: ix.nextTick(now), persisted: touch ? now : st.mtimeNs))
            }
            if touch { try? FS.touch(path) }
        }
    }

    /// After an open found no file: drops `id` from the index if its file is still gone, checked
    /// under the lock. Without the check, an insert that renamed the file and recorded it between
    /// the failed open and this call would be dropped, leaving a file the index no longer counts.
    func forgetIfGone(_ id: ChunkID, path: String) {
        index.withLock { ix in
            guard ix.entries[id] != nil || !ix.scanned, ix.inserting[id] == nil, !FS.exists(path) else { return }
            ix.drop(id)
        }
    }

    /// Marks an insert of `id` under way and, with a limit, makes room for `size` more bytes and
    /// reserves them, so usage plus reservations stays within the limit.
    func beginInsert(_ id: ChunkID, _ size: UInt64) {
        if limit != nil { waitForScan() }
        index.withLock { ix in
            ix.inserting[id, default: 0] += 1
            guard let limit else { return }
            // The entry being replaced (if any) cannot be evicted now (it is `inserting`), and its
            // bytes are replaced by this insert's.
            let existing = ix.entries[id]?.size ?? 0
            let after = ix.bytes - existing + ix.reserved + size + ix.other
            if after > limit {
                // Evict a little more than needed so the sort in evictLocked is paid once per batch.
                let slack = min(limit / 50, 256 << 20)
                _ = evictLocked(&ix, atLeast: after - limit + slack)
            }
            ix.reserved += size
        }
    }

    /// Ends an insert begun by `beginInsert`; when it landed, records the entry as just used.
    func endInsert(_ id: ChunkID, _ size: UInt64, landed: Bool) {
        let now = ProcessControl.wallClockNs()
        index.withLock { ix in
            if limit != nil { ix.reserved -= size }
            if let n = ix.inserting[id] { ix.inserting[id] = n > 1 ? n - 1 : nil }
            if landed { ix.put(id, .init(size: size, tick: ix.nextTick(now), persisted: now)) }
        }
    }

    /// After ENOSPC/EDQUOT: evicts a batch of unpinned entries — 5 % of the limit or 64 MiB,
    /// whichever is larger, but no more than half of what is cached unless `needed` asks for more.
    func evictForSpace(needed: UInt64) -> CacheRemoval {
        waitForScan()
        return index.withLock { ix in
            let batch = max(64 << 20, (limit ?? 0) / 20)
            return evictLocked(&ix, atLeast: max(needed, min(batch, ix.bytes / 2)))
        }
    }

    /// Unlinks least-recently-used unpinned entries until `atLeast` bytes are freed or none is
    /// left. Runs under the index lock so no open or insert sees a half-evicted entry. An entry
    /// a reader still has open stays readable through its fd (Linux frees it at the last close).
    func evictLocked(_ ix: inout CacheIndex, atLeast: UInt64) -> CacheRemoval {
        var removed = CacheRemoval()
        guard atLeast > 0 else { return removed }
        var candidates: [(tick: Int64, id: ChunkID)] = []
        candidates.reserveCapacity(ix.entries.count)
        for (id, e) in ix.entries where ix.pins[id] == nil && ix.inserting[id] == nil { candidates.append((e.tick, id)) }
        candidates.sort { $0.tick < $1.tick }
        for c in candidates {
            if removed.bytes >= atLeast { break }
            let size = ix.entries[c.id]?.size ?? 0
            do {
                try FS.unlink(path(of: c.id))
                removed.entries += 1
                removed.bytes += size
            } catch let e as SystemError where e.errno == ENOENT {
                // Removed by another process sharing the directory: only the count was stale.
            } catch {
                continue
            }
            ix.drop(c.id)
        }
        return removed
    }

    /// Counts the entries present at open: one listDirectory per shard and one lstat per entry.
    func scanEntries() {
        var found: [ChunkID: CacheIndex.Entry] = [:]
        for (shard, name) in listEntryFiles() {
            guard Self.isEntryName(name, shard: shard), let id = ChunkID(hex: name),
                  let st = try? FS.lstat("\(root)/chunks/\(shard)/\(name)"), st.kind == .regular else { continue }
            found[id] = .init(size: st.size, tick: max(st.atimeNs, st.mtimeNs), persisted: st.mtimeNs)
        }
        index.withLock { ix in
            for (id, e) in found where !ix.forgottenDuringScan.contains(id) {
                if var cur = ix.entries[id] {
                    // Used or inserted while the scan ran: keep the newer times.
                    cur.tick = max(cur.tick, e.tick)
                    cur.persisted = max(cur.persisted, e.persisted)
                    ix.entries[id] = cur
                } else {
                    ix.put(id, e)
                }
            }
            ix.scanned = true
            ix.forgottenDuringScan = []
        }
    }

    /// (shard, name) of every file under chunks/.
    func listEntryFiles() -> [(String, String)] {
        var out: [(String, String)] = []
        let chunks = root + "/chunks"
        for shard in (try? FS.listDirectory(chunks)) ?? [] {
            for name in (try? FS.listDirectory(chunks + "/" + shard)) ?? [] { out.append((shard, name)) }
        }
        return out
    }

    /// 64 lower-case hex digits starting with the shard's two (what `path(of:)` writes).
    static func isEntryName(_ name: String, shard: String) -> Bool {
        var n = 0
        for c in name.utf8 {
            guard (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) else { return false }
            n += 1
        }
        return n == 64 && name.utf8.starts(with: shard.utf8) && shard.utf8.count == 2
    }

    static func readWithoutAtime(_ path: String) throws -> [UInt8] {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path, O_RDONLY | FS.openNoAtime)
        } catch let e as SystemError where e.errno == EPERM {
            fd = try FileDescriptor.open(path, O_RDONLY) // not the owner: O_NOATIME is refused
        }
        defer { fd.close() }
        return try fd.readAll()
    }
}
