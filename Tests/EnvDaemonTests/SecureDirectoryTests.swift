@testable import EnvDaemon
import Foundation
import Glibc
import SysKit
import XCTest

final class SecureDirectoryTests: XCTestCase {
    func testCreatedPrivateWhateverTheUmask() throws {
        let dir = try TempDir("sec")
        defer { dir.remove() }
        let old = umask(0)
        defer { umask(old) }
        try SecureDirectory.prepare(dir.path + "/a/b/sock")
        XCTAssertEqual(try FS.stat(dir.path + "/a/b/sock").mode, 0o700)
        XCTAssertEqual(try FS.stat(dir.path + "/a").mode, 0o700)
        try SecureDirectory.prepare(dir.path + "/a/b/sock")
    }

    func testAnotherUsersOrAWritableDirectoryIsRefused() throws {
        try XCTSkipIf(geteuid() != 0, "chown to another user needs root")
        let dir = try TempDir("sec")
        defer { dir.remove() }
        let hostile = dir.path + "/hostile"
        try FS.mkdir(hostile.pathBytes, mode: 0o777)
        try FS.chmod(hostile.pathBytes, 0o777)
        XCTAssertEqual(chown(hostile, 65534, 65534), 0)
        XCTAssertThrowsError(try SecureDirectory.prepare(hostile)) { e in
            XCTAssertTrue("\(e)".contains(hostile) && "\(e)".contains("owned by uid 65534"), "\(e)")
        }
        XCTAssertEqual(chown(hostile, 0, 0), 0)
        XCTAssertThrowsError(try SecureDirectory.check(hostile)) { e in
            XCTAssertTrue("\(e)".contains("writable by"), "\(e)")
        }
        try FS.chmod(hostile.pathBytes, 0o770)
        XCTAssertThrowsError(try SecureDirectory.check(hostile)) { XCTAssertTrue("\($0)".contains("its group"), "\($0)") }
        try FS.chmod(hostile.pathBytes, 0o755)
        XCTAssertNoThrow(try SecureDirectory.check(hostile))
        try writeFile(dir.path + "/file", [1])
        XCTAssertThrowsError(try SecureDirectory.check(dir.path + "/file"))
    }
}

final class ControlPathsTests: XCTestCase {
    func testSocketDirectoryPerUser() {
        XCTAssertEqual(ControlPaths.directory(uid: 0, runtimeDir: "/run/user/0"), "/run/envmount")
        XCTAssertEqual(ControlPaths.directory(uid: 1000, runtimeDir: "/run/user/1000"), "/run/user/1000/envmount")
        XCTAssertEqual(ControlPaths.directory(uid: 1000, runtimeDir: nil), "/tmp/envmount-1000")
        XCTAssertEqual(ControlPaths.directory(uid: 1000, runtimeDir: "relative"), "/tmp/envmount-1000")
    }
}
