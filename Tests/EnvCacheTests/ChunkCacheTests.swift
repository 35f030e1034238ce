import XCTest
import Foundation
import Synchronization
import Glibc
import SysKit
import EnvFormat
@testable import EnvCache

final class ChunkCacheTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = "/tmp/envcache-tests-\(getpid())-\(UUID().uuidString)"
        try FS.makeDirectories(dir)
    }

    override func tearDownWithError() throws { try FS.removeTree(dir) }

    func bytes(_ n: Int, _ seed: UInt8) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31) &+ seed } }

    func read(_ cache: ChunkCache, _ id: ChunkID) throws -> [UInt8]? {
        guard let fd = try cache.open(id) else { return nil }
        defer { fd.close() }
        return try fd.readAll()
    }

    func testInsertThenOpenReturnsTheBytes() throws {
        let cache = try ChunkCache(directory: dir, durable: false)
        let data = bytes(100_000, 1)
        let id = ChunkID.of(data)
        XCTAssertNil(try read(cache, id))
        try cache.insert(id, data)
        XCTAssertEqual(try read(cache, id), data)
        XCTAssertEqual(cache.path(of: id), "\(dir)/v1/chunks/\(id.hex.prefix(2))/\(id.hex)")
        XCTAssertEqual(try FS.stat(cache.path(of: id)).mode, 0o600, "entries are private to the user")
        XCTAssertEqual(try FS.listDirectory("\(dir)/v1/tmp"), [], "nothing left behind in tmp/")
        // Inserting again (a second fetch of the same chunk) replaces it with the same bytes.
        try cache.insert(id, data)
        XCTAssertEqual(try read(cache, id), data)
        let empty: [UInt8] = []
        try cache.insert(ChunkID.of(empty), empty)
        XCTAssertEqual(try read(cache, ChunkID.of(empty)), [])
    }

    /// A mount opens its cache with the count of entries put off: nothing is scanned until
    /// `startScan`, or until a call needs the totals (which then starts it, not waits forever).
    func testADeferredScanWaitsForStartOrForTheFirstCallThatNeedsIt() throws {
        let first = try ChunkCache(directory: dir, durable: false)
        let data = bytes(50_000, 7)
        try first.insert(ChunkID.of(data), data)
        XCTAssertEqual(first.usage.entries, 1)

        let deferred = try ChunkCache(directory: dir, durable: false, deferScan: true)
        usleep(200_000)
        XCTAssertFalse(deferred.isScanned, "the scan ran before it was started")
        deferred.startScan()
        deferred.startScan()
        deferred.waitForScan()
        XCTAssertTrue(deferred.isScanned)
        XCTAssertEqual(deferred.usage.entries, 1)
        XCTAssertEqual(deferred.usage.bytes, 50_000)

        let needy = try ChunkCache(directory: dir, durable: false, deferScan: true)
        XCTAssertEqual(needy.usage.entries, 1, "usage starts the deferred scan and waits for it")
    }

    func testContainsRespectsTheSize() throws {
        let cache = try ChunkCache(directory: dir)
        let data = bytes(4096, 2)
        let id = ChunkID.of(data)
        XCTAssertFalse(cache.contains(id, rawSize: 4096))
        try cache.insert(id, data)
        XCTAssertTrue(cache.contains(id, rawSize: 4096))
        XCTAssertFalse(cache.contains(id, rawSize: 4095), "a short entry is not the chunk")
        XCTAssertFalse(cache.contains(id, rawSize: 4097))
        XCTAssertFalse(cache.contains(ChunkID.of([9]), rawSize: 4096))
    }

    func testRemove() throws {
        let cache = try ChunkCache(directory: dir)
        let data = bytes(1000, 3)
        let id = ChunkID.of(data)
        try cache.insert(id, data)
        cache.remove(id)
        XCTAssertNil(try read(cache, id))
        XCTAssertFalse(cache.contains(id, rawSize: 1000))
        cache.remove(id)   // removing what is not there is fine
        cache.remove(ChunkID.of([1, 2, 3]))
    }

    func testTemporariesOfDeadWritersAreRemovedOnOpen() throws {
        _ = try ChunkCache(directory: dir)
        let tmp = "\(dir)/v1/tmp"
        // Process ids are below pid_max, so pid_max itself names no process.
        let pidMax = Int32(String(decoding: try FS.readFile("/proc/sys/kernel/pid_max"), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines))!
        XCTAssertFalse(ProcessControl.isAlive(pidMax))
        let names = ["\(pidMax).3", "\(pidMax).17", "\(getpid()).5", "1.7", "not-a-pid"]
        for n in names { try FS.writeFileAtomically("\(tmp)/\(n)", [1, 2, 3], sync: false) }
        // A tree a killed daemon was materializing is a directory.
        try FS.makeDirectories("\(tmp)/\(pidMax).tree.9/lib/site-packages")
        try FS.writeFileAtomically("\(tmp)/\(pidMax).tree.9/lib/site-packages/m.py", [1], sync: false)
        _ = try ChunkCache(directory: dir)
        XCTAssertEqual(Set(try FS.listDirectory(tmp)), ["\(getpid()).5", "1.7", "not-a-pid"],
                       "only the dead writer's files go; ours and a live process's (init) stay")
    }

    func testManifestsAndRefsRoundTrip() throws {
        let cache = try ChunkCache(directory: dir)
        let manifest = bytes(5000, 4)
        let id = ChunkID.of(manifest)
        XCTAssertNil(cache.loadManifest(id))
        try cache.storeManifest(id, manifest)
        XCTAssertEqual(cache.loadManifest(id), manifest)

        let storeA = "s3://bucket/envs", storeB = "/srv/envs"
        XCTAssertNil(cache.loadRef(store: storeA, env: "ml"))
        XCTAssertEqual(cache.cachedEnvironments(store: storeA), [])
        try cache.storeRef(store: storeA, env: "ml", Array("ref a".utf8))
        try cache.storeRef(store: storeA, env: "base", Array("ref base".utf8))
        try cache.storeRef(store: storeB, env: "ml", Array("ref b".utf8))
        XCTAssertEqual(cache.loadRef(store: storeA, env: "ml"), Array("ref a".utf8))
        XCTAssertEqual(cache.loadRef(store: storeB, env: "ml"), Array("ref b".utf8), "refs are kept per store")
        XCTAssertEqual(cache.cachedEnvironments(store: storeA), ["base", "ml"])
        XCTAssertEqual(cache.cachedEnvironments(store: storeB), ["ml"])
        try cache.storeRef(store: storeA, env: "ml", Array("ref a2".utf8))
        XCTAssertEqual(cache.loadRef(store: storeA, env: "ml"), Array("ref a2".utf8), "a newer ref replaces the old one")

        let again = try ChunkCache(directory: dir)
        XCTAssertEqual(again.loadManifest(id), manifest)
        XCTAssertEqual(again.loadRef(store: storeA, env: "ml"), Array("ref a2".utf8))
    }

    func testTwoInstancesSeeEachOthersEntries() throws {
        let a = try ChunkCache(directory: dir)
        let b = try ChunkCache(directory: dir)
        let x = bytes(3000, 5), y = bytes(7000, 6)
        try a.insert(ChunkID.of(x), x)
        XCTAssertEqual(try read(b, ChunkID.of(x)), x)
        try b.insert(ChunkID.of(y), y)
        XCTAssertTrue(a.contains(ChunkID.of(y), rawSize: 7000))
        b.remove(ChunkID.of(x))
        XCTAssertNil(try read(a, ChunkID.of(x)))
    }

    /// Two caches on one directory in one process (a mount and a warm, say) writing at once:
    /// every entry must hold exactly its own bytes and no insert may fail.
    func testConcurrentInsertsFromTwoInstancesInOneProcess() throws {
        let caches = [try ChunkCache(directory: dir, durable: false), try ChunkCache(directory: dir, durable: false)]
        let perWriter = 200
        let chunks: [[[UInt8]]] = (0..<2).map { w in
            (0..<perWriter).map { k in bytes(8192 + k, UInt8(w * 100 + k % 100)) + [UInt8(w), UInt8(k % 256), UInt8(k / 256)] }
        }
        let failures = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 2) { w in
            for c in chunks[w] {
                do { try caches[w].insert(ChunkID.of(c), c) } catch { failures.withLock { $0 += 1 } }
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, 0, "inserts that failed")
        var wrong = 0
        for c in chunks.joined() where (try? read(caches[0], ChunkID.of(c))) != c { wrong += 1 }
        XCTAssertEqual(wrong, 0, "entries whose bytes are not their chunk's")
    }

    // MARK: directory ownership and modes

    func testDirectoriesAreCreatedPrivateWhateverTheUmask() throws {
        let old = umask(0)
        defer { umask(old) }
        let c = try ChunkCache(directory: dir + "/new/cache", durable: false)
        for d in ["/new", "/new/cache", "/new/cache/v1", "/new/cache/v1/chunks", "/new/cache/v1/tmp", "/new/cache/v1/refs"] {
            XCTAssertEqual(try FS.stat(dir + d).mode, 0o700, d)
        }
        let b = bytes(10, 3)
        try c.insert(ChunkID.of(b), b)
        XCTAssertEqual(try FS.stat(c.path(of: ChunkID.of(b))).mode, 0o600)
        let shard = String(c.path(of: ChunkID.of(b)).dropLast(65))
        XCTAssertEqual(try FS.stat(shard).mode, 0o700, shard)
    }

    /// A cache directory someone else made first (a shared /tmp), or one others can write, could
    /// hold planted entries: it is refused with one line naming it, and nothing is written in it.
    func testDirectoryOfAnotherUserOrWritableByOthersIsRefused() throws {
        try XCTSkipIf(geteuid() != 0, "chown to another user needs root")
        let hostile = dir + "/hostile"
        try FS.mkdir(hostile.pathBytes, mode: 0o777)
        try FS.chmod(hostile.pathBytes, 0o777)
        XCTAssertEqual(chown(hostile, 65534, 65534), 0)
        XCTAssertThrowsError(try ChunkCache(directory: hostile, durable: false)) { e in
            XCTAssertTrue("\(e)".contains(hostile) && "\(e)".contains("owned by uid 65534"), "\(e)")
            XCTAssertFalse("\(e)".contains("\n"))
        }
        XCTAssertEqual(try FS.listDirectory(hostile), [], "nothing was created in the refused directory")
        // Ours, but writable by others; then by the group.
        XCTAssertEqual(chown(hostile, geteuid(), getegid()), 0)
        XCTAssertThrowsError(try ChunkCache(directory: hostile, durable: false)) { XCTAssertTrue("\($0)".contains("writable by"), "\($0)") }
        try FS.chmod(hostile.pathBytes, 0o707)
        XCTAssertThrowsError(try ChunkCache(directory: hostile, durable: false)) { XCTAssertTrue("\($0)".contains("writable by other users"), "\($0)") }
        try FS.chmod(hostile.pathBytes, 0o770)
        XCTAssertThrowsError(try ChunkCache(directory: hostile, durable: false)) { XCTAssertTrue("\($0)".contains("its group"), "\($0)") }
        // A subdirectory planted inside an otherwise good cache is refused too.
        try FS.chmod(hostile.pathBytes, 0o700)
        _ = try ChunkCache(directory: hostile, durable: false)
        XCTAssertEqual(chown(hostile + "/v1/chunks", 65534, 65534), 0)
        XCTAssertThrowsError(try ChunkCache(directory: hostile, durable: false)) { XCTAssertTrue("\($0)".contains(hostile + "/v1/chunks"), "\($0)") }
    }

    func testDefaultDirectory() {
        func dflt(_ uid: UInt32, _ env: [String: String]) -> String { ChunkCache.defaultDirectory(userID: uid, environment: { env[$0] }) }
        XCTAssertEqual(dflt(1000, ["HOME": "/home/a"]), "/home/a/.cache/envmount")
        XCTAssertEqual(dflt(1000, ["HOME": "/home/a", "XDG_CACHE_HOME": "/x/c"]), "/x/c/envmount")
        XCTAssertEqual(dflt(0, ["HOME": "/root"]), "/var/cache/envmount")
        XCTAssertEqual(dflt(0, ["XDG_CACHE_HOME": "/x/c"]), "/x/c/envmount")
        // Relative values are ignored (the XDG spec), never resolved against the working directory.
        XCTAssertEqual(dflt(1000, ["HOME": "/home/a", "XDG_CACHE_HOME": "rel"]), "/home/a/.cache/envmount")
        XCTAssertEqual(dflt(1000, ["HOME": ""]), "/tmp/envmount-cache-1000")
        XCTAssertEqual(dflt(1000, [:]), "/tmp/envmount-cache-1000")
    }

    /// With HOME unset, a user's fallback cache in /tmp that another user created first is refused.
    func testFallbackInTmpMadeByAnotherUserIsRefused() throws {
        try XCTSkipIf(geteuid() != 0, "chown to another user needs root")
        // Stand-in for /tmp: a sticky, world-writable directory of our own.
        let tmp = dir + "/tmp"
        try FS.mkdir(tmp.pathBytes, mode: 0o1777)
        try FS.chmod(tmp.pathBytes, 0o1777)
        let fallback = ChunkCache.defaultDirectory(userID: 4242, environment: { _ in nil })
        XCTAssertEqual(fallback, "/tmp/envmount-cache-4242")
        let planted = tmp + "/" + fallback.split(separator: "/").last!
        try FS.mkdir(planted.pathBytes, mode: 0o777)
        try FS.chmod(planted.pathBytes, 0o777)
        XCTAssertEqual(chown(planted, 65534, 65534), 0)
        XCTAssertThrowsError(try ChunkCache(directory: planted, durable: false)) { e in
            XCTAssertTrue("\(e)".contains(planted), "\(e)")
        }
    }
}
