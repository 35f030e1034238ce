// Background fetching: read-ahead, warm and profile prefetch share one pool of worker threads,
// each blocking on one store request at a time, so the pool size is the number of transfers in
// flight. Read-ahead is served before warm work; a demand read never waits in this queue (it
// fetches on its own FUSE thread and joins a pool fetch of the same chunk if one is running).
// Warm and profile jobs follow the reader: a demand miss on one of their queued chunks moves
// the job on to that chunk (`follow`).
import Dispatch
import Synchronization
import EnvFormat
import SysKit

/// A batch of chunks to fetch (a warm request or a profile), with progress for status and CLIs.
public final class FetchJob: Sendable {
    public let id: Int
    public let label: String
    public let totalChunks: Int
    public let totalBytes: UInt64
    public let startedNs: UInt64
    public let doneChunks = Atomic<Int>(0)
    public let doneBytes = Atomic<UInt64>(0)
    public let failedChunks = Atomic<Int>(0)
    let lastError = Mutex<String?>(nil)
    let finishedNs = Atomic<UInt64>(0)

    init(id: Int, label: String, totalChunks: Int, totalBytes: UInt64) {
        self.id = id
        self.label = label
        self.totalChunks = totalChunks
        self.totalBytes = totalBytes
        self.startedNs = monotonicNs()
        if totalChunks == 0 { finishedNs.store(startedNs, ordering: .relaxed) }
    }

    public var isFinished: Bool { finishedNs.load(ordering: .relaxed) != 0 }
    public var error: String? { lastError.withLock { $0 } }
    public var elapsedSeconds: Double {
        let end = isFinished ? finishedNs.load(ordering: .relaxed) : monotonicNs()
        return Double(end - startedNs) / 1e9
    }

    /// Seconds since the job finished (0 while it runs).
    public var secondsSinceFinished: Double {
        let f = finishedNs.load(ordering: .relaxed)
        return f == 0 ? 0 : Double(monotonicNs() - f) / 1e9
    }

    /// One chunk of the job done (`bytes` of it), or failed with the reason.
    public func complete(bytes: UInt64, failed: String?) {
        if let failed {
            failedChunks.add(1, ordering: .relaxed)
            lastError.withLock { $0 = failed }
        } else {
            doneBytes.add(bytes, ordering: .relaxed)
        }
        let n = doneChunks.add(1, ordering: .relaxed).newValue
        if n == totalChunks { finishedNs.store(monotonicNs(), ordering: .relaxed) }
    }
}

func monotonicNs() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

public final class FetchPool: Sendable {
    public enum Priority: Sendable { case readAhead, warm }

    struct Item { var chunk: UInt32; var job: FetchJob? }

    /// A job's chunks not yet handed to a worker: its list, in order, and the ranges of it still
    /// to take, the first range first. A reader that misses a chunk of a range moves the rest of
    /// that range to the front (`follow`).
    struct JobQueue {
        let job: FetchJob
        let chunks: [UInt32]
        /// Index in `chunks` of each chunk.
        let position: [UInt32: Int]
        var ranges: [Range<Int>]

        init(job: FetchJob, chunks: [UInt32]) {
            self.job = job
            self.chunks = chunks
            var position: [UInt32: Int] = [:]
            position.reserveCapacity(chunks.count)
            for (i, c) in chunks.enumerated() { position[c] = i }
            self.position = position
            ranges = chunks.isEmpty ? [] : [0..<chunks.count]
        }

        mutating func take() -> UInt32? {
            guard let r = ranges.first else { return nil }
            if r.count == 1 { ranges.removeFirst() } else { ranges[0] = r.lowerBound + 1..<r.upperBound }
            return chunks[r.lowerBound]
        }

        /// A reader needs `chunk` now: when it is still to be taken, the chunks from it to the end
        /// of its range go first, and those of the range before it go last. True when it moved.
        mutating func follow(_ chunk: UInt32) -> Bool {
            guard let p = position[chunk], let i = ranges.firstIndex(where: { $0.contains(p) }) else { return false }
            let r = ranges[i]
            if i == 0 && p == r.lowerBound { return false }
            ranges.remove(at: i)
            ranges.insert(p..<r.upperBound, at: 0)
            if p > r.lowerBound { ranges.append(r.lowerBound..<p) }
            return true
        }
    }

    struct Queues {
        var readAhead: [Item] = []
        var readAheadHead = 0
        /// Jobs with chunks still to take, oldest first.
        var pending: [JobQueue] = []
        var queuedReadAhead = Set<UInt32>()
        var jobs: [FetchJob] = []
        var nextJobID = 1
        var stopped = false
    }

    let fetcher: ChunkFetcher
    let chunkSizes: [UInt32]
    /// How often a reader's miss moved a queued job (`follow`).
    public let stats = PoolStats()
    private let queues = Mutex(Queues())
    private let available = DispatchSemaphore(value: 0)
    /// Entered by each worker thread while it runs: stop() waits on it, so no worker is still
    /// inside the fetcher or the cache while the process exits.
    private let running = DispatchGroup()
    public let threads: Int
    /// One bit per chunk of the profiles queued for prefetch: a miss on such a chunk does not
    /// start stream read-ahead (the profile brings what follows it).
    private let profileChunks: Mutex<[UInt64]>

    public init(fetcher: ChunkFetcher, manifest: Manifest, threads: Int) {
        self.fetcher = fetcher
        self.chunkSizes = manifest.chunks.map { $0.storedSize > 0 ? $0.storedSize : $0.rawSize }
        self.threads = threads
        self.profileChunks = Mutex([UInt64](repeating: 0, count: manifest.chunks.count / 64 + 1))
        for i in 0..<threads {
            running.enter()
            DetachedThread.start(name: "em-fetch-\(i)") { [self] in
                defer { running.leave() }
                self.work()
            }
        }
    }

    /// Stream read-ahead: a reader missed chunk `k`, so queue the next `window` chunks of the
    /// path-ordered stream. They hold the following files of the same package, which an import
    /// reads next; a lazy mount that waits for each miss in turn is bound by latency, not bandwidth.
    public func streamReadAhead(after k: UInt32, window: Int) {
        // A recorded profile knows what comes next better than stream order does; guessing on
        // top of it only competes with it for the link (measured: +70 MB, +1.4 s on torch). A
        // miss outside the profile is a part of the workload it did not record (the
        // publish-time profile imports each top-level package, not `scipy.linalg`): there the
        // reader would otherwise wait a round trip per chunk, one after another.
        guard window > 0, !inProfile(k) else { return }
        let end = min(Int(k) + window, chunkSizes.count - 1)
        guard end > Int(k) else { return }
        readAhead((Int(k) + 1...end).map { UInt32($0) }.filter { !fetcher.isCached($0) })
    }

    /// A reader missed chunk `k` (it is not cached and no worker has it): every queued job that
    /// still holds `k` takes it and the chunks after it next, and leaves the ones it skipped for
    /// last. A profile records every package a publish imported, in import order; a workload
    /// that imports only some of them (`import torch` in a venv whose profile also imports
    /// sympy and networkx first) would otherwise wait behind bytes it never reads. The reader's
    /// misses show where in the order it is; a miss on a skipped chunk moves it back to the front.
    public func follow(_ k: UInt32) {
        let moved = queues.withLock { q -> Bool in
            var moved = false
            for i in q.pending.indices where q.pending[i].follow(k) { moved = true }
            return moved
        }
        if moved { stats.follows.add(1, ordering: .relaxed) }
    }

    /// Marks chunks as a profile's, before the profile is queued with `submit`.
    public func addProfile(_ chunks: [UInt32]) {
        profileChunks.withLock { bits in
            for c in chunks where Int(c >> 6) < bits.count { bits[Int(c >> 6)] |= 1 << UInt64(c & 63) }
        }
    }

    /// Whether chunk `k` belongs to a profile queued for prefetch.
    public func inProfile(_ k: UInt32) -> Bool {
        profileChunks.withLock { Int(k >> 6) < $0.count && $0[Int(k >> 6)] & (1 << UInt64(k & 63)) != 0 }
    }

    /// Queues read-ahead of chunks not already queued; returns at once.
    public func readAhead(_ chunks: [UInt32]) {
        let added = queues.withLock { q -> Int in
            var n = 0
            for c in chunks where !q.queuedReadAhead.contains(c) {
                q.queuedReadAhead.insert(c)
                q.readAhead.append(Item(chunk: c, job: nil))
                n += 1
            }
            return n
        }
        for _ in 0..<added { available.signal() }
    }

    /// Queues a batch as one job, in the given order; returns the job to watch.
    @discardableResult
    public func submit(label: String, chunks: [UInt32]) -> FetchJob {
        let unique = Self.unique(chunks)
        let job = register(label: label, unique: unique, size: { UInt64(chunkSizes[Int($0)]) }, queued: true)
        for _ in unique { available.signal() }
        return job
    }

    /// A job this pool lists with its own (`jobs`, the control socket's progress) but whose
    /// chunks someone else does, calling `complete` for each with `size(chunk)`: a native
    /// mount's `warm`, which reads its tree into the page cache instead of fetching chunks.
    public func track(label: String, chunks: [UInt32], size: (UInt32) -> UInt64) -> FetchJob {
        register(label: label, unique: Self.unique(chunks), size: size, queued: false)
    }

    private static func unique(_ chunks: [UInt32]) -> [UInt32] {
        var seen = Set<UInt32>()
        return chunks.filter { seen.insert($0).inserted }
    }

    /// Lists a new job of `unique` chunks; `queued`: the pool's workers fetch them.
    private func register(label: String, unique: [UInt32], size: (UInt32) -> UInt64, queued: Bool) -> FetchJob {
        let bytes = unique.reduce(UInt64(0)) { $0 + size($1) }
        return queues.withLock { q -> FetchJob in
            let j = FetchJob(id: q.nextJobID, label: label, totalChunks: unique.count, totalBytes: bytes)
            q.nextJobID += 1
            q.jobs.append(j)
            if queued && !unique.isEmpty { q.pending.append(JobQueue(job: j, chunks: unique)) }
            return j
        }
    }

    public var jobs: [FetchJob] { queues.withLock { $0.jobs } }
    public func job(_ id: Int) -> FetchJob? { queues.withLock { q in q.jobs.first { $0.id == id } } }

    public var queuedReadAhead: Int { queues.withLock { $0.readAhead.count - $0.readAheadHead } }

    /// Stops the workers: queued work is dropped, and a chunk being fetched finishes. Waits up
    /// to `timeout` seconds for them (a fetch stuck on the network is left behind after that);
    /// true when every worker has returned.
    @discardableResult
    public func stop(timeout: Double = 10) -> Bool {
        queues.withLock { $0.stopped = true }
        for _ in 0..<threads { available.signal() }
        return running.wait(timeout: .now() + timeout) == .success
    }

    private func next() -> Item? {
        queues.withLock { q -> Item? in
            if q.stopped { return nil }
            if q.readAheadHead < q.readAhead.count {
                let it = q.readAhead[q.readAheadHead]
                q.readAheadHead += 1
                q.queuedReadAhead.remove(it.chunk)
                if q.readAheadHead > 4096 { q.readAhead.removeFirst(q.readAheadHead); q.readAheadHead = 0 }
                return it
            }
            while let first = q.pending.first {
                if let c = q.pending[0].take() { return Item(chunk: c, job: first.job) }
                q.pending.removeFirst()
            }
            return Item(chunk: UInt32.max, job: nil)   // a wake-up without work (stop)
        }
    }

    private func work() {
        while true {
            available.wait()
            guard let item = next() else { return }
            if item.chunk == UInt32.max { continue }
            do {
                try fetcher.fetch(item.chunk, speculative: item.job == nil)
                item.job?.complete(bytes: UInt64(chunkSizes[Int(item.chunk)]), failed: nil)
            } catch {
                item.job?.complete(bytes: 0, failed: error.description)
            }
        }
    }
}

/// Counters of the pool, for status and tests.
public final class PoolStats: Sendable {
    /// Reader misses that moved a queued job to where the reader is (`follow`).
    public let follows = Atomic<UInt64>(0)
}
