import Foundation
import SysKit
import XCTest

/// The Foundation-free runner envpublish uses for envmount and the environment's Python.
final class SubprocessTests: XCTestCase {
    func testStatusOutputAndATimeLimitThatStopsTheWholeGroup() throws {
        let out = NSTemporaryDirectory() + "subprocess-\(getpid()).out"
        defer { try? FS.unlink(out) }
        let r = try Subprocess.run(["/bin/sh", "-c", "echo to-out; echo to-err >&2; exit 3"], outputFile: out)
        XCTAssertEqual(r.status, 3)
        XCTAssertFalse(r.timedOut)
        XCTAssertEqual(String(decoding: try FS.readFile(out), as: UTF8.self), "to-out\nto-err\n")

        // The shell's child (sleep) is in the same process group and is stopped with it.
        let t = try Subprocess.run(["/bin/sh", "-c", "sleep 30; echo late"], outputFile: out, timeoutSeconds: 0.5)
        XCTAssertTrue(t.timedOut)
        XCTAssertEqual(t.status, 128 + SIGKILL)
        XCTAssertLessThan(t.seconds, 10)

        let d = try Subprocess.run(["/bin/sh", "-c", "pwd > \(out)"], directory: "/usr")
        XCTAssertEqual(d.status, 0)
        XCTAssertEqual(String(decoding: try FS.readFile(out), as: UTF8.self), "/usr\n")

        XCTAssertThrowsError(try Subprocess.run(["/nonexistent/program"]))
    }
}
