import Dispatch
import EnvCache
import EnvFetch
import EnvFormat
import EnvPublish
import EnvStore
import Foundation
import Synchronization
import SysKit
import TestSupport
import XCTest

/// The fetch machinery on its own, with no filesystem above it: a tree published into a memory
/// store, a chunk cache in a temporary directory, a fetcher and a pool of two threads.
final class FetchPoolTests: XCTestCase {
    var dir = ""
    var store: MemoryStore!
    var manifest: Manifest!
    var fetcher: ChunkFetcher!
    var pool: FetchPool!
    /// The store's GET count once the test's fixture is set up (publishing reads too).
    var base = 0
    var gets: Int { store.getCount - base }

    override func setUpWithError() throws {
        dir = Servers.makeTempDir("fetch")
        try FS.makeDirectories(dir + "/src/pkg")
        for (i, size) in [300_000, 200_000, 120_000].enumerated() {
            try FS.writeFileAtomically(dir + "/src/pkg/f\(i).bin", randomBytes(size, seed: UInt64(40 + i)), mode: 0o644)
        }
        store = MemoryStore(latency: .remote)
        var po = PublishOptions(env: "fetch")
        po.chunking = ChunkingParams(minSize: 4 << 10, avgSize: 16 << 10, maxSize: 64 << 10)
        po.workers = 2
        let ref = try Publisher(store: store, options: po, warn: { _ in }).publish(source: dir + "/src").ref
        manifest = try Manifest.decode(try store.get(Ref.manifestKey(ref.manifest)))
        XCTAssertGreaterThan(manifest.chunks.count, 12, "enough chunks for the windows below")
        let cache = try ChunkCache(directory: dir + "/cache", durable: false)
        fetcher = ChunkFetcher(store: store, cache: cache, manifest: manifest)
        pool = FetchPool(fetcher: fetcher, manifest: manifest, threads: 2)
        base = store.getCount
    }

    override func tearDown() {
        pool?.stop()
        try? FS.removeTree(dir)
    }

    /// Waits (the machine is shared and loaded) until `done` holds, up to 60 s.
    func waitUntil(_ what: String, _ done: () -> Bool) {
        let deadline = Date().addingTimeInterval(60)
        while !done() {
            if Date() > deadline { XCTFail("timed out waiting for \(what)"); return }
            usleep(5_000)
        }
    }

    func testStreamReadAheadFetchesExactlyTheNextWindowOfTheStream() {
        pool.streamReadAhead(after: 3, window: 5)
        waitUntil("chunks 4...8 cached") { (4...8).allSatisfy { fetcher.isCached(UInt32($0)) } }
        XCTAssertEqual(gets, 5, "one GET per chunk of the window")
        for k in [0, 1, 2, 3, 9, 10] { XCTAssertFalse(fetcher.isCached(UInt32(k)), "chunk \(k) is outside the window") }
    }

    func testNoStreamReadAheadWithAZeroWindowOrAfterAMissTheProfileCovers() {
        pool.streamReadAhead(after: 0, window: 0)
        XCTAssertEqual(pool.queuedReadAhead, 0)
        pool.addProfile([0, 1, 2])
        pool.streamReadAhead(after: 0, window: 8)
        XCTAssertEqual(pool.queuedReadAhead, 0, "a profile knows better than stream order")
        XCTAssertEqual(gets, 0)
        // A miss outside the profile: the workload went past what it recorded.
        pool.streamReadAhead(after: 5, window: 2)
        waitUntil("chunks 6 and 7 cached") { fetcher.isCached(6) && fetcher.isCached(7) }
        XCTAssertEqual(gets, 2)
    }

    func testAWarmJobFetchesEachChunkOnceAndReportsItsProgress() {
        let all = (0..<manifest.chunks.count).map { UInt32($0) }
        let job = pool.submit(label: "all", chunks: all + all.prefix(4))
        XCTAssertEqual(job.totalChunks, all.count, "duplicates counted once")
        waitUntil("the job to finish") { job.isFinished }
        XCTAssertEqual(job.doneChunks.load(ordering: .relaxed), all.count)
        XCTAssertEqual(job.failedChunks.load(ordering: .relaxed), 0)
        XCTAssertEqual(job.doneBytes.load(ordering: .relaxed), job.totalBytes)
        XCTAssertEqual(gets, all.count)
        XCTAssertTrue(all.allSatisfy { fetcher.isCached($0) })
        // Everything is cached now: a second job asks the store for nothing.
        let again = pool.submit(label: "again", chunks: all)
        waitUntil("the second job to finish") { again.isFinished }
        XCTAssertEqual(gets, all.count)
        XCTAssertEqual(pool.jobs.map(\.label), ["all", "again"])
    }

    func testAWarmJobWithTheStoreDownFailsEveryChunkAndSaysWhy() {
        store.setUnavailable(true)
        let job = pool.submit(label: "down", chunks: [0, 1, 2])
        waitUntil("the job to finish") { job.isFinished }
        XCTAssertEqual(job.failedChunks.load(ordering: .relaxed), 3)
        XCTAssertTrue(job.error?.contains("memory://") == true, String(describing: job.error))
        XCTAssertFalse(fetcher.isCached(0))
    }

    /// A reader's misses steer a queued job: it goes on from the chunk the reader missed, and
    /// fetches the chunks it jumped over last, unless the reader misses one of those too. One
    /// worker and a closed gate on the store make the order exact.
    func testAJobFollowsTheReaderAndFetchesWhatItSkippedLast() {
        let one = FetchPool(fetcher: fetcher, manifest: manifest, threads: 1)
        defer { one.stop() }
        let n = manifest.chunks.count
        var index: [String: Int] = [:]
        for (i, c) in manifest.chunks.enumerated() { index[c.id.objectKey] = i }
        store.setGate(closed: true)
        let job = one.submit(label: "profile", chunks: (0..<n).map { UInt32($0) })
        waitUntil("the worker to be fetching chunk 0") { store.getsInFlight == 1 }
        one.follow(0)                    // under way already: nothing to move
        one.follow(UInt32(n - 4))        // the reader is near the end of the profile
        one.follow(2)                    // ... and then misses one of the chunks it jumped over
        one.follow(UInt32(n + 10))       // not in any job
        XCTAssertEqual(one.stats.follows.load(ordering: .relaxed), 2)
        store.setGate(closed: false)
        waitUntil("the job to finish") { job.isFinished }
        let order = store.getLog.compactMap { index[$0] }
        XCTAssertEqual(order, [0] + Array(2..<n - 4) + Array(n - 4..<n) + [1],
                       "from the reader's chunk on, then what was skipped; each chunk once")
        XCTAssertEqual(job.doneChunks.load(ordering: .relaxed), n)
        XCTAssertEqual(job.failedChunks.load(ordering: .relaxed), 0)
        XCTAssertTrue((0..<n).allSatisfy { fetcher.isCached(UInt32($0)) })
    }

    func testConcurrentFetchesOfOneChunkMakeOneRequest() {
        let fetcher = fetcher!
        DispatchQueue.concurrentPerform(iterations: 8) { _ in try? fetcher.fetch(5) }
        XCTAssertEqual(gets, 1)
        XCTAssertTrue(fetcher.isCached(5))
        var buffer = [UInt8](repeating: 0, count: 16)
        XCTAssertNoThrow(try fetcher.read(5, offset: 0, count: 16, into: &buffer, at: 0))
        XCTAssertEqual(gets, 1, "read from the cache")
    }

    /// Two sequential reads of a file: the first starts the next 2 chunks, the second doubles
    /// the window and starts the 3 after those; nothing behind the reader or past the window.
    func testReadAheadWindowDoublesWhileReadsStaySequential() {
        let e = manifest.entries.filter { $0.kind == .regular }.max { $0.count < $1.count }!
        let first = Int(e.first)
        XCTAssertGreaterThan(e.count, 8)
        var config = ReadAheadConfig()
        config.initialChunks = 2
        config.maxChunks = 16
        let ra = ReadAhead(config: config, fetcher: fetcher, pool: pool)
        let spans = first..<first + Int(e.count)
        func chunk(_ s: Int) -> UInt32 { manifest.spans[s].chunk }
        let len0 = Int(manifest.spans[first].length)
        ra.observe(ino: 7, offset: 0, length: len0, lastSpan: first, spans: spans, manifest: manifest)
        ra.observe(ino: 7, offset: UInt64(len0), length: Int(manifest.spans[first + 1].length), lastSpan: first + 1,
                   spans: spans, manifest: manifest)
        waitUntil("spans 1...5 of the file cached") { (first + 1...first + 5).allSatisfy { fetcher.isCached(chunk($0)) } }
        XCTAssertEqual(gets, 5)
        XCTAssertFalse(fetcher.isCached(chunk(first)), "the reader's own chunk is not read ahead")
        XCTAssertFalse(fetcher.isCached(chunk(first + 6)), "past the doubled window")
    }

    func testAccessRecorderKeepsFirstTouchOrder() {
        let r = AccessRecorder(chunkCount: 10)
        for k: UInt32 in [3, 1, 3, 2, 1, 9, 3] { r.record(k) }
        XCTAssertEqual(r.chunks, [3, 1, 2, 9])
    }

    /// stop() returns only once no worker is inside a fetch, so a daemon that unmounts during a
    /// prefetch does not exit (and tear down the cache's locks) under a running worker, which
    /// crashed it before.
    func testStopWaitsForTheWorkersToReturn() {
        store.setGetDelay(microseconds: 300_000)
        pool.submit(label: "slow", chunks: (0..<UInt32(manifest.chunks.count)).map { $0 })
        waitUntil("a get under way") { store.getsInFlight > 0 }
        XCTAssertTrue(pool.stop(timeout: 30), "the workers returned")
        XCTAssertEqual(store.getsInFlight, 0, "no get still running after stop()")
        let after = store.getCount
        usleep(700_000)
        XCTAssertEqual(store.getCount, after, "no fetch started after stop()")
        XCTAssertLessThan(gets, manifest.chunks.count, "queued work was dropped")
    }
}
