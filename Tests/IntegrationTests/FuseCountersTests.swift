import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// `envmount status` counts the FUSE requests a workload costs, by operation, on a real mount:
/// the evidence the WAN benchmark reports for a cold start.
final class FuseCountersTests: MountTestCase {
    func testStatusCountsTheRequestsOfAnOpenIsattyReadAndTheWaitsForChunks() throws {
        let src = h.dir + "/src", store = h.dir + "/store", mnt = h.dir + "/mnt"
        try FS.makeDirectories(src + "/pkg")
        var rng = SeededRandom(seed: 9)
        let data = rng.bytes(3 << 20)
        try writeFile((src + "/pkg/data.bin").pathBytes, data)
        XCTAssertEqual(try h.publish(src, store, ["--env", "count"]).status, 0)
        try h.mount(store, mnt, cache: h.dir + "/cache", ["--read-ahead-chunks", "0"])

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
}
