import CurlKit
import EnvStore
import Foundation
import TestSupport
import XCTest

/// HTTPStore against nginx serving a DirectoryStore's tree, directly and through faultproxy.
final class HTTPStoreTests: XCTestCase {
    var dir = ""
    var nginx: NginxServer?
    var proxies: [FaultProxy] = []
    let payload = StoreContract.binary(200_000, seed: 11)
    var key = ""

    override func setUpWithError() throws {
        dir = Servers.makeTempDir("www")
        let source = DirectoryStore(root: dir)
        key = StoreContract.chunkKey(payload)
        try source.put(key, payload)
        try source.put("refs/main", Array("manifest-id".utf8))
        nginx = try NginxServer(serving: dir)
    }

    override func tearDown() {
        for p in proxies { p.stop() }
        nginx?.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Quick retries so fault tests stay fast; the deadline still bounds each call.
    func store(_ urls: [String], deadline: Double = 20, client: CurlClient = .shared) -> HTTPStore {
        var policy = RetryPolicy(deadline: deadline)
        policy.initialBackoff = 0.05
        policy.maxBackoff = 0.2
        return HTTPStore(urls: urls, options: StoreOptions(), client: client, policy: policy)
    }

    func proxy() throws -> FaultProxy {
        let p = try FaultProxy(upstream: nginx!.url)
        proxies.append(p)
        return p
    }

    func testReadsWhatADirectoryStorePublished() throws {
        let client = CurlClient()
        let s = store([nginx!.url + "/"], client: client)
        XCTAssertFalse(s.isWritable)
        XCTAssertEqual(try s.get(key), payload)
        XCTAssertEqual(try s.get("refs/main"), Array("manifest-id".utf8))
        XCTAssertTrue(try s.exists(key))
        XCTAssertFalse(try s.exists("chunks/00/none"))
        XCTAssertThrowsError(try s.get("chunks/00/none")) { XCTAssertEqual(($0 as? StoreError)?.isNotFound, true) }
        XCTAssertThrowsError(try s.put("refs/main", [1])) { XCTAssertEqual($0 as? StoreError, .readOnly(store: nginx!.url + "/")) }
        XCTAssertThrowsError(try s.list(prefix: "chunks/")) { e in
            XCTAssertTrue("\(e)".contains("cannot be listed"), "\(e)")
        }
        // Connection reuse: 40 sequential GETs on one thread open one connection.
        for _ in 0..<40 { _ = try s.get("refs/main") }
        XCTAssertLessThanOrEqual(client.connectionCount, 2, "connections are reused")
        XCTAssertEqual(client.handleCount, 1)
        // nginx saw each request once: 2 GETs, 2 HEADs, 1 GET (404), 40 GETs.
        usleep(100_000)
        XCTAssertEqual(nginx!.requestCount, 45)
    }

    func testParallelCallersShareThePool() throws {
        let client = CurlClient()
        let s = store([nginx!.url], client: client)
        let errors = LockedCounter()
        let (key, payload) = (self.key, self.payload)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<25 {
                do { if try s.get(key) != payload { errors.add("wrong bytes") } } catch { errors.add("\(error)") }
            }
        }
        XCTAssertEqual(errors.values, [])
        XCTAssertLessThanOrEqual(client.handleCount, 8)
        XCTAssertLessThanOrEqual(client.connectionCount, 8, "one connection per concurrent caller at most")
    }

    func testServerErrorsAreRetried() throws {
        let p = try proxy()
        try p.set(["fail500": "2"])
        XCTAssertEqual(try store([p.url]).get(key), payload)
        XCTAssertEqual(try p.requests(), 3, "two 500s, then success")
    }

    func testResetIsRetried() throws {
        let p = try proxy()
        try p.set(["reset": "1"])
        XCTAssertEqual(try store([p.url]).get(key), payload)
        XCTAssertEqual(try p.requests(), 2)
    }

    func testTruncatedBodyIsRetried() throws {
        let p = try proxy()
        try p.set(["truncate": "1"])
        XCTAssertEqual(try store([p.url]).get(key), payload)
        XCTAssertEqual(try p.requests(), 2)
    }

    func testStallBeyondDeadlineFailsInBoundedTime() throws {
        let p = try proxy()
        try p.set(["stall": "5", "stall_seconds": "20"])
        let start = Date()
        XCTAssertThrowsError(try store([p.url], deadline: 3).get(key)) { e in
            guard case .unavailable(let k, _, let detail)? = e as? StoreError else { return XCTFail("expected unavailable, got \(e)") }
            XCTAssertEqual(k, key)
            XCTAssertTrue(detail.contains("timeout"), detail)
        }
        let took = Date().timeIntervalSince(start)
        XCTAssertLessThan(took, 4.5, "bounded by the 3 s deadline")
        XCTAssertGreaterThan(took, 2.5)
    }

    func testNotFoundOnFirstMirrorFallsBackToSecond() throws {
        let p = try proxy()
        try p.set(["status404": "1"])
        XCTAssertEqual(try store([p.url, nginx!.url]).get(key), payload)
        XCTAssertEqual(try p.requests(), 1, "a 404 is not retried on the same mirror")
        // Mirrors from StoreOptions are used too.
        try p.set(["status404": "1"])
        var o = StoreOptions()
        o.mirrors = [nginx!.url]
        XCTAssertEqual(try HTTPStore(urls: [p.url], options: o).get(key), payload)
    }

    func testUnreachableMirrorFallsBackToNext() throws {
        let dead = "http://127.0.0.1:\(try Servers.freePort())"
        XCTAssertEqual(try store([dead, nginx!.url]).get(key), payload)
    }

    func testUnreachableStoreIsUnavailable() throws {
        let dead = "http://127.0.0.1:\(try Servers.freePort())"
        XCTAssertThrowsError(try store([dead], deadline: 1).get(key)) { e in
            guard case .unavailable(_, _, let detail)? = e as? StoreError else { return XCTFail("\(e)") }
            XCTAssertTrue(detail.contains("connect"), detail)
        }
    }

    /// A flipped byte comes back as-is: the store moves bytes, the chunk fetcher above it checks
    /// every chunk's SHA-256 against its id and refetches or fails.
    func testCorruptBodyIsReturnedUnverified() throws {
        let p = try proxy()
        try p.set(["flip": "1"])
        let got = try store([p.url]).get(key)
        XCTAssertEqual(got.count, payload.count)
        XCTAssertNotEqual(got, payload)
        XCTAssertEqual(zip(got, payload).filter { $0 != $1 }.count, 1)
    }
}
