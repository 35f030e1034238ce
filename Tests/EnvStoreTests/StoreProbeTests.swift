import EnvStore
import Foundation
import TestSupport
import XCTest

/// `probe`: a short question to a store that may be down. A refused connection is an answer at
/// once (one attempt per mirror, then the next mirror), where `get` keeps retrying to its deadline.
final class StoreProbeTests: XCTestCase {
    func testRefusedConnectionIsAnAnswerAndMirrorsAreStillTried() throws {
        let closed = "http://127.0.0.1:\(try Servers.freePort())/"
        var o = StoreOptions()
        o.requestDeadline = 3
        let s = try HTTPStore(urls: [closed], options: o)
        var start = Date()
        XCTAssertThrowsError(try s.probe("refs/x", deadline: 10)) { e in
            XCTAssertEqual((e as? StoreError)?.isTransient, true, "\(e)")
            XCTAssertTrue("\(e)".contains("after 1 attempt"), "\(e)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 1)
        // The same store's get retries a refused connection until its deadline (a chunk read
        // during a server restart should survive).
        start = Date()
        XCTAssertThrowsError(try s.get("refs/x"))
        XCTAssertGreaterThan(Date().timeIntervalSince(start), 2)

        let dir = Servers.makeTempDir("probe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try DirectoryStore(root: dir).put("refs/x", Array("ref".utf8))
        let nginx = try NginxServer(serving: dir)
        defer { nginx.stop() }
        var m = StoreOptions()
        m.mirrors = [nginx.url]
        start = Date()
        XCTAssertEqual(try HTTPStore(urls: [closed], options: m).probe("refs/x", deadline: 10), Array("ref".utf8))
        XCTAssertLessThan(Date().timeIntervalSince(start), 1)
    }
}
