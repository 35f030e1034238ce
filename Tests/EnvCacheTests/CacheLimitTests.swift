import XCTest
import Foundation
import Glibc
import Synchronization
import SysKit
import EnvFormat
@testable import EnvCache

final class CacheLimitTests: XCTestCase {
    var dir = ""
    var mounted: String?

    override func setUpWithError() throws {
        dir = "/tmp/envmount-cachelimit-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FS.makeDirectories(dir, mode: 0o700)
    }

    override func tearDownWithError() throws {
        if let m = mounted {
            _ = try? run("/bin/umount", [m])
            mounted = nil
        }
        try? FS.removeTree(dir)
    }

    /// Distinct content for entry `i`.
    func chunk(_ i: Int, size: Int) -> [UInt8] {
        var b = [UInt8](repeating: UInt8(truncatingIfNeeded: i &* 31 &+ 7), count: size)
        for k in 0..<min(8, size) { b[k] = UInt8(truncatingIfNeeded: i >> (k * 8)) }
        return b
    }

    func isCached(_ c: ChunkCache, _ id: ChunkID) -> Bool { FS.exists(c.path(of: id)) }

    /// Sum of the sizes of the files under chunks/, measured on disk.
    func diskBytes(_ c: ChunkCache) throws -> UInt64 {
        var total: UInt64 = 0
        let chunks = c.directory + "/v1/chunks"
        for shard in try FS.listDirectory(chunks) {
            for name in try FS.listDirectory(chunks + "/" + shard) { total += try FS.lstat("\(chunks)/\(shard)/\(name)").size }
        }
        return total
    }

    func use(_ c: ChunkCache, _ id: ChunkID) throws {
        let fd = try XCTUnwrap(try c.open(id), "entry \(id) should be cached")
        fd.close()
    }

    // MARK: limit and LRU

    func testUsageStaysWithinLimitAndKeepsMostRecentlyOpened() throws {
        let size = 8 << 10, limit: UInt64 = 256 << 10
        let c = try ChunkCache(directory: dir, durable: false, limit: limit)
        var ids: [ChunkID] = []
        for i in 0..<300 {
            let b = chunk(i, size: size)
            let id = ChunkID.of(b)
            ids.append(id)
            try c.insert(id, b)
            // Entries 0..<4 are hot: opened after every insert, so they are never the least recent.
            for h in 0..<min(4, ids.count) { try use(c, ids[h]) }
            let u = c.usage
            XCTAssertLessThanOrEqual(u.bytes, limit, "usage after insert \(i)")
            if i % 25 == 0 { XCTAssertLessThanOrEqual(try diskBytes(c), limit, "disk bytes after insert \(i)") }
        }
        XCTAssertLessThanOrEqual(try diskBytes(c), limit)
        XCTAssertEqual(c.usage.bytes, try diskBytes(c), "index and disk agree")
        for h in 0..<4 { XCTAssertTrue(isCached(c, ids[h]), "hot entry \(h) was evicted") }
        // The newest inserts are kept; the old cold ones are gone.
        for i in 290..<300 { XCTAssertTrue(isCached(c, ids[i]), "recent entry \(i) was evicted") }
        for i in 4..<200 { XCTAssertFalse(isCached(c, ids[i]), "old entry \(i) should have been evicted") }
        XCTAssertGreaterThan(c.usage.entries, 20)
    }

    func testPinnedEntriesSurvivePressure() throws {
        let size = 8 << 10, limit: UInt64 = 128 << 10
        let c = try ChunkCache(directory: dir, durable: false, limit: limit)
        var pinned: [ChunkID] = []
        for i in 0..<3 {
            let b = chunk(i, size: size)
            let id = ChunkID.of(b)
            c.pin(id)
            c.pin(id) // counted: needs two unpins
            try c.insert(id, b)
            pinned.append(id)
        }
        for i in 3..<200 {
            let b = chunk(i, size: size)
            try c.insert(ChunkID.of(b), b)
            XCTAssertLessThanOrEqual(c.usage.bytes, limit)
        }
        for id in pinned { XCTAssertTrue(isCached(c, id), "pinned entry evicted") }
        c.prune(to: 0)
        for id in pinned { XCTAssertTrue(isCached(c, id), "pinned entry pruned") }
        XCTAssertEqual(c.usage.entries, 3)
        for id in pinned { c.unpin(id) }
        c.prune(to: 0)
        for id in pinned { XCTAssertTrue(isCached(c, id), "entry pinned twice, unpinned once, was pruned") }
        for id in pinned { c.unpin(id) }
        let r = c.prune(to: 0)
        XCTAssertEqual(r.entries, 3)
        XCTAssertEqual(r.bytes, UInt64(3 * size))
        for id in pinned { XCTAssertFalse(isCached(c, id)) }
        XCTAssertEqual(c.usage, CacheUsage(entries: 0, bytes: 0, limit: limit))
    }

    func testConcurrentInsertsAndReadsKeepLimitAndIndexConsistent() throws {
        let size = 4 << 10, limit: UInt64 = 200 << 10
        let c = try ChunkCache(directory: dir, durable: false, limit: limit)
        let over = Atomic<Int>(0), missing = Atomic<Int>(0), failed = Atomic<Int>(0)
        let blobs = (0..<4).map { t in (0..<150).map { i in chunk(t * 1000 + i, size: size) } }
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for i in 0..<300 {
                let b = blobs[t][i % 150]
                let id = ChunkID.of(b)
                c.pin(id) // as a reader would: pinned from fetch to read
                do { try c.insert(id, b) } catch { failed.add(1, ordering: .relaxed) }
                if let fd = try? c.open(id) { fd.close() } else { missing.add(1, ordering: .relaxed) }
                c.unpin(id)
                if let fd = try? c.open(ChunkID.of(blobs[(t + 1) % 4][i % 150])) { fd.close() }
                if c.usage.bytes > limit { over.add(1, ordering: .relaxed) }
            }
        }
        XCTAssertEqual(failed.load(ordering: .relaxed), 0, "inserts failed")
        XCTAssertEqual(missing.load(ordering: .relaxed), 0, "a pinned entry was evicted before it was read")
        XCTAssertEqual(over.load(ordering: .relaxed), 0, "usage went over the limit")
        XCTAssertEqual(c.usage.bytes, try diskBytes(c), "index and disk disagree")
        XCTAssertLessThanOrEqual(c.usage.bytes, limit)
    }

    /// The window the flaky run above hit: a reader's open finds no file, an insert of the same
    /// id renames its file into place and records it, then the reader's "no file" drops the entry
    /// from the index, leaving a file the index does not count (so the limit no longer holds on
    /// disk). And a reader that learns an entry while an eviction removes it counts a file that is
    /// gone. Readers spin on ids while they are inserted and evicted, so those windows are hit.
    func testOpensRacingInsertsAndEvictionsKeepIndexEqualToDisk() throws {
        let size = 4 << 10, limit: UInt64 = 64 << 10
        let c = try ChunkCache(directory: dir, durable: false, limit: limit)
        let blobs = (0..<400).map { chunk(50_000 + $0, size: size) }
        let ids = blobs.map { ChunkID.of($0) }
        let next = Atomic<Int>(0), stop = Atomic<Bool>(false)
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            if t == 0 {
                for i in 0..<ids.count {
                    next.store(i, ordering: .sequentiallyConsistent)
                    try? c.insert(ids[i], blobs[i])
                }
                stop.store(true, ordering: .sequentiallyConsistent)
            } else {
                while !stop.load(ordering: .sequentiallyConsistent) {
                    let i = next.load(ordering: .sequentiallyConsistent)
                    // The id being inserted, and an older one being evicted.
                    for k in [i, i + 1, max(0, i - 14 - t)] where k < ids.count {
                        if let fd = try? c.open(ids[k]) { fd.close() }
                    }
                }
            }
        }
        XCTAssertEqual(c.usage.bytes, try diskBytes(c), "index and disk disagree")
        XCTAssertLessThanOrEqual(try diskBytes(c), limit)
    }

    func testEntryLargerThanLimitIsRefused() throws {
        let c = try ChunkCache(directory: dir, durable: false, limit: 1000)
        let b = chunk(1, size: 2000)
        XCTAssertThrowsError(try c.insert(ChunkID.of(b), b)) { e in
            guard case CacheError.full = e else { return XCTFail("expected CacheError.full, got \(e)") }
        }
        XCTAssertEqual(c.usage.entries, 0)
    }

    func testReopenedCacheRecoversUsageAndOrder() throws {
        let size = 4 << 10
        var ids: [ChunkID] = []
        do {
            let c = try ChunkCache(directory: dir, durable: false)
            for i in 0..<10 {
                let b = chunk(i, size: size)
                ids.append(ChunkID.of(b))
                try c.insert(ids[i], b)
            }
            // As if written hours ago, entry 0 first: on disk the LRU order is 0, 1, …, 9.
            let base = ProcessControl.wallClockNs() - 10 * 3600 * 1_000_000_000
            for i in 0..<10 { try FS.setMtime(c.path(of: ids[i]).pathBytes, ns: base + Int64(i) * 60_000_000_000) }
        }
        do {
            let c = try ChunkCache(directory: dir, durable: false, limit: UInt64(10 * size))
            XCTAssertEqual(c.usage, CacheUsage(entries: 10, bytes: UInt64(10 * size), limit: UInt64(10 * size)))
            try use(c, ids[0]) // the oldest on disk is used last before close; its mtime is bumped
            XCTAssertGreaterThan(try FS.lstat(c.path(of: ids[0])).mtimeNs, ProcessControl.wallClockNs() - 60_000_000_000)
        }
        do {
            let c = try ChunkCache(directory: dir, durable: false, limit: UInt64(10 * size))
            XCTAssertEqual(c.usage.entries, 10)
            XCTAssertEqual(c.usage.bytes, UInt64(10 * size))
            let b = chunk(100, size: size)
            try c.insert(ChunkID.of(b), b) // one eviction round
            XCTAssertTrue(isCached(c, ids[0]), "the entry used last before close was evicted")
            XCTAssertTrue(isCached(c, ChunkID.of(b)))
            XCTAssertFalse(isCached(c, ids[1]), "the least recently used entry survived")
            XCTAssertTrue(isCached(c, ids[9]))
            XCTAssertLessThanOrEqual(c.usage.bytes, UInt64(10 * size))
            XCTAssertEqual(c.usage.bytes, try diskBytes(c))
        }
    }

    func testOpenBumpsMtimeAtMostOnceAnHour() throws {
        let c = try ChunkCache(directory: dir, durable: false)
        let b = chunk(5, size: 100)
        let id = ChunkID.of(b)
        try c.insert(id, b)
        let old = ProcessControl.wallClockNs() - 2 * 3600 * 1_000_000_000
        try FS.setMtime(c.path(of: id).pathBytes, ns: old)
        try use(c, id) // inserted just now by this instance: no utimensat yet
        XCTAssertEqual(try FS.lstat(c.path(of: id)).mtimeNs, old)

        let d = try ChunkCache(directory: dir, durable: false)
        d.waitForScan()
        try use(d, id) // last use on disk is 2 h old: bumped
        let bumped = try FS.lstat(d.path(of: id)).mtimeNs
        XCTAssertGreaterThan(bumped, ProcessControl.wallClockNs() - 60_000_000_000)
        try FS.setMtime(d.path(of: id).pathBytes, ns: old)
        try use(d, id) // again within the hour: in memory only
        XCTAssertEqual(try FS.lstat(d.path(of: id)).mtimeNs, old)
    }

    func testEntriesWrittenByAnotherInstanceAreLearnedOnOpen() throws {
        let a = try ChunkCache(directory: dir, durable: false)
        let bcache = try ChunkCache(directory: dir, durable: false, limit: 1 << 20)
        XCTAssertEqual(bcache.usage.entries, 0)
        let b = chunk(7, size: 1000)
        try a.insert(ChunkID.of(b), b)
        try use(bcache, ChunkID.of(b))
        XCTAssertEqual(bcache.usage, CacheUsage(entries: 1, bytes: 1000, limit: 1 << 20))
        a.remove(ChunkID.of(b))
        XCTAssertNil(try bcache.open(ChunkID.of(b)))
        XCTAssertEqual(bcache.usage.entries, 0, "a vanished entry is dropped from the index")
    }

    // MARK: verify, prune, clear

    func testVerifyRemovesAlteredEntryAndKeepsGoodOnes() throws {
        let c = try ChunkCache(directory: dir, durable: false)
        var ids: [ChunkID] = []
        for i in 0..<6 {
            let b = chunk(i, size: 3000)
            ids.append(ChunkID.of(b))
            try c.insert(ids[i], b)
        }
        let fd = try FileDescriptor.open(c.path(of: ids[2]), O_WRONLY)
        try fd.pwriteAll(Array("junk".utf8), at: 100)
        fd.close()
        // A stray file with a name that is no chunk id is removed too.
        let stray = c.directory + "/v1/chunks/\(ids[0].hex.prefix(2))/not-a-chunk"
        try FS.writeFileAtomically(stray, [1, 2, 3])

        var seen: [Int] = []
        let r = c.verify { seen.append($0.checked) }
        XCTAssertEqual(r.total, 7)
        XCTAssertEqual(r.checked, 7)
        XCTAssertEqual(r.bad, 2)
        XCTAssertEqual(r.good, 5)
        XCTAssertEqual(seen.first, 0)
        XCTAssertEqual(seen.last, 7)
        XCTAssertFalse(isCached(c, ids[2]))
        XCTAssertFalse(FS.exists(stray))
        for i in [0, 1, 3, 4, 5] { XCTAssertTrue(isCached(c, ids[i])) }
        XCTAssertEqual(c.usage.entries, 5)
        XCTAssertEqual(c.usage.bytes, 5 * 3000)
        let again = c.verify()
        XCTAssertEqual(again.bad, 0)
        XCTAssertEqual(again.good, 5)
    }

    func testVerifyDoesNotCountAsUse() throws {
        let c = try ChunkCache(directory: dir, durable: false)
        let b = chunk(3, size: 3000)
        try c.insert(ChunkID.of(b), b)
        let old = ProcessControl.wallClockNs() - 5 * 3600 * 1_000_000_000
        try FS.setMtime(c.path(of: ChunkID.of(b)).pathBytes, ns: old)
        XCTAssertEqual(c.verify().good, 1)
        let st = try FS.lstat(c.path(of: ChunkID.of(b)))
        XCTAssertEqual(max(st.atimeNs, st.mtimeNs), old, "verify moved the entry's last-use time")
    }

    func testPruneAndClear() throws {
        let c = try ChunkCache(directory: dir, durable: false)
        var ids: [ChunkID] = []
        for i in 0..<10 {
            let b = chunk(i, size: 1000)
            ids.append(ChunkID.of(b))
            try c.insert(ids[i], b)
        }
        try use(c, ids[0])
        let r = c.prune(to: 5000)
        XCTAssertEqual(r, CacheRemoval(entries: 5, bytes: 5000))
        XCTAssertTrue(isCached(c, ids[0]), "prune removed the most recently used entry")
        for i in 1...5 { XCTAssertFalse(isCached(c, ids[i])) }
        for i in 6..<10 { XCTAssertTrue(isCached(c, ids[i])) }

        let m = ChunkID.of([9])
        try c.storeManifest(m, [9])
        try c.storeRef(store: "/s", env: "e", [1])
        XCTAssertEqual(c.clear(), CacheRemoval(entries: 5, bytes: 5000))
        XCTAssertEqual(c.usage.entries, 0)
        XCTAssertEqual(try diskBytes(c), 0)
        XCTAssertNotNil(c.loadManifest(m), "clear without includeMetadata keeps manifests")
        XCTAssertNotNil(c.loadRef(store: "/s", env: "e"))
        c.clear(includeMetadata: true)
        XCTAssertNil(c.loadManifest(m))
        XCTAssertNil(c.loadRef(store: "/s", env: "e"))
        // Still usable afterwards.
        let b = chunk(42, size: 10)
        try c.insert(ChunkID.of(b), b)
        try use(c, ChunkID.of(b))
        try c.storeRef(store: "/s", env: "e", [2])
    }

    // MARK: sizes

    func testByteSizeParse() throws {
        let good: [(String, UInt64)] = [
            ("100000", 100_000), ("0", 0), ("20G", 20 << 30), ("500M", 500 << 20), ("64MiB", 64 << 20),
            ("1.5G", 3 << 29), ("1.5GiB", 3 << 29), ("10GB", 10_000_000_000), ("4k", 4096), ("4KB", 4000),
            ("2T", 2 << 40), ("512 MiB", 512 << 20), (" 7m ", 7 << 20), ("123B", 123), ("0.5K", 512),
            ("1.0", 1), ("16E", 0), // 16 EiB overflows: checked below
        ]
        for (text, want) in good where text != "16E" {
            XCTAssertEqual(try ByteSize.parse(text), want, text)
        }
        for junk in ["", "G", "abc", "12X", "-5M", "1.5", "1.", ".5G", "5 G B", "5GiBB", "16E", "99999999999999999999", "1e9"] {
            XCTAssertThrowsError(try ByteSize.parse(junk), junk) { e in
                XCTAssertTrue("\(e)".contains("invalid size '\(junk)'"), "\(e)")
            }
        }
    }

    // MARK: ENOSPC on a real small file system

    func mountTmpfs(megabytes: Int) throws -> String {
        guard getuid() == 0 else {
            if let ci = ProcessControl.environment("CI"), !ci.isEmpty {
                XCTFail("ENOSPC tests need root to mount a tmpfs, and CI is set")
                throw XCTSkip("not root")
            }
            throw XCTSkip("ENOSPC tests need root to mount a small tmpfs; run as root (they fail instead when CI is set)")
        }
        let m = dir + "/tmpfs"
        try FS.makeDirectories(m, mode: 0o700)
        let rc = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m,mode=0700", "tmpfs", m])
        guard rc == 0 else {
            if let ci = ProcessControl.environment("CI"), !ci.isEmpty { XCTFail("mount -t tmpfs failed (\(rc))") }
            throw XCTSkip("mount -t tmpfs failed (\(rc)); no CAP_SYS_ADMIN here?")
        }
        mounted = m
        return m
    }

    func testENOSPCEvictsThenSucceeds() throws {
        let m = try mountTmpfs(megabytes: 8)
        let c = try ChunkCache(directory: m + "/cache", limit: 1 << 30) // limit far above the disk
        var ids: [ChunkID] = []
        for i in 0..<40 {
            let b = chunk(i, size: 1 << 20)
            ids.append(ChunkID.of(b))
            try c.insert(ids[i], b) // must not throw: ENOSPC evicts older entries
            XCTAssertTrue(isCached(c, ids[i]))
            XCTAssertEqual(try FS.lstat(c.path(of: ids[i])).size, 1 << 20)
        }
        let u = c.usage
        XCTAssertLessThanOrEqual(u.bytes, 8 << 20)
        XCTAssertGreaterThanOrEqual(u.entries, 2)
        XCTAssertEqual(u.bytes, try diskBytes(c))
        XCTAssertFalse(isCached(c, ids[0]))
        XCTAssertEqual(try FS.listDirectory(m + "/cache/v1/tmp"), [], "a failed write left a temporary")
        XCTAssertEqual(c.verify().bad, 0)
    }

    func testENOSPCWithEverythingPinnedThrowsFull() throws {
        let m = try mountTmpfs(megabytes: 8)
        let c = try ChunkCache(directory: m + "/cache")
        var thrown: Error?
        var stored: [ChunkID] = []
        for i in 0..<20 {
            let b = chunk(i, size: 1 << 20)
            let id = ChunkID.of(b)
            c.pin(id)
            do {
                try c.insert(id, b)
                stored.append(id)
            } catch {
                thrown = error
                break
            }
        }
        let e = try XCTUnwrap(thrown, "8 MiB tmpfs took 20 MiB")
        guard case CacheError.full = e else { return XCTFail("expected CacheError.full, got \(e)") }
        XCTAssertGreaterThanOrEqual(stored.count, 4)
        for id in stored { XCTAssertTrue(isCached(c, id), "a pinned entry was evicted") }
        XCTAssertEqual(try FS.listDirectory(m + "/cache/v1/tmp"), [], "a failed write left a temporary")
        // Unpinning one makes room again.
        c.unpin(stored[0])
        let b = chunk(99, size: 1 << 20)
        try c.insert(ChunkID.of(b), b)
        XCTAssertFalse(isCached(c, stored[0]))
        XCTAssertTrue(isCached(c, ChunkID.of(b)))
    }

    @discardableResult
    func run(_ tool: String, _ args: [String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }
}
