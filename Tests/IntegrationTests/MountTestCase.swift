import Foundation
import SysKit
import XCTest

/// The common frame of a test that mounts: it needs FUSE (skipped with the reason, or failed
/// under CI=true), gets a Harness directory named after the test, and a list of servers to stop.
/// Tear-down order: overlays, then FUSE mounts and daemons, then the servers (squid.sh stops
/// squid by a PID file inside the test's directory), then the directory itself.
class MountTestCase: XCTestCase {
    var h: Harness!
    var stops: [() -> Void] = []

    /// The harness directory's name: the test method's name up to its first non-letter.
    var harnessName: String { String(name.split(separator: " ").last?.prefix { $0.isLetter } ?? "t") }

    override func setUpWithError() throws {
        try Harness.requireFuse()
        h = try Harness(harnessName)
    }

    override func tearDown() {
        if let h {
            for m in TestMounts.overlays(under: h.dir) { try? FS.lazyUnmount(m) }
            h.unmountAll()
        }
        for s in stops.reversed() { s() }
        stops = []
        h?.cleanUp()
    }

    /// Whether process `pid` has a shared library whose file name contains `name` mapped.
    func maps(_ pid: Int32, library name: String) throws -> Bool {
        String(decoding: try FS.readFile("/proc/\(pid)/maps"), as: UTF8.self)
            .split(separator: "\n").contains { $0.split(separator: "/").last?.contains(name) ?? false }
    }

    /// `envmount status MOUNTPOINT --json`, the mount's object (fails the test on a non-zero exit).
    func status(_ mountpoint: String) throws -> [String: Any] {
        let r = try h.run("envmount", ["status", mountpoint, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])?.first ?? [:]
    }
}
