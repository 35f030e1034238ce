import Foundation
import Glibc
import SysKit
import XCTest

/// The overlay in front of a plain root mount (EnvDaemon/FrontOverlay.swift) must not change how
/// a mount ends: taken down by hand at its mount point, or left behind by a killed daemon.
final class FrontOverlayTests: MountTestCase {
    /// The overlay at `mnt` and the FUSE mount under it (its last lower).
    private func lowers(_ mnt: String) throws -> (empty: String, fuse: String) {
        let e = try XCTUnwrap(MountTable.find(mnt), "\(mnt) is not mounted")
        XCTAssertEqual(e.fsType, "overlay", "\(mnt): \(e.fsType) \(e.source)")
        let l = (e.superOption("lowerdir") ?? "").split(separator: ":").map(String.init)
        guard l.count == 2 else { throw XCTSkip("lowerdir \(l)") }
        return (l[0], l[1])
    }

    private func mountCount(_ path: String) -> Int { MountTable.entries().filter { $0.mountpoint == path }.count }

    private func publishOne(_ store: String) throws {
        let src = h.dir + "/src/front"
        try FS.makeDirectories(src)
        try writeFile((src + "/f").pathBytes, Array("hello".utf8))
        XCTAssertEqual(try h.publish(src, store).status, 0)
    }

    /// `umount MOUNTPOINT` (what a plain FUSE mount used to be taken down with) removes the
    /// overlay; the daemon then detaches its FUSE mount and exits, leaving nothing mounted.
    func testAPlainUnmountOfTheMountPointEndsTheDaemon() throws {
        let store = h.dir + "/store", mnt = h.dir + "/mnt"
        try publishOne(store)
        let pid = try h.mount(store, mnt, cache: h.dir + "/cache")
        let (empty, fuse) = try lowers(mnt)
        XCTAssertEqual(String(decoding: try FS.readFile(mnt + "/f"), as: UTF8.self), "hello")
        try FS.unmount(mnt)
        XCTAssertTrue(Harness.waitForExit(pid, seconds: 15), "daemon \(pid) still runs with its overlay gone")
        XCTAssertEqual(mountCount(fuse), 0, "the FUSE mount under the overlay stayed")
        XCTAssertFalse(FS.exists(empty))
        XCTAssertFalse(Harness.isMounted(mnt))
    }

    /// A daemon killed with SIGKILL leaves a dead FUSE mount under its overlay; with the overlay
    /// taken down by hand (`fusermount3 -u -z MOUNTPOINT`), the next mount at that mount point
    /// detaches the dead one instead of stacking on it, again and again.
    func testKilledDaemonsLeaveNoStackOfDeadMounts() throws {
        let store = h.dir + "/store", mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        try publishOne(store)
        var fuse = ""
        for _ in 0..<3 {
            let pid = try h.mount(store, mnt, cache: cache)
            fuse = try lowers(mnt).fuse
            XCTAssertEqual(mountCount(fuse), 1, "dead FUSE mounts stacked at \(fuse)")
            kill(pid, SIGKILL)
            XCTAssertTrue(Harness.waitForExit(pid))
            XCTAssertThrowsError(try FS.readFile(mnt + "/f")) { XCTAssertEqual(($0 as? SystemError)?.errno, ENOTCONN) }
            XCTAssertEqual(try h.run("/bin/fusermount3", ["-u", "-z", mnt]).status, 0)
        }
        let pid = try h.mount(store, mnt, cache: cache)
        XCTAssertEqual(mountCount(fuse), 1, "dead FUSE mounts stacked at \(fuse)")
        XCTAssertEqual(String(decoding: try FS.readFile(mnt + "/f"), as: UTF8.self), "hello")
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        XCTAssertTrue(Harness.waitForExit(pid))
        XCTAssertEqual(mountCount(fuse), 0)
    }
}
