import EnvStore
import SysKit
import TestSupport
import XCTest

/// Each store declares its traits, reached through `any ObjectStore` as callers reach them; no
/// server is needed (remote stores are only constructed, never asked).
final class StoreTraitsTests: XCTestCase {
    var dir = ""

    override func setUp() { dir = Servers.makeTempDir("traits") }

    override func tearDown() { try? FS.removeTree(dir) }

    func testDirectoryStoreIsLocalListableWritable() throws {
        let s: any ObjectStore = try StoreFactory.open(dir)
        XCTAssertEqual(s.traits, StoreTraits(latency: .local, listable: true, writable: true))
        XCTAssertTrue(s.isWritable)
        XCTAssertFalse(s.isKnownAbsent)
        let url: any ObjectStore = try StoreFactory.open("file://" + dir)
        XCTAssertEqual(url.traits.latency, .local)
    }

    func testMissingDirectoryStoreIsKnownAbsentUntilCreated() throws {
        let s: any ObjectStore = try StoreFactory.open(dir + "/new/store")
        XCTAssertTrue(s.isKnownAbsent)
        // Dispatched through the existential, as a publish calls it.
        try s.createIfMissing()
        XCTAssertEqual((try FS.stat(dir + "/new/store")).kind, .directory)
        XCTAssertFalse(s.isKnownAbsent)
        try s.put("refs/e", [1])
        XCTAssertEqual(try s.list(prefix: "refs/"), ["refs/e"])
    }

    func testDirectoryStoreOverAFileIsKnownAbsent() throws {
        try FS.writeFileAtomically(dir + "/plain", [1, 2, 3], mode: 0o644)
        XCTAssertTrue(try StoreFactory.open(dir + "/plain").isKnownAbsent)
    }

    func testMemoryStoreIsLocalUnlessConfiguredRemote() throws {
        let local: any ObjectStore = MemoryStore()
        XCTAssertEqual(local.traits, StoreTraits(latency: .local, listable: true, writable: true))
        let remote: any ObjectStore = MemoryStore(latency: .remote)
        XCTAssertEqual(remote.traits, StoreTraits(latency: .remote, listable: true, writable: true))
        XCTAssertFalse(remote.isKnownAbsent)
        try remote.createIfMissing()
        XCTAssertTrue((remote as! MemoryStore).keys.isEmpty, "creating a memory store writes nothing")
    }

    func testHTTPStoreIsRemoteReadOnlyAndNotListable() throws {
        let s: any ObjectStore = try StoreFactory.open("http://127.0.0.1:9/envs")
        XCTAssertEqual(s.traits, StoreTraits(latency: .remote, listable: false, writable: false))
        XCTAssertFalse(s.isWritable)
        XCTAssertFalse(s.isKnownAbsent, "a remote store's absence is not known without a request")
        XCTAssertEqual(s.traits.description, "remote, not listable, read-only")
    }

    func testS3StoreIsRemoteListableWritable() throws {
        var o = StoreOptions()
        o.endpoint = "http://127.0.0.1:9"
        let s: any ObjectStore = try S3Store(url: "s3://bucket/prefix", options: o,
                                             environment: ["AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"])
        XCTAssertEqual(s.traits, StoreTraits(latency: .remote, listable: true, writable: true))
        XCTAssertTrue(s.isWritable)
        XCTAssertFalse(s.isKnownAbsent)
    }
}
