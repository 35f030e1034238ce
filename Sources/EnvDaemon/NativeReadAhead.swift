import EnvFetch
import EnvFormat
import EnvFS
import Glibc
import Synchronization
import SysKit

/// Reads a profile's bytes ahead from a native mount's materialized tree into the page cache,
/// in the profile's order, on a few threads, while the workload starts.
///
/// A native mount is served by the kernel from local disk, so once the page cache is cold (a
/// reboot, another job's data in between) the workload's imports wait on the disk one read at a
/// time, exactly as they would from a local copy. The profile says which bytes they will read
/// and in which order: reading those ahead, several at a time, is what `warm` does for a
/// FUSE-served mount. Nothing is served from here: it only fills the page cache with the tree's
/// own files (the tree the mount has just checked), so it cannot change what a reader sees.
///
/// Each thread asks for one range at a time (`posix_fadvise(WILLNEED)`, at most `pieceBytes`)
/// and waits for it with a one-byte read of its last page, so the reads in flight stay at about
/// one per thread and the workload's own reads are not queued behind the whole profile.
final class NativeReadAhead: Sendable {
    /// The reads wait on the disk, not the CPU: more threads than cores keep more in flight.
    /// Cold small imports, alternating pairs: 8 threads 1.69 vs 1.90 s without (7 of 8 pairs
    /// faster); 4 and 2 threads gained less.
    static let threads = 8
    static let pieceBytes: UInt64 = 4 << 20

    /// Bytes of one file (manifest entry) to read ahead.
    struct Range: Equatable, Sendable {
        var entry: Int
        var offset: UInt64
        var length: UInt64
    }

    final class Stats: Sendable {
        let files = Atomic<Int>(0)
        let bytes = Atomic<UInt64>(0)
        let plannedBytes = Atomic<UInt64>(0)
        let finished = Atomic<Bool>(false)
        /// The page cache held the profile's bytes already (at least half of a sample of its
        /// ranges): nothing read.
        let alreadyCached = Atomic<Bool>(false)
        let sampled = Atomic<Int>(0)
        let sampledCached = Atomic<Int>(0)
    }

    /// Ranges looked at, spread over the plan, before reading anything: when the page cache
    /// holds at least half of them, this is a second job on a warm machine, and nothing is read.
    /// Not all of them: a profile holds more than one workload reads (whole chunks; `default`
    /// imports every top-level package), and what no job touched may have left the page cache
    /// since (on the test VM a DAMON `pageout` scheme reclaims what went untouched for a minute).
    /// Reading those again beside a second job's `import torch` made it 1.32× the source venv.
    static let sampleRanges = 32

    let stats = Stats()
    private let root: String
    private let manifest: Manifest
    private let stopped = Atomic<Bool>(false)

    /// `root`: the materialized tree's directory.
    init(root: String, manifest: Manifest) {
        self.root = root
        self.manifest = manifest
    }

    func stop() { stopped.store(true, ordering: .relaxed) }

    /// The file ranges of a profile's chunks, in the order the profile first reads each chunk:
    /// for every chunk, the bytes of each file lying in it (files for which `present` holds,
    /// owners of their inode only), a file's ranges joined where they meet; at most `limit`
    /// bytes in all.
    static func plan(_ m: Manifest, profile chunks: [UInt32], present: (Int) -> Bool, limit: UInt64) -> [Range] {
        var out: [Range] = []
        var lastOf: [Int: Int] = [:]
        var total: UInt64 = 0
        for group in rangesByChunk(m, chunks: chunks, present: present) {
            for r in group {
                guard total < limit else { return out }
                let r = Range(entry: r.entry, offset: r.offset, length: min(r.length, limit - total))
                total += r.length
                if let k = lastOf[r.entry], out[k].offset + out[k].length == r.offset {
                    out[k].length += r.length
                } else {
                    lastOf[r.entry] = out.count
                    out.append(r)
                }
            }
        }
        return out
    }

    /// Python sources that have their bytecode beside them (`pkg/mod.py` with
    /// `pkg/__pycache__/mod.<tag>.pyc`): an import reads the bytecode and only stats the source,
    /// so the profile's read-ahead leaves them out (they are 79 of the small venv's 403 MB).
    static func sourcesWithBytecode(_ m: Manifest) -> Set<Int> {
        struct Key: Hashable { var directory: Int; var stem: ArraySlice<UInt8> }
        var compiled = Set<Key>()
        let cacheName = Array("__pycache__".utf8), pyc = Array(".pyc".utf8), py = Array(".py".utf8)
        for i in m.entries.indices where m.entries[i].kind == .regular {
            let parent = Int(m.entries[i].parent)
            let n = m.name(i)
            guard parent != 0, n.count > pyc.count, n.suffix(pyc.count).elementsEqual(pyc),
                  m.name(parent).elementsEqual(cacheName), let dot = n.firstIndex(of: UInt8(ascii: ".")) else { continue }
            compiled.insert(Key(directory: Int(m.entries[parent].parent), stem: n[..<dot]))
        }
        var out = Set<Int>()
        for i in m.entries.indices where m.entries[i].kind == .regular {
            let n = m.name(i)
            guard n.count > py.count, n.suffix(py.count).elementsEqual(py) else { continue }
            if compiled.contains(Key(directory: Int(m.entries[i].parent), stem: n.dropLast(py.count))) { out.insert(i) }
        }
        return out
    }

    /// For each of `chunks` (the first time it is named; later ones get nothing), the ranges of
    /// the files lying in it, in the chunk's order.
    static func rangesByChunk(_ m: Manifest, chunks: [UInt32], present: (Int) -> Bool) -> [[Range]] {
        var position = [Int32](repeating: -1, count: m.chunks.count)
        for (p, c) in chunks.enumerated() where Int(c) < m.chunks.count && position[Int(c)] < 0 { position[Int(c)] = Int32(p) }
        // Per position: (offset in the chunk, the file's range).
        var perChunk = [[(UInt32, Range)]](repeating: [], count: chunks.count)
        for i in m.entries.indices {
            let e = m.entries[i]
            guard e.kind == .regular, Int(e.owner) == i, e.size > 0, present(i) else { continue }
            var offset: UInt64 = 0
            for s in m.fileSpans(i) {
                let span = m.spans[s]
                defer { offset += UInt64(span.length) }
                guard span.chunk != Manifest.Span.zeros, position[Int(span.chunk)] >= 0 else { continue }
                perChunk[Int(position[Int(span.chunk)])].append((span.offset, Range(entry: i, offset: offset, length: UInt64(span.length))))
            }
        }
        return perChunk.map { $0.sorted { $0.0 < $1.0 }.map(\.1) }
    }

    /// At most half the memory available now: read-ahead must not push out what is running.
    static func defaultLimit() -> UInt64 {
        (ProcessControl.availableMemoryBytes() ?? (2 << 30)) / 2
    }

    private func path(_ r: Range) -> PathBytes { root.pathBytes + [UInt8(ascii: "/")] + manifest.path(r.entry) }

    /// Of `sampleRanges` ranges spread over `ranges`, how many have their first and last pages
    /// in the page cache, and how many were looked at.
    func cachedSample(_ ranges: [Range]) -> (cached: Int, of: Int) {
        let step = max(1, ranges.count / Self.sampleRanges)
        var cached = 0, looked = 0
        for k in stride(from: 0, to: ranges.count, by: step) {
            let r = ranges[k]
            looked += 1
            guard let fd = try? FileDescriptor.open(path(r), O_RDONLY | O_NOFOLLOW) else { continue }
            defer { fd.close() }
            if fd.isPageCached(at: r.offset) == true, fd.isPageCached(at: r.offset + r.length - 1) == true { cached += 1 }
        }
        return (cached, looked)
    }

    /// Reads one range into the page cache unless its first and last pages are there already:
    /// asks for it a piece at a time and waits for each (its last page is read with it). False
    /// when the file cannot be opened.
    private func read(_ r: Range) -> Bool {
        guard let fd = try? FileDescriptor.open(path(r), O_RDONLY | O_NOFOLLOW) else { return false }
        defer { fd.close() }
        // Already there (a job before this one read it): nothing to ask for.
        if fd.isPageCached(at: r.offset) == true && fd.isPageCached(at: r.offset + r.length - 1) == true { return true }
        var probe = [UInt8](repeating: 0, count: 1)
        var at = r.offset
        let end = r.offset + r.length
        while at < end, !stopped.load(ordering: .relaxed) {
            let n = min(Self.pieceBytes, end - at)
            fd.willNeed(offset: at, length: n)
            _ = try? fd.pread(into: &probe, at: 0, count: 1, offset: at + n - 1)
            at += n
            stats.bytes.add(n, ordering: .relaxed)
        }
        return true
    }

    /// `envmount warm` on a mount served from a complete tree: every chunk is on local disk
    /// already, so warming means the page cache. Reads the tree's files lying in each of
    /// `chunks`, a chunk at a time on each of `threads` threads, and completes `job` per chunk
    /// (`bytes(c)` each); past `limit` bytes the rest is completed unread, counting 0 bytes
    /// (logged).
    func warm(chunks: [UInt32], job: FetchJob, bytes: @escaping @Sendable (UInt32) -> UInt64, limit: UInt64, threads: Int = threads) {
        var seen = Set<UInt32>()
        let unique = chunks.filter { seen.insert($0).inserted }
        let groups = Self.rangesByChunk(manifest, chunks: unique, present: { _ in true })
        let next = Atomic<Int>(0)
        let done = Atomic<UInt64>(0)
        let capped = Atomic<Bool>(false)
        for n in 0..<max(1, min(threads, unique.count)) {
            DetachedThread.start(name: "em-native-warm\(n)") { [self] in
                while true {
                    let k = next.add(1, ordering: .relaxed).oldValue
                    guard k < unique.count else { return }
                    guard !stopped.load(ordering: .relaxed), done.load(ordering: .relaxed) < limit else {
                        if !stopped.load(ordering: .relaxed), !capped.exchange(true, ordering: .relaxed) {
                            Log.info("warm \(job.label): stopped reading the tree into the page cache at \(formatBytes(limit)), half the memory available")
                        }
                        job.complete(bytes: 0, failed: nil)
                        continue
                    }
                    for r in groups[k] where read(r) { done.add(r.length, ordering: .relaxed) }
                    job.complete(bytes: bytes(unique[k]), failed: nil)
                }
            }
        }
    }

    /// Reads `ranges` ahead on `threads` threads, unless a sample of them is in the page cache
    /// already; returns at once.
    func start(_ ranges: [Range], threads: Int = threads) {
        stats.plannedBytes.store(ranges.reduce(0) { $0 + $1.length }, ordering: .relaxed)
        let sample = cachedSample(ranges)
        stats.sampled.store(sample.of, ordering: .relaxed)
        stats.sampledCached.store(sample.cached, ordering: .relaxed)
        if sample.of > 0 && 2 * sample.cached >= sample.of { stats.alreadyCached.store(true, ordering: .relaxed) }
        guard !ranges.isEmpty, !stats.alreadyCached.load(ordering: .relaxed) else {
            stats.finished.store(true, ordering: .releasing)
            return
        }
        let next = Atomic<Int>(0)
        let working = Atomic<Int>(min(threads, ranges.count))
        let counted = Mutex(Set<Int>())
        for n in 0..<min(threads, ranges.count) {
            DetachedThread.start(name: "em-native-ra\(n)") { [self] in
                defer {
                    if working.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { stats.finished.store(true, ordering: .releasing) }
                }
                while !stopped.load(ordering: .relaxed) {
                    let k = next.add(1, ordering: .relaxed).oldValue
                    guard k < ranges.count else { return }
                    let r = ranges[k]
                    guard read(r) else { continue }
                    if counted.withLock({ $0.insert(r.entry).inserted }) { stats.files.add(1, ordering: .relaxed) }
                }
            }
        }
    }
}

extension NativeReadAhead {
    /// Fetches profile `name` from the store on a thread of its own, then reads its bytes ahead
    /// from `tree` (only the files a partial tree holds). An absent profile reads nothing.
    static func begin(profile name: String, tree: MaterializedTree, contents: NativeServing.TreeContents?,
                      service: MountService) -> NativeReadAhead {
        let ra = NativeReadAhead(root: tree.path, manifest: tree.manifest)
        // Reported (under way) from the start, so `status` never shows it done before it began;
        // withdrawn when the store has no such profile.
        service.setNativeReadAhead(profile: name, ra.stats)
        DetachedThread.start(name: "em-native-profile") {
            let chunks: [UInt32]
            do { chunks = try service.profileChunks(name) } catch {
                service.setNativeReadAhead(profile: name, nil)
                if error is ProfileNotFound {
                    Log.info("no profile \(name) for this revision: nothing read ahead from the tree")
                } else {
                    Log.error("cannot read profile \(name) ahead from the tree: \(error)")
                }
                return
            }
            let files = contents?.partial == true ? contents?.files : nil
            let sources = sourcesWithBytecode(tree.manifest)
            let ranges = plan(tree.manifest, profile: chunks, present: { !sources.contains($0) && (files?.contains($0) ?? true) },
                              limit: defaultLimit())
            ra.start(ranges)
            let what = "profile \(name): \(ranges.count) ranges of the tree's files, \(formatBytes(ra.stats.plannedBytes.load(ordering: .relaxed)))"
            let sample = "\(ra.stats.sampledCached.load(ordering: .relaxed)) of \(ra.stats.sampled.load(ordering: .relaxed)) sampled ranges in the page cache"
            Log.info(ra.stats.alreadyCached.load(ordering: .relaxed) ? "\(what); \(sample): nothing read ahead" : "reading \(what) ahead into the page cache (\(sample))")
        }
        return ra
    }
}
