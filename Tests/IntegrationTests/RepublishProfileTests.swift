import EnvFormat
import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// A profile saved through a real mount of revision 1 is carried by `envpublish` to revision 2,
/// where one package changed, and prefetches everything the workload needs on a fresh mount.
final class RepublishProfileTests: MountTestCase {

    /// The probe package reads its own 2 MiB data file at import; `zz_other` is never read.
    func writeProbe(_ site: String, version: UInt64) throws {
        var rng = SeededRandom(seed: 40 + version)
        try writeFile((site + "/envmount_probe/data.bin").pathBytes, rng.bytes(2 << 20))
        try writeFile((site + "/envmount_probe/__init__.py").pathBytes, Array("""
            import hashlib, os
            with open(os.path.join(os.path.dirname(__file__), "data.bin"), "rb") as f:
                VALUE = "v\(version) " + hashlib.sha256(f.read()).hexdigest()
            """.utf8))
    }

    func testAProfileOfRevisionOneIsCarriedToRevisionTwoAndPrefetchesItsChangedPackage() throws {
        let src = h.dir + "/src/venv", store = h.dir + "/store"
        try TreeFixture.makeVenv(src)
        let lib = try FS.listDirectory(src + "/lib").first { $0.hasPrefix("python3") }!
        let rel = "lib/\(lib)/site-packages", site = src + "/" + rel
        try writeProbe(site, version: 1)
        try FS.makeDirectories(site + "/zz_other")
        var rng = SeededRandom(seed: 7)
        try writeFile((site + "/zz_other/big.bin").pathBytes, rng.bytes(16 << 20))
        XCTAssertEqual(try h.publish(src, store).status, 0)
        let workload = ["-c", "import envmount_probe; print(envmount_probe.VALUE)"]

        let a = h.dir + "/mnt-a"
        try h.mount(store, a, cache: h.dir + "/cache-a", ["--read-ahead-chunks", "0", "--stream-read-ahead", "0"])
        XCTAssertEqual(try h.run(a + "/bin/python", workload).status, 0)
        let saved = try h.run("envmount", ["profile", "save", a, "probe"])
        XCTAssertEqual(saved.status, 0, saved.stderr)
        XCTAssertEqual(try h.unmount(a).status, 0)

        try writeProbe(site, version: 2)
        let expected = try h.run(src + "/bin/python", workload)
        XCTAssertTrue(expected.stdout.hasPrefix("v2 "), expected.stdout + expected.stderr)
        let pub = try h.run("envpublish", [src, store])
        XCTAssertEqual(pub.status, 0, pub.stderr)
        XCTAssertTrue(pub.stdout.contains("carried profile probe (") && pub.stdout.contains("from revision 1"), pub.stdout + pub.stderr)

        // The carried object names revision 2's manifest and covers the files the run read.
        let ref = try Ref.decode(try FS.readFile(store + "/refs/venv"))
        XCTAssertEqual(ref.revision, 2)
        let m2 = try Manifest.decode(try FS.readFile(store + "/" + Ref.manifestKey(ref.manifest)))
        let carried = try Profile.decode(try FS.readFile(store + "/" + Profile.objectKey(env: "venv", manifest: ref.manifest, name: "probe")))
        XCTAssertEqual(carried.manifest, ref.manifest)
        for f in ["envmount_probe/__init__.py", "envmount_probe/data.bin"] {
            let e = try XCTUnwrap(m2.resolve(Array((rel + "/" + f).utf8)), f)
            let ids = Set(m2.fileSpans(e).map { m2.chunks[Int(m2.spans[$0].chunk)].id })
            XCTAssertTrue(ids.isSubset(of: Set(carried.chunks)), "\(f): revision 2's chunks are not all in the carried profile")
        }
        let other = m2.resolve(Array((rel + "/zz_other/big.bin").utf8))!
        let otherIDs = Set(m2.fileSpans(other).map { m2.chunks[Int(m2.spans[$0].chunk)].id })
        // Only the chunk it shared with data.bin's tail, re-cut, may come along (bounded by one max chunk).
        let along = m2.chunks.filter { otherIDs.intersection(carried.chunks).contains($0.id) }.reduce(0) { $0 + Int($1.rawSize) }
        XCTAssertLessThanOrEqual(along, 8 << 20, "the unread package came along")

        // A fresh mount of revision 2 prefetches it; then the workload runs with the store gone.
        let b = h.dir + "/mnt-b"
        try h.mount(store, b, cache: h.dir + "/cache-b", ["--prefetch", "probe", "--read-ahead-chunks", "0", "--stream-read-ahead", "0"])
        let deadline = Date().addingTimeInterval(60)
        var done = false
        while Date() < deadline && !done {
            let r = try h.run("envmount", ["status", b, "--json"])
            let s = (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])?.first ?? [:]
            let job = (s["jobs"] as? [[String: Any]])?.first
            done = job?["finished"] as? Bool ?? false
            if done { XCTAssertEqual(job?["label"] as? String, "profile probe", "\(s)") }
            if !done { usleep(100_000) }
        }
        XCTAssertTrue(done, "the carried profile's prefetch did not finish")
        try FS.rename(store, store + ".stopped")
        let run = try h.run(b + "/bin/python", workload)
        XCTAssertEqual(run.status, 0, "the workload needed chunks the carried profile lacks: \(run.stderr)")
        XCTAssertEqual(run.stdout, expected.stdout)
    }
}
