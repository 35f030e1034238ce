import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// `envmount status` counts the FUSE requests a workload costs, by operation, on a real mount:
/// the evidence the WAN benchmark reports for a cold start.
final class FuseCountersTests: MountTestCase {
    /// Publishes 3 MiB in pkg/data.bin; returns the bytes.
    private func publishData(_ src: String, _ store: String) throws -> [UInt8] {
        try FS.makeDirectories(src + "/pkg")
        var rng = SeededRandom(seed: 9)
        let data = rng.bytes(3 << 20)
        try writeFile((src + "/pkg/data.bin").pathBytes, data)
        XCTAssertEqual(try h.publish(src, store, ["--env", "count"]).status, 0)
        return data
    }

    /// FUSE alone (`--no-front-overlay`): every isatty is an IOCTL round trip to the daemon.
    func testStatusCountsTheRequestsOfAnOpenIsattyReadAndTheWaitsForChunks() throws {
        let src = h.dir + "/src", store = h.dir + "/store", mnt = h.dir + "/mnt"
        let data = try publishData(src, store)
        try h.mount(store, mnt, cache: h.dir + "/cache", ["--read-ahead-chunks", "0", "--no-front-overlay"])
        XCTAssertEqual(MountTable.find(mnt)?.fsType, "fuse.envmount")

        let before = try status(mnt)
        let ops0 = before["fuseOps"] as? [String: Int] ?? [:]
        XCTAssertNil(ops0["ioctl"], "no file has been opened yet: \(ops0)")
        XCTAssertEqual(before["demandWaits"] as? Int, 0)

        // What Python does per module: open, isatty (an IOCTL the kernel always forwards), read.
        let fd = try FileDescriptor.open(mnt + "/pkg/data.bin", O_RDONLY)
        XCTAssertEqual(isatty(fd.rawValue), 0)
        XCTAssertEqual(isatty(fd.rawValue), 0)
        XCTAssertEqual(try fd.read(count: data.count + 1, offset: 0), data)
        fd.close()

        let after = try status(mnt)
        let ops = after["fuseOps"] as? [String: Int] ?? [:]
        XCTAssertEqual(ops["ioctl"], 2, "each isatty is a round trip: \(ops)")
        XCTAssertGreaterThanOrEqual(ops["lookup"] ?? 0, 2, "pkg and data.bin: \(ops)")
        XCTAssertGreaterThanOrEqual(ops["read"] ?? 0, 3, "3 MiB in reads of at most 1 MiB: \(ops)")
        XCTAssertNil(ops["release"], "zero-message open: no OPEN/RELEASE traffic: \(ops)")
        XCTAssertGreaterThanOrEqual(after["fuseReadBytes"] as? Int ?? 0, data.count)
        XCTAssertGreaterThanOrEqual(after["demandWaits"] as? Int ?? 0, 1, "the chunks were not cached: reads waited")
        XCTAssertGreaterThan(after["demandWaitSeconds"] as? Double ?? 0, 0)
        let cpu = (after["cpuUserSeconds"] as? Double ?? 0) + (after["cpuSystemSeconds"] as? Double ?? 0)
        XCTAssertGreaterThan(cpu, 0)

        let human = try h.run("envmount", ["status", mnt])
        XCTAssertTrue(human.stdout.contains("ioctl 2"), human.stdout)
        XCTAssertTrue(human.stdout.contains("daemon CPU"), human.stdout)
    }

    /// The default root mount has a read-only overlay in front of FUSE: the same open, isatty
    /// and read cost no IOCTL, the mount point's root shows the published root's attributes,
    /// status sees a plain (not native) mount, and unmount takes down both mounts and the
    /// overlay's empty directory.
    func testTheFrontOverlayKeepsIsattyFromTheDaemon() throws {
        let src = h.dir + "/src", store = h.dir + "/store", mnt = h.dir + "/mnt"
        let data = try publishData(src, store)
        try FS.chmod(src.pathBytes, 0o750)
        try FS.setMtime(src.pathBytes, ns: 1_600_000_000_123_456_789)
        XCTAssertEqual(try h.publish(src, store, ["--env", "count"]).status, 0)
        let pid = try h.mount(store, mnt, cache: h.dir + "/cache", ["--read-ahead-chunks", "0"])

        let entry = try XCTUnwrap(MountTable.find(mnt))
        XCTAssertEqual(entry.fsType, "overlay")
        XCTAssertEqual(entry.source, "envmount:count")
        XCTAssertNil(entry.superOption("upperdir"))
        let lowers = (entry.superOption("lowerdir") ?? "").split(separator: ":").map(String.init)
        XCTAssertEqual(lowers.count, 2, "\(lowers)")
        guard lowers.count == 2 else { return }
        let (empty, fuseLower) = (lowers[0], lowers[1])
        XCTAssertTrue(empty.hasSuffix(".front"), empty)
        XCTAssertEqual(try FS.listDirectory(empty), [], "the overlay's top lower is not empty")
        XCTAssertEqual(MountTable.find(fuseLower)?.fsType, "fuse.envmount")
        let root = try FS.stat(mnt)
        XCTAssertEqual(root.mode, 0o750)
        XCTAssertEqual(root.mtimeNs, 1_600_000_000_123_456_789)
        XCTAssertEqual(try FS.listDirectory(mnt), ["pkg"])

        let fd = try FileDescriptor.open(mnt + "/pkg/data.bin", O_RDONLY)
        XCTAssertEqual(isatty(fd.rawValue), 0)
        XCTAssertEqual(errno, ENOTTY)
        XCTAssertEqual(isatty(fd.rawValue), 0)
        XCTAssertEqual(try fd.read(count: data.count + 1, offset: 0), data)
        fd.close()

        let s = try status(mnt)
        let ops = s["fuseOps"] as? [String: Int] ?? [:]
        XCTAssertNil(ops["ioctl"], "isatty reached the daemon through the overlay: \(ops)")
        XCTAssertGreaterThanOrEqual(ops["read"] ?? 0, 3, "the bytes still come from the daemon: \(ops)")
        XCTAssertNil(s["nativeTree"] as? String, "a front overlay is no materialized tree: \(s)")
        XCTAssertNil(s["writableLayer"] as? String)

        let r = try h.unmount(mnt)
        XCTAssertEqual(r.status, 0, r.stderr)
        // `unmount` returns once the daemon has exited, so a mount made right after at the same
        // path cannot meet it still tearing down (a late daemon used to unmount the new overlay).
        XCTAssertTrue(ProcessControl.hasExited(pid), "daemon \(pid) still runs when unmount returns")
        XCTAssertFalse(Harness.isMounted(mnt))
        XCTAssertFalse(Harness.isMounted(fuseLower))
        XCTAssertFalse(FS.exists(empty), "the empty top lower was left behind")
        XCTAssertFalse(FS.exists(fuseLower), "the hidden FUSE mount point was left behind")

        try h.mount(store, mnt, cache: h.dir + "/cache", ["--read-ahead-chunks", "0"])
        usleep(300_000)
        XCTAssertEqual(MountTable.find(mnt)?.fsType, "overlay", "the new mount's overlay is gone")
        XCTAssertEqual(try TreeFixture.readAll((mnt + "/pkg/data.bin").pathBytes), data)
    }
}
