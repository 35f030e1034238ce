import EnvFormat
import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// Warm, profiles, offline mounts and crash safety, with a directory store that the tests
/// "stop" by renaming it away.
final class CacheAndWarmTests: MountTestCase {

    /// A venv with a distribution `Envmount_Probe` (dist-info + RECORD) whose files fill a few
    /// chunks of their own, and an unrelated large file after it in path order.
    func makeVenv(_ path: String) throws -> (site: String, probeFiles: [String], other: String) {
        try TreeFixture.makeVenv(path)
        let lib = try FS.listDirectory(path + "/lib").first { $0.hasPrefix("python3") }!
        let site = "lib/\(lib)/site-packages"
        var rng = SeededRandom(seed: 3)
        var record = ""
        var files: [String] = []
        for f in ["envmount_probe/__init__.py", "envmount_probe/data1.bin", "envmount_probe/data2.bin"] {
            if f.hasSuffix(".bin") { try writeFile((path + "/" + site + "/" + f).pathBytes, rng.bytes(3 << 20)) }
            record += "\(f),sha256=x,1\n"
            files.append(site + "/" + f)
        }
        let di = path + "/" + site + "/Envmount_Probe-1.0.dist-info"
        try FS.makeDirectories(di)
        try writeFile((di + "/METADATA").pathBytes, Array("Name: Envmount_Probe\nVersion: 1.0\n".utf8))
        try writeFile((di + "/RECORD").pathBytes, Array((record + "Envmount_Probe-1.0.dist-info/RECORD,,\n").utf8))
        let other = site + "/zz_other/big.bin"
        try FS.makeDirectories(path + "/" + site + "/zz_other")
        try writeFile((path + "/" + other).pathBytes, rng.bytes(8 << 20))
        return (site, files, other)
    }

    func stopStore(_ store: String) throws { try FS.rename(store, store + ".stopped") }

    func testWarmAPackageThenReadAllItsFilesWithTheStoreStopped() throws {
        let src = h.dir + "/src/venv", store = h.dir + "/store", mnt = h.dir + "/mnt"
        let v = try makeVenv(src)
        XCTAssertEqual(try h.publish(src, store).status, 0)
        try h.mount(store, mnt, cache: h.dir + "/cache", ["--read-ahead-chunks", "0", "--stream-read-ahead", "0"])

        let bad = try h.run("envmount", ["warm", mnt, "envmount-prob"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("did you mean") && bad.stderr.contains("Envmount_Probe"), bad.stderr)

        let w = try h.run("envmount", ["warm", mnt, "ENVMOUNT-probe"])
        XCTAssertEqual(w.status, 0, w.stderr)
        XCTAssertTrue(w.stdout.contains("Envmount_Probe:"), w.stdout)
        try stopStore(store)
        for f in v.probeFiles {
            XCTAssertEqual(try TreeFixture.readAll((mnt + "/" + f).pathBytes), try TreeFixture.readAll((src + "/" + f).pathBytes), f)
        }
        XCTAssertThrowsError(try TreeFixture.readAll((mnt + "/" + v.other).pathBytes), "an unwarmed file read without the store") {
            XCTAssertEqual(($0 as? SystemError)?.errno, EIO)
        }
        let s = try status(mnt)
        XCTAssertGreaterThan(s["fetchErrors"] as? Int ?? 0, 0)
        XCTAssertNotNil(s["lastError"] as? String)
    }

    func testAProfileSavedOnOneMountWarmsAFreshCacheOnAnotherMount() throws {
        let src = h.dir + "/src/venv", store = h.dir + "/store"
        _ = try makeVenv(src)
        XCTAssertEqual(try h.publish(src, store).status, 0)
        let workload = ["-c", "import envmount_probe, json, email.mime.text; print(envmount_probe.VALUE)"]

        let a = h.dir + "/mnt-a"
        try h.mount(store, a, cache: h.dir + "/cache-a")
        let first = try h.run(a + "/bin/python", workload)
        XCTAssertEqual(first.status, 0, first.stderr)
        let saved = try h.run("envmount", ["profile", "save", a, "import-probe"])
        XCTAssertEqual(saved.status, 0, saved.stderr)
        XCTAssertEqual(try h.unmount(a).status, 0)

        let missing = try h.run("envmount", ["mount", store, h.dir + "/src", "--prefetch", "no-such-profile", "--cache-dir", h.dir + "/cache-b"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("no profile 'no-such-profile'"), missing.stderr)

        let b = h.dir + "/mnt-b"
        try h.mount(store, b, cache: h.dir + "/cache-b", ["--prefetch", "import-probe", "--read-ahead-chunks", "0"])
        let deadline = Date().addingTimeInterval(30)
        var finished = false
        while Date() < deadline && !finished {
            let jobs = try status(b)["jobs"] as? [[String: Any]] ?? []
            finished = jobs.first?["finished"] as? Bool ?? false
            if !finished { usleep(100_000) }
        }
        XCTAssertTrue(finished, "the profile prefetch did not finish")
        try stopStore(store)
        let second = try h.run(b + "/bin/python", workload)
        XCTAssertEqual(second.status, 0, "the recorded workload failed without the store: \(second.stderr)")
        XCTAssertEqual(second.stdout, first.stdout)
    }

    func testRemountOfflineFromAWarmedCache() throws {
        let src = h.dir + "/src/venv", store = h.dir + "/store", mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        _ = try makeVenv(src)
        XCTAssertEqual(try h.publish(src, store).status, 0)
        try h.mount(store, mnt, cache: cache)
        let w = try h.run("envmount", ["warm", mnt, "--all"])
        XCTAssertEqual(w.status, 0, w.stderr)
        XCTAssertTrue(w.stdout.contains("complete"), w.stdout)
        XCTAssertEqual(try h.unmount(mnt).status, 0)

        try stopStore(store)
        let r = try h.run("envmount", ["mount", store, mnt, "--env", "venv", "--cache-dir", cache])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("offline"), "no word of the offline mount: \(r.stderr)")
        try h.adopt(mnt, r)
        XCTAssertEqual(try status(mnt)["offline"] as? Bool, true)
        XCTAssertGreaterThan(try TreeFixture.assertSame(source: src, mount: mnt), 10)
    }

    func testKillNineDuringFetchesLeavesNoCorruptCacheEntry() throws {
        let src = h.dir + "/src/big", store = h.dir + "/store", mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        try FS.makeDirectories(src)
        var rng = SeededRandom(seed: 11)
        for i in 0..<4 { try writeFile((src + "/f\(i).bin").pathBytes, rng.bytes(24 << 20)) }
        XCTAssertEqual(try h.publish(src, store).status, 0)
        for round in 0..<3 {
            let pid = try h.mount(store, mnt, cache: cache, ["--fetch-threads", "8"])
            // Start a warm and readers, then kill the daemon while they run.
            _ = try h.run("envmount", ["warm", mnt, "--all", "--background"])
            let reader = Process()
            reader.executableURL = URL(fileURLWithPath: "/bin/cat")
            reader.arguments = (0..<4).map { mnt + "/f\($0).bin" }
            reader.standardOutput = FileHandle.nullDevice
            reader.standardError = FileHandle.nullDevice
            try reader.run()
            usleep(UInt32(30_000 + round * 40_000))
            kill(pid, SIGKILL)
            XCTAssertTrue(Harness.waitForExit(pid))
            reader.waitUntilExit()
            _ = try h.run("/bin/fusermount3", ["-u", "-z", mnt])
        }
        // Reopen (a new mount cleans temporaries of dead writers), then check every entry. Without
        // native serving: once every chunk is cached this daemon would start materializing a tree,
        // and the temporary of that live writer is not what this test looks for.
        try h.mount(store, mnt, cache: cache, ["--no-native"])
        var checked = 0
        for shard in try FS.listDirectory(cache + "/v1/chunks") {
            for name in try FS.listDirectory(cache + "/v1/chunks/" + shard) {
                let bytes = try FS.readFile(cache + "/v1/chunks/\(shard)/\(name)")
                XCTAssertEqual(ChunkID.of(bytes).hex, name, "cache entry \(name) is corrupt")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 0)
        XCTAssertEqual(try FS.listDirectory(cache + "/v1/tmp"), [], "temporaries of killed daemons were left behind")
        for i in 0..<4 {
            XCTAssertEqual(try TreeFixture.readAll((mnt + "/f\(i).bin").pathBytes), try TreeFixture.readAll((src + "/f\(i).bin").pathBytes))
        }
    }

    func testA64MiBCacheLimitHoldsWhileReadingFarMore() throws {
        let src = h.dir + "/src/many", store = h.dir + "/store", mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        try FS.makeDirectories(src)
        var rng = SeededRandom(seed: 5)
        for i in 0..<12 { try writeFile((src + "/f\(i).bin").pathBytes, rng.bytes(20 << 20)) }   // 240 MiB
        XCTAssertEqual(try h.publish(src, store).status, 0)
        try h.mount(store, mnt, cache: cache, ["--cache-size", "64M"])
        func cacheBytes() throws -> UInt64 {
            var total: UInt64 = 0
            for shard in try FS.listDirectory(cache + "/v1/chunks") {
                for n in try FS.listDirectory(cache + "/v1/chunks/" + shard) { total += (try? FS.lstat(cache + "/v1/chunks/\(shard)/\(n)").size) ?? 0 }
            }
            return total
        }
        for round in 0..<2 {
            for i in 0..<12 {
                XCTAssertEqual(try TreeFixture.readAll((mnt + "/f\(i).bin").pathBytes), try TreeFixture.readAll((src + "/f\(i).bin").pathBytes), "f\(i) round \(round)")
                // Pages the kernel kept would hide the daemon: drop them so round 2 refetches.
                Harness.dropPageCache()
                let used = try cacheBytes()
                XCTAssertLessThanOrEqual(used, 64 << 20, "cache holds \(used) bytes after f\(i)")
            }
        }
        let s = try status(mnt)
        XCTAssertEqual(s["cacheLimit"] as? Int, 64 << 20)
        XCTAssertGreaterThan(s["chunksFetched"] as? Int ?? 0, 300, "the second round should have refetched evicted chunks")
    }

    func testStatusAndWarmFailClearlyWhenNoDaemonServesThePath() throws {
        try FS.makeDirectories(h.dir + "/empty")
        for args in [["status", h.dir + "/empty"], ["warm", h.dir + "/empty", "--all"], ["profile", "save", h.dir + "/empty", "p"]] {
            let r = try h.run("envmount", args)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains("no envmount daemon serves"), r.stderr)
        }
    }
}
