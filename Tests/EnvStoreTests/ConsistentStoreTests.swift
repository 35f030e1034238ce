import Dispatch
import EnvStore
import Foundation
import Glibc
import Synchronization
import SysKit
import TestSupport
import XCTest

/// The compare-and-swap contract revisions rely on, against memory, a directory and S3 (moto,
/// signatures checked): one winner of an atomic create among 8 threads, no lost update among
/// 8 threads incrementing one object by compare-and-swap, listings with sizes and times,
/// deletes in batches.
final class ConsistentStoreTests: XCTestCase {
    static func contract(_ store: any ConsistentStore, deleteKeys: Int, file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        // Atomic create: exactly one of 8 racing writers wins, and its bytes are what is stored.
        let winners = Mutex<[Int]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            if (try? store.createExclusive("revisions/e/1", Array("writer \(t)".utf8))) == true { winners.withLock { $0.append(t) } }
        }
        let w = winners.withLock { $0 }
        XCTAssertEqual(w.count, 1, "one writer claims the key", file: file, line: line)
        if let t = w.first { XCTAssertEqual(try store.get("revisions/e/1"), Array("writer \(t)".utf8), file: file, line: line) }
        XCTAssertFalse(try store.createExclusive("revisions/e/1", [1]), file: file, line: line)

        // Compare-and-swap: 8 threads x 5 increments, each retried until its swap succeeds.
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<5 {
                while true {
                    let cur: VersionedObject?
                    do { cur = try store.getVersioned("refs/counter") } catch { continue }
                    let n = cur.map { Int(String(decoding: $0.bytes, as: UTF8.self)) ?? 0 } ?? 0
                    if (try? store.putIfVersion("refs/counter", Array("\(n + 1)".utf8), expected: cur?.version)) == true { break }
                    usleep(UInt32.random(in: 100...2000))
                }
            }
        }
        XCTAssertEqual(String(decoding: try store.get("refs/counter"), as: UTF8.self), "40", "no increment lost", file: file, line: line)
        let v = try XCTUnwrap(store.getVersioned("refs/counter"))
        XCTAssertTrue(try store.putIfVersion("refs/counter", [1], expected: v.version), file: file, line: line)
        XCTAssertFalse(try store.putIfVersion("refs/counter", [2], expected: v.version), "a stale version is refused", file: file, line: line)
        XCTAssertFalse(try store.putIfVersion("refs/counter", [3], expected: nil), "'must not exist' is refused", file: file, line: line)
        XCTAssertEqual(try store.get("refs/counter"), [1], file: file, line: line)
        XCTAssertNil(try store.getVersioned("refs/none"), file: file, line: line)

        // Listings with sizes and times; batch delete.
        let keys = (0..<deleteKeys).map { "chunks/aa/k\($0)" }
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for i in stride(from: t, to: keys.count, by: 8) { try? store.put(keys[i], Array(repeating: 7, count: i % 5)) }
        }
        let listed = try store.listDetailed(prefix: "chunks/")
        XCTAssertEqual(listed.count, keys.count, file: file, line: line)
        let now = Int64(time(nil))
        for o in listed {
            let i = Int(o.key.dropFirst("chunks/aa/k".count))!
            XCTAssertEqual(o.size, UInt64(i % 5), o.key, file: file, line: line)
            XCTAssertLessThan(abs(o.modified - now), 300, "\(o.key) modified \(o.modified), now \(now)", file: file, line: line)
        }
        let requests = try store.delete(keys + ["chunks/aa/never-existed"])
        XCTAssertEqual(try store.listDetailed(prefix: "chunks/").count, 0, file: file, line: line)
        XCTAssertTrue(try store.exists("revisions/e/1"), "delete touches only what it names", file: file, line: line)
        return requests
    }

    func testMemory() throws {
        _ = try Self.contract(MemoryStore(), deleteKeys: 50)
    }

    func testDirectory() throws {
        let dir = Servers.makeTempDir("consistent")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try Self.contract(DirectoryStore(root: dir), deleteKeys: 50)
        XCTAssertEqual(try DirectoryStore(root: dir).list(prefix: "revisions/"), ["revisions/e/1"], "no temporaries left")
    }

    func testS3ConditionalPutsAndBatchDeletes() throws {
        let moto = try MotoServer()
        defer { moto.stop() }
        var policy = RetryPolicy(deadline: 30)
        policy.initialBackoff = 0.05
        let s = try S3Store(url: "s3://envmount-cas/team/", options: StoreOptions(), environment: moto.env, policy: policy)
        try s.createBucket()
        let requests = try Self.contract(s, deleteKeys: 1_100)
        XCTAssertEqual(requests, 2, "1,101 keys are deleted in two DeleteObjects requests")
    }

    func testISO8601() {
        XCTAssertEqual(S3Store.parseISO8601("1970-01-01T00:00:00.000Z"), 0)
        XCTAssertEqual(S3Store.parseISO8601("2026-12-01T14:38:31.000Z"), 1_796_135_911)
        XCTAssertNil(S3Store.parseISO8601("yesterday"))
    }
}
