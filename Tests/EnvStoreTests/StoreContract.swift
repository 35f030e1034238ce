import Dispatch
import Foundation
import EnvStore
import SysKit
import TestSupport
import XCTest

/// One contract every writable store meets: the same body runs against MemoryStore,
/// DirectoryStore and S3Store (on moto).
enum StoreContract {
    static func binary(_ n: Int, seed: UInt64) -> [UInt8] {
        var x = seed | 1
        return (0..<n).map { _ in
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            return UInt8(truncatingIfNeeded: x)
        }
    }

    static func chunkKey(_ bytes: [UInt8]) -> String {
        let h = Hex.encode(SHA256.hash(bytes))
        return "chunks/\(h.prefix(2))/\(h)"
    }

    static func run(_ store: ObjectStore, manyKeys: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let every = (0...255).map { UInt8($0) }
        let big = binary(300_000, seed: 7)
        let objects: [[UInt8]] = [every, big, [], [0], binary(4096, seed: 3)]
        var chunkKeys = Set<String>()
        for o in objects {
            let k = chunkKey(o)
            chunkKeys.insert(k)
            try store.put(k, o)
        }
        try store.put("manifests/" + Hex.encode(SHA256.hash(big)), big)
        try store.put("refs/main", Array("one".utf8))
        try store.put("refs/main", Array("two".utf8))  // overwrite
        try store.put("profiles/main/abc/default", every)

        for o in objects {
            XCTAssertEqual(try store.get(chunkKey(o)), o, "round trip of \(o.count) bytes", file: file, line: line)
            XCTAssertTrue(try store.exists(chunkKey(o)), file: file, line: line)
        }
        XCTAssertEqual(try store.get("refs/main"), Array("two".utf8), "an overwrite wins", file: file, line: line)
        XCTAssertFalse(try store.exists("chunks/00/missing"), file: file, line: line)
        XCTAssertThrowsError(try store.get("chunks/00/missing"), file: file, line: line) { e in
            XCTAssertEqual((e as? StoreError)?.isNotFound, true, "missing object is notFound: \(e)", file: file, line: line)
        }
        XCTAssertEqual(Set(try store.list(prefix: "chunks/")), chunkKeys, file: file, line: line)
        XCTAssertEqual(try store.list(prefix: "refs/"), ["refs/main"], file: file, line: line)
        XCTAssertEqual(try store.list(prefix: "profiles/main/abc/"), ["profiles/main/abc/default"], file: file, line: line)
        XCTAssertEqual(try store.list(prefix: "nothing/"), [], file: file, line: line)
        XCTAssertEqual(try store.listEnvironments(), ["main"], file: file, line: line)
        XCTAssertEqual(try store.listChunkIDs().count, chunkKeys.count, file: file, line: line)

        // Many keys (S3 pages listings at 1000), written from several threads at once.
        guard manyKeys > 0 else { return }
        let keys = (0..<manyKeys).map { i in "chunks/cd/" + Hex.encode(SHA256.hash(Array("k\(i)".utf8))) }
        let failures = LockedCounter()
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for i in stride(from: t, to: keys.count, by: 8) {
                do { try store.put(keys[i], [UInt8(i & 0xff)]) } catch { failures.add("\(error)") }
            }
        }
        XCTAssertEqual(failures.values, [], file: file, line: line)
        let listed = try store.list(prefix: "chunks/cd/")
        XCTAssertEqual(listed.count, manyKeys, "every key listed once", file: file, line: line)
        XCTAssertEqual(Set(listed), Set(keys), file: file, line: line)
        XCTAssertEqual(try store.list(prefix: "chunks/").count, manyKeys + chunkKeys.count, file: file, line: line)
    }
}

final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var values: [String] { lock.lock(); defer { lock.unlock() }; return items }
}

final class LocalStoreContractTests: XCTestCase {
    func testMemoryStore() throws {
        try StoreContract.run(MemoryStore(), manyKeys: 1100)
    }

    func testDirectoryStore() throws {
        let dir = Servers.makeTempDir("dirstore")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try StoreContract.run(DirectoryStore(root: dir), manyKeys: 1100)
    }

    func testFactory() throws {
        XCTAssertTrue(try StoreFactory.open("http://127.0.0.1:1/envs") is HTTPStore)
        XCTAssertTrue(try StoreFactory.open("https://cdn.example/envs") is HTTPStore)
        XCTAssertTrue(try StoreFactory.open("s3://bucket/prefix") is S3Store)
        XCTAssertTrue(try StoreFactory.open("/tmp/x") is DirectoryStore)
    }
}
