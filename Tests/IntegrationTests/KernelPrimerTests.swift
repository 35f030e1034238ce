import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// KernelPrimer on a real mount: while profile `default` is prefetched into an empty cache, the
/// daemon lists the profile's directories and puts its small files into the page cache, so the
/// workload's lookups and reads of them send no request at all.
final class KernelPrimerTests: MountTestCase {
    /// 5 packages (`__init__.py`) of 10 bytecode files (3 KiB) and 10 sources each, an extension
    /// module (1 KiB) that gives the tree's suffix, then a 2 MiB file (over the primer's size
    /// limit). All small files lie in the first chunk (the chunker cuts no earlier than 256 KiB),
    /// so each is stored whole.
    private func makeTree(_ src: String) throws -> (pyc: [String], py: [String], big: String) {
        var rng = SeededRandom(seed: 41)
        var pyc: [String] = [], py: [String] = []
        try FS.makeDirectories(src + "/pkg")
        try writeFile((src + "/pkg/_ext.cpython-311-x86_64-linux-gnu.so").pathBytes, rng.bytes(1 << 10))
        for d in 0..<5 {
            try FS.makeDirectories("\(src)/pkg/d\(d)/__pycache__")
            try writeFile("\(src)/pkg/d\(d)/__init__.py".pathBytes, Array("# package \(d)\n".utf8))
            py.append("pkg/d\(d)/__init__.py")
            for j in 0..<10 {
                let s = "pkg/d\(d)/m\(j).py", c = "pkg/d\(d)/__pycache__/m\(j).cpython-311.pyc"
                try writeFile((src + "/" + s).pathBytes, Array("VALUE = \(d * 10 + j)\n".utf8))
                try writeFile((src + "/" + c).pathBytes, rng.bytes(3 << 10))
                py.append(s); pyc.append(c)
            }
        }
        try writeFile((src + "/zz_big.bin").pathBytes, rng.bytes(2 << 20))
        return (pyc, py, "zz_big.bin")
    }

    private func ops(_ mnt: String) throws -> [String: Int] { try status(mnt)["fuseOps"] as? [String: Int] ?? [:] }

    /// Waits until the primer reports it has gone through the whole profile.
    private func waitForPrimer(_ mnt: String) throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(30)
        while true {
            let s = try status(mnt)
            if s["primerFinished"] as? Bool == true { return s }
            if Date() > deadline { XCTFail("the primer did not finish: \(s)"); return s }
            usleep(50_000)
        }
    }

    /// What an import probes in each package before `__init__.py`, and finds absent.
    static let probes = ["__init__.cpython-311-x86_64-linux-gnu.so", "__init__.abi3.so", "__init__.so"]

    /// Probes each package's extension `__init__` names (absent), stats every source and reads
    /// every bytecode file (checked against the source tree).
    private func workload(_ mnt: String, _ src: String, _ t: (pyc: [String], py: [String], big: String)) throws {
        for d in 0..<5 {
            for p in Self.probes {
                XCTAssertThrowsError(try FS.lstat("\(mnt)/pkg/d\(d)/\(p)")) { XCTAssertEqual(($0 as? SystemError)?.errno, ENOENT) }
            }
        }
        for s in t.py { XCTAssertEqual(try FS.stat(mnt + "/" + s).size, try FS.stat(src + "/" + s).size, s) }
        for c in t.pyc {
            XCTAssertEqual(try TreeFixture.readAll((mnt + "/" + c).pathBytes), try TreeFixture.readAll((src + "/" + c).pathBytes), c)
        }
    }

    func testTheProfilesNamesAndSmallFilesAreInTheKernelBeforeTheWorkloadAsksAndNotWithNoPrime() throws {
        let src = h.dir + "/src", store = h.dir + "/store"
        let t = try makeTree(src)
        XCTAssertEqual(try h.publish(src, store, ["--env", "prime"]).status, 0)

        // Record the workload (and the big file) as profile `default`.
        let a = h.dir + "/mnt-a"
        try h.mount(store, a, cache: h.dir + "/cache-a")
        try workload(a, src, t)
        let noProfile = try status(a)
        XCTAssertNil(noProfile["primerFinished"], "no profile yet, so no primer: \(noProfile)")
        _ = try TreeFixture.readAll((a + "/" + t.big).pathBytes)
        let saved = try h.run("envmount", ["profile", "save", a, "default"])
        XCTAssertEqual(saved.status, 0, saved.stderr)
        XCTAssertEqual(try h.unmount(a).status, 0)

        // A plain mount with an empty cache prefetches `default` and primes the kernel. The kernel
        // may drop what it caches at any time (memory pressure, or other work on the machine
        // writing drop_caches): its FORGETs say so, and the requests are then expected, so that
        // try is repeated with a fresh mount and cache, up to 6 tries.
        var b = "", s: [String: Any] = [:], before: [String: Int] = [:], after: [String: Int] = [:]
        var tries = 0, evicted = false
        repeat {
            tries += 1
            if !b.isEmpty { XCTAssertEqual(try h.unmount(b).status, 0) }
            b = h.dir + "/mnt-b\(tries)"
            try h.mount(store, b, cache: h.dir + "/cache-b\(tries)", ["--read-ahead-chunks", "0"])
            s = try waitForPrimer(b)
            before = try ops(b)
            try workload(b, src, t)
            after = try ops(b)
            usleep(200_000)   // FORGETs are sent a little after the eviction
            evicted = (try ops(b)["forget"] ?? 0) > ((s["fuseOps"] as? [String: Int])?["forget"] ?? 0)
        } while evicted && tries < 6
        XCTAssertFalse(evicted, "the kernel evicted the primed inodes in each of \(tries) tries: nothing to check")
        XCTAssertEqual(s["fusePushedFiles"] as? Int, t.pyc.count + 1, "every bytecode file and the extension, no source, not the big file: \(s)")
        XCTAssertGreaterThanOrEqual(s["primedDirectories"] as? Int ?? 0, 11, "root, pkg, 5 packages, their __pycache__: \(s)")
        XCTAssertEqual(after["lookup"] ?? 0, before["lookup"] ?? 0, "a name the primer listed or probed was looked up: \(before) -> \(after)")
        XCTAssertEqual(after["read"] ?? 0, before["read"] ?? 0, "a file the primer stored was read: \(before) -> \(after)")
        XCTAssertEqual(after["readdirplus"] ?? 0, before["readdirplus"] ?? 0)
        // The big file was left to FUSE: reading it does reach the daemon (the counters can move).
        XCTAssertEqual(try TreeFixture.readAll((b + "/" + t.big).pathBytes), try TreeFixture.readAll((src + "/" + t.big).pathBytes))
        XCTAssertGreaterThan(try ops(b)["read"] ?? 0, after["read"] ?? 0)
        let human = try h.run("envmount", ["status", b])
        XCTAssertTrue(human.stdout.contains("primer") && human.stdout.contains("\(t.pyc.count + 1) files stored ahead of the workload; done"), human.stdout)

        // The same with --no-prime: every bytecode file is a READ and most names a LOOKUP.
        let c = h.dir + "/mnt-c"
        try h.mount(store, c, cache: h.dir + "/cache-c", ["--read-ahead-chunks", "0", "--no-prime"])
        let c0 = try ops(c)
        XCTAssertNil(try status(c)["primerFinished"], "--no-prime still primed")
        try workload(c, src, t)
        let c1 = try ops(c)
        XCTAssertGreaterThanOrEqual((c1["read"] ?? 0) - (c0["read"] ?? 0), t.pyc.count, "\(c0) -> \(c1)")
        XCTAssertGreaterThanOrEqual((c1["lookup"] ?? 0) - (c0["lookup"] ?? 0), t.pyc.count + 5 * Self.probes.count, "\(c0) -> \(c1)")
    }
}
