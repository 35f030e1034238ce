@testable import EnvDaemon
import Foundation
@testable import FuseKit
import Glibc
import SysKit
import XCTest

/// A kernel mount that fails must throw one line, never crash (it used to free the session twice).
final class FuseFailureTests: XCTestCase {
    func testAFailedKernelMountThrowsOnceAndDoesNotCrash() throws {
        try XCTSkipIf(!FS.exists("/dev/fuse"), "needs /dev/fuse to get past the preflight")
        let f = try ServiceFixture()
        let missing = f.dir.path + "/no-such-mountpoint"
        for _ in 0..<3 {
            XCTAssertThrowsError(try FuseSession(fs: FuseBridge(f.fs), mountpoint: missing,
                                                 options: ["ro", "subtype=envmount"], config: FuseConfig())) { e in
                guard let m = e as? FuseMountError else { return XCTFail("\(e)") }
                XCTAssertEqual(m.cause, .refused)
                XCTAssertTrue(m.description.contains(missing), m.description)
                XCTAssertFalse(m.description.contains("\n"), m.description)
            }
        }
    }

    func testPreflightNamesAMissingOrFakeDevice() throws {
        let dir = try TempDir("dev")
        defer { dir.remove() }
        XCTAssertThrowsError(try FuseSession.preflight(mountpoint: "/m", device: dir.path + "/fuse", uid: 0)) { e in
            XCTAssertEqual((e as? FuseMountError)?.cause, .deviceMissing)
            XCTAssertTrue("\(e)".contains("--device"), "\(e)")
        }
        try writeFile(dir.path + "/fuse", [])
        XCTAssertThrowsError(try FuseSession.preflight(mountpoint: "/m", device: dir.path + "/fuse", uid: 0)) { e in
            XCTAssertEqual((e as? FuseMountError)?.cause, .deviceMissing)
            XCTAssertTrue("\(e)".contains("not the FUSE device"), "\(e)")
        }
    }

    func testFusermountMessagesBecomeOneLineWithWhatToDo() {
        let a = FuseSession.classify(mountpoint: "/m", libfuseSaid: "fusermount3: option allow_other only allowed if 'user_allow_other' is set in /etc/fuse.conf\n")
        XCTAssertEqual(a.cause, .refused)
        XCTAssertTrue(a.description.contains("user_allow_other"))
        let p = FuseSession.classify(mountpoint: "/m", libfuseSaid: "fusermount3: user has no write access to mountpoint /m\n")
        XCTAssertEqual(p.cause, .permissionDenied)
        XCTAssertTrue(p.description.contains("directory you own"))
        XCTAssertFalse(FuseSession.classify(mountpoint: "/m", libfuseSaid: "").description.contains("\n"))
    }
}
