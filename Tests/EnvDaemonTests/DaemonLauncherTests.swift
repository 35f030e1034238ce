@testable import EnvDaemon
import Foundation
import Glibc
import SysKit
import XCTest

/// The parent's side of the READY handshake, with small shell scripts as the daemon.
final class DaemonLauncherTests: XCTestCase {
    func launch(_ script: String, deadline: Double = 10) throws -> Int32 {
        try DaemonLauncher.launch(executable: "/bin/sh", arguments: ["-c", script], input: Array("{\"x\":1}".utf8), deadline: deadline)
    }

    func testReadyReturnsTheDaemonsPidAndItGetsItsInput() throws {
        let dir = try TempDir("launch")
        defer { dir.remove() }
        let pid = try launch("cat > \(dir.path)/input; echo READY; exec sleep 30 >/dev/null 2>&1")
        defer { kill(pid, SIGKILL) }
        XCTAssertTrue(ProcessControl.isAlive(pid))
        XCTAssertEqual(String(decoding: try FS.readFile(dir.path + "/input"), as: UTF8.self), "{\"x\":1}")
    }

    func testAnErrorBeforeReadyIsRelayed() {
        XCTAssertThrowsError(try launch("cat >/dev/null; echo 'envmount: /dev/fuse is missing: do X' >&2; exit 1")) { e in
            XCTAssertEqual("\(e)", "/dev/fuse is missing: do X")
        }
        XCTAssertThrowsError(try launch("exit 3")) { e in XCTAssertTrue("\(e)".contains("status 3"), "\(e)") }
    }

    /// A daemon that never says READY (and keeps its pipes open) is killed at the deadline; the
    /// wait does not block in a read past it.
    func testADaemonThatNeverAnswersIsStoppedAtTheDeadline() throws {
        let dir = try TempDir("launch")
        defer { dir.remove() }
        let start = Date()
        XCTAssertThrowsError(try launch("echo $$ > \(dir.path)/pid; echo not-ready; exec sleep 60", deadline: 1.5)) { e in
            XCTAssertTrue("\(e)".contains("did not answer within 1 s"), "\(e)")
            XCTAssertTrue("\(e)".contains("stopped it"), "\(e)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        let pid = Int32(String(decoding: try FS.readFile(dir.path + "/pid"), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))!
        XCTAssertFalse(ProcessControl.isAlive(pid), "the daemon \(pid) still runs after the deadline")
    }

    /// One that ignores SIGTERM gets SIGKILL.
    func testADaemonIgnoringSigtermIsKilled() throws {
        XCTAssertThrowsError(try launch("trap '' TERM; while :; do sleep 1; done", deadline: 0.5)) { e in
            XCTAssertTrue("\(e)".contains("killed it (SIGKILL)"), "\(e)")
        }
    }
}
