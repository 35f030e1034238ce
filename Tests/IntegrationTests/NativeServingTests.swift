import EnvFormat
import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// Materialized trees: a revision whose chunks are all cached is written whole into the cache
/// and the next mount serves it through an overlay, without the daemon.
final class NativeServingTests: MountTestCase {

    /// Mounts, warms everything and waits until the daemon says the revision is materialized.
    func warmAndMaterialize(_ store: String, _ mnt: String, _ cache: String, _ extra: [String] = []) throws {
        try h.mount(store, mnt, cache: cache, extra)
        let w = try h.run("envmount", ["warm", mnt, "--all"])
        XCTAssertEqual(w.status, 0, w.stderr)
        let end = Date().addingTimeInterval(120)
        while Date() < end, (try status(mnt)["materialized"] as? Bool) != true { usleep(200_000) }
        let logs = ((try? FS.listDirectory(cache + "/logs")) ?? []).map { String(decoding: (try? FS.readFile(cache + "/logs/" + $0)) ?? [], as: UTF8.self) }
        XCTAssertEqual(try status(mnt)["materialized"] as? Bool, true, "not materialized within 120 s: \(logs.joined())")
        XCTAssertEqual(try h.unmount(mnt).status, 0)
    }

    func testAWarmedRevisionIsServedNativelyAndMatchesTheSourceEntryByEntry() throws {
        let src = h.dir + "/src/tree", store = h.dir + "/store", mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        try TreeFixture.build(src, manyFiles: false, venv: true)
        XCTAssertEqual(try h.publish(src, store, ["--env", "tree"]).status, 0)
        // A profile `default`, which every mount prefetches, except one served natively.
        try h.mount(store, mnt, cache: cache, ["--no-relocate", "--no-prefetch"])
        XCTAssertEqual(try h.run(mnt + "/venv/bin/python", ["-c", "import envmount_probe"]).status, 0)
        let saved = try h.run("envmount", ["profile", "save", mnt, "default"])
        XCTAssertEqual(saved.status, 0, saved.stderr)
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        // The tree's venv names its source path and mnt is elsewhere: a materialized tree holds the
        // bytes as published, so it serves only a mount that presents them as published.
        try warmAndMaterialize(store, mnt, cache, ["--no-relocate"])

        let pid = try h.mount(store, mnt, cache: cache, ["--no-relocate"])
        let s = try status(mnt)
        XCTAssertNotNil(s["nativeTree"] as? String, "the second mount is not native: \(s)")
        XCTAssertEqual((s["jobs"] as? [Any])?.count, 0, "a native mount prefetched profile default: \(s)")
        // Every entry (modes, owners, mtimes, setuid, hardlinks, symlinks, odd names, the sparse file's size).
        XCTAssertGreaterThan(try TreeFixture.assertSame(source: src, mount: mnt, relocated: false), 20)
        let py = try h.run(mnt + "/venv/bin/python", ["-c", "import envmount_probe; print(envmount_probe.VALUE[:8])"])
        XCTAssertEqual(py.status, 0, py.stderr)
        // The daemon served none of it: no chunk was opened or fetched.
        let after = try status(mnt)
        XCTAssertEqual(after["cacheHits"] as? Int, 0, "\(after)")
        XCTAssertEqual(after["requests"] as? Int, 0)
        // Read-only like the FUSE mount, and setuid bits are not honoured (nosuid).
        XCTAssertThrowsError(try FileDescriptor.open(mnt + "/new-file", O_WRONLY | O_CREAT)) { e in
            XCTAssertEqual((e as? SystemError)?.errno, EROFS)
        }
        XCTAssertTrue(TestMounts.options(of: mnt).contains("nosuid"))
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        XCTAssertFalse(Harness.isMounted(mnt))
        XCTAssertTrue(Harness.waitForExit(pid), "daemon still running after unmount")

        // `cache clear` removes unmounted trees: the next mount is served through FUSE again.
        XCTAssertEqual(try h.run("envmount", ["cache", "clear", "--cache-dir", cache]).status, 0)
        try h.mount(store, mnt, cache: cache, ["--no-native"])
        XCTAssertNil(try status(mnt)["nativeTree"] as? String)
        XCTAssertEqual(try h.unmount(mnt).status, 0)
    }

    func testADamagedMaterializedFileIsNeverServed() throws {
        let src = h.dir + "/src", store = h.dir + "/store", mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        try FS.makeDirectories(src + "/pkg")
        let good = Array(repeating: Array("import os\n".utf8), count: 3000).flatMap { $0 }
        try writeFile((src + "/pkg/mod.py").pathBytes, good)
        try writeFile((src + "/pkg/other.py").pathBytes, Array("x = 1\n".utf8))
        XCTAssertEqual(try h.publish(src, store, ["--env", "d"]).status, 0)
        try warmAndMaterialize(store, mnt, cache)

        // Damage the materialized copy the way a stray write would, then put its mtime back.
        let tree = try FS.listDirectory(cache + "/v1/trees").first { !$0.hasSuffix(".seal") }!
        let victim = "\(cache)/v1/trees/\(tree)/pkg/mod.py"
        let mtime = try FS.lstat(victim).mtimeNs
        let fd = try FileDescriptor.open(victim, O_WRONLY)
        try fd.pwriteAll(Array("import sys".utf8), at: 100)
        fd.close()
        try FS.setMtime(victim.pathBytes, ns: mtime)

        try h.mount(store, mnt, cache: cache)
        XCTAssertNil(try status(mnt)["nativeTree"] as? String, "a damaged tree was served")
        XCTAssertEqual(try TreeFixture.readAll((mnt + "/pkg/mod.py").pathBytes), good)
        // The tree was removed (and may already be rebuilt, from verified chunks).
        if FS.exists(victim) { XCTAssertEqual(try TreeFixture.readAll(victim.pathBytes), good, "the damaged file is still in the cache") }
        // Logged after READY, so maybe after the mount command returned.
        var log = ""
        let logEnd = Date().addingTimeInterval(10)
        repeat {
            log = String(decoding: (try? FS.readFile(cache + "/logs/d.log")) ?? [], as: UTF8.self)
            if log.contains("is damaged") { break }
            usleep(50_000)
        } while Date() < logEnd
        XCTAssertTrue(log.contains("is damaged"), log)
        // Rebuilt from verified chunks: the next mount is native again, with the right bytes.
        let end = Date().addingTimeInterval(60)
        while Date() < end, (try status(mnt)["materialized"] as? Bool) != true { usleep(200_000) }
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        try h.mount(store, mnt, cache: cache)
        XCTAssertNotNil(try status(mnt)["nativeTree"] as? String)
        XCTAssertEqual(try TreeFixture.readAll((mnt + "/pkg/mod.py").pathBytes), good)
        XCTAssertEqual(try h.unmount(mnt).status, 0)

        // Only the ctime moved (a touch to the same mtime, as a link or chmod would): the bytes
        // are re-hashed, still right, and the tree is served.
        let rebuilt = try FS.listDirectory(cache + "/v1/trees").first { !$0.contains(".") }!
        let touched = "\(cache)/v1/trees/\(rebuilt)/pkg/mod.py"
        let ctime = try FS.lstat(touched).ctimeNs
        try FS.setMtime(touched.pathBytes, ns: try FS.lstat(touched).mtimeNs)
        XCTAssertNotEqual(try FS.lstat(touched).ctimeNs, ctime)
        try h.mount(store, mnt, cache: cache)
        XCTAssertNotNil(try status(mnt)["nativeTree"] as? String, "a tree whose bytes are intact was not served")
        XCTAssertEqual(try TreeFixture.readAll((mnt + "/pkg/mod.py").pathBytes), good)
        XCTAssertEqual(try h.unmount(mnt).status, 0)

        // Bytes changed at the same size and both times put back as far as they can be (mtime
        // restored; the ctime cannot be): never served.
        let mtime2 = try FS.lstat(touched).mtimeNs
        let fd2 = try FileDescriptor.open(touched, O_WRONLY)
        try fd2.pwriteAll(Array("import sys".utf8), at: 20_000)
        fd2.close()
        try FS.setMtime(touched.pathBytes, ns: mtime2)
        XCTAssertEqual(try FS.lstat(touched).size, UInt64(good.count))
        try h.mount(store, mnt, cache: cache)
        XCTAssertNil(try status(mnt)["nativeTree"] as? String, "a damaged tree was served")
        XCTAssertEqual(try TreeFixture.readAll((mnt + "/pkg/mod.py").pathBytes), good)
        XCTAssertEqual(try h.unmount(mnt).status, 0)
    }

    /// Bytes of `path` in the page cache (util-linux `fincore`).
    func residentBytes(_ path: String) throws -> UInt64 {
        let r = try h.run("/usr/bin/fincore", ["--bytes", "--noheadings", "--output", "RES", path])
        XCTAssertEqual(r.status, 0, "fincore \(path): \(r.stderr)")
        return try XCTUnwrap(UInt64(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), "fincore said \(r.stdout)")
    }

    /// `status`'s `nativeReadAhead` once it says finished (at most 20 s).
    func readAheadOnceDone(_ mnt: String) throws -> [String: Any] {
        var ra: [String: Any] = [:]
        let end = Date().addingTimeInterval(20)
        repeat {
            ra = try status(mnt)["nativeReadAhead"] as? [String: Any] ?? [:]
            if ra["finished"] as? Bool == true { break }
            usleep(50_000)
        } while Date() < end
        return ra
    }

    /// A native mount reads its profile's bytes ahead from the tree into the page cache (and
    /// nothing else), so a workload started with the page cache cold does not wait on the disk one
    /// read at a time; `--no-prefetch` reads nothing ahead, and `warm` reads the tree too.
    func testANativeMountReadsItsProfileAheadFromTheTree() throws {
        let src = h.dir + "/src", store = h.dir + "/store", mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        let hot = ["hot/a.bin", "hot/b.bin"], cold = "zcold/c.bin"
        for d in ["hot", "zcold"] { try FS.makeDirectories(src + "/" + d) }
        for (k, name) in hot.enumerated() { try writeFile((src + "/" + name).pathBytes, randomBytes(3 << 20, seed: UInt64(40 + k))) }
        try writeFile((src + "/" + cold).pathBytes, randomBytes(12 << 20, seed: 42))
        XCTAssertEqual(try h.publish(src, store, ["--env", "ra"]).status, 0)
        // Profile `default`: the two hot files, read through FUSE.
        try h.mount(store, mnt, cache: cache, ["--no-native", "--no-prefetch"])
        for name in hot { _ = try TreeFixture.readAll((mnt + "/" + name).pathBytes) }
        let saved = try h.run("envmount", ["profile", "save", mnt, "default"])
        XCTAssertEqual(saved.status, 0, saved.stderr)
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        try warmAndMaterialize(store, mnt, cache)
        let trees = cache + "/v1/trees"
        let tree = trees + "/" + (try XCTUnwrap(try FS.listDirectory(trees).first { !$0.contains(".") }))
        func evict() throws {
            for name in hot + [cold] {
                let fd = try FileDescriptor.open(tree + "/" + name, O_RDONLY)
                try fd.fsync()  // dirty pages (a tree just written) are not dropped
                fd.dropCachedPages()
                fd.close()
                XCTAssertEqual(try residentBytes(tree + "/" + name), 0, "\(name) is still in the page cache")
            }
        }

        // Best effort by design: memory pressure may evict what was read ahead before it is
        // looked at, so a try that finds a hot file only partly resident is repeated (3 in all).
        var misses: [String] = []
        for _ in 0..<3 {
            try evict()
            try h.mount(store, mnt, cache: cache)
            let ra = try readAheadOnceDone(mnt)
            XCTAssertEqual(ra["profile"] as? String, "default", "\(ra)")
            XCTAssertEqual(ra["finished"] as? Bool, true, "read-ahead not done within 20 s: \(ra)")
            let planned = try XCTUnwrap(ra["plannedBytes"] as? Int)
            // Ranges found in the page cache already are not read again (none here, all evicted).
            XCTAssertEqual(ra["bytes"] as? Int, planned)
            // The profile's chunks: both hot files, and of the cold file at most the chunk it
            // shares with b.bin's end.
            XCTAssertGreaterThanOrEqual(planned, 6 << 20)
            XCTAssertLessThan(planned, 10 << 20, "read ahead beyond the profile: \(ra)")
            misses = try hot.filter { try residentBytes(tree + "/" + $0) != 3 << 20 }
            XCTAssertLessThan(try residentBytes(tree + "/" + cold), 6 << 20, "the cold file was read ahead")
            XCTAssertEqual(try h.unmount(mnt).status, 0)
            if misses.isEmpty { break }
        }
        XCTAssertEqual(misses, [], "profile files not in the page cache after the read-ahead")

        // A second job on a warm machine: the profile's bytes are in the page cache, so nothing
        // is read again. (Read right before the mount, and tried up to 3 times: other work that
        // drops caches must not make this fail.)
        var again: [String: Any] = [:]
        for _ in 0..<3 {
            for name in hot { _ = try TreeFixture.readAll((tree + "/" + name).pathBytes) }
            try h.mount(store, mnt, cache: cache)
            again = try readAheadOnceDone(mnt)
            XCTAssertEqual(try h.unmount(mnt).status, 0)
            if again["alreadyCached"] as? Bool == true { break }
        }
        XCTAssertEqual(again["alreadyCached"] as? Bool, true, "\(again)")
        XCTAssertEqual(again["bytes"] as? Int, 0, "\(again)")

        try evict()
        try h.mount(store, mnt, cache: cache, ["--no-prefetch"])
        usleep(500_000)
        XCTAssertNil(try status(mnt)["nativeReadAhead"], "--no-prefetch read ahead")
        for name in hot { XCTAssertEqual(try residentBytes(tree + "/" + name), 0, name) }
        // `warm` on a mount served from a complete tree: every chunk is on local disk, so it reads
        // the tree's files into the page cache, and the daemon opens no chunk. (Up to 3 tries, as
        // above: an eviction between the warm and the look is not the warm's doing.)
        var notRead: [String] = []
        for _ in 0..<3 {
            let warm = try h.run("envmount", ["warm", mnt, "--all"])
            XCTAssertEqual(warm.status, 0, warm.stderr)
            XCTAssertTrue(warm.stdout.contains("all (page cache)"), warm.stdout)
            notRead = try (hot + [cold]).filter { try residentBytes(tree + "/" + $0) != UInt64($0 == cold ? 12 << 20 : 3 << 20) }
            if notRead.isEmpty { break }
            try evict()
        }
        XCTAssertEqual(notRead, [], "not read into the page cache by warm --all")
        let s = try status(mnt)
        XCTAssertEqual(s["cacheHits"] as? Int, 0, "\(s)")
        XCTAssertEqual(s["requests"] as? Int, 0, "\(s)")
        XCTAssertEqual(try h.unmount(mnt).status, 0)
    }

    /// Bytes of the regular files under `dir` (a file with several names counted once).
    static func diskBytes(_ dir: String) -> UInt64 {
        var seen = Set<UInt64>()
        var total: UInt64 = 0
        func walk(_ p: String) {
            guard let st = try? FS.lstat(p) else { return }
            if st.kind == .directory {
                for c in (try? FS.listDirectory(p)) ?? [] { walk(p + "/" + c) }
            } else if st.kind == .regular, seen.insert(st.inode).inserted {
                total += st.size
            }
        }
        walk(dir)
        return total
    }

    func testACacheLimitSmallerThanTheEnvironmentMixesTreeAndFUSEFiles() throws {
        let src = h.dir + "/src", store = h.dir + "/store", mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        try FS.makeDirectories(src)
        var rng = SeededRandom(seed: 11)
        var files: [String: [UInt8]] = [:]
        for i in 0..<12 {
            let b = rng.bytes(3 << 20)
            files[String(format: "f%02d.bin", i)] = b
        }
        for (name, b) in files { try writeFile((src + "/" + name).pathBytes, b) }
        let limit: UInt64 = 16 << 20
        XCTAssertEqual(try h.publish(src, store, ["--env", "big"]).status, 0)
        try h.mount(store, mnt, cache: cache, ["--cache-size", "16M"])
        for (name, b) in files.sorted(by: { $0.key < $1.key }) {
            XCTAssertEqual(try TreeFixture.readAll((mnt + "/" + name).pathBytes), b, name)
        }
        // 36 MiB never fit: once the cached part settles, the files it holds whole are written
        // into a partial tree, within half the limit.
        let end = Date().addingTimeInterval(120)
        while Date() < end, (try status(mnt)["materialized"] as? Bool) != true { usleep(200_000) }
        XCTAssertEqual(try status(mnt)["materialized"] as? Bool, true, "no partial tree within 120 s")
        let trees = cache + "/v1/trees"
        let treeName = try XCTUnwrap(try FS.listDirectory(trees).first { !$0.contains(".") })
        let inTree = Set(try FS.listDirectory(trees + "/" + treeName))
        XCTAssertFalse(inTree.isEmpty)
        XCTAssertLessThan(inTree.count, files.count)
        XCTAssertLessThanOrEqual(Self.diskBytes(trees + "/" + treeName), limit / 2)
        // The chunks those files were read from now go first: chunks + tree fit the limit.
        usleep(500_000)
        XCTAssertLessThanOrEqual(Self.diskBytes(cache + "/v1/chunks") + Self.diskBytes(trees), limit)
        XCTAssertEqual(try h.unmount(mnt).status, 0)

        try h.mount(store, mnt, cache: cache, ["--cache-size", "16M"])
        let native = try XCTUnwrap(try status(mnt)["native"] as? [String: Any])
        XCTAssertEqual(native["partial"] as? Bool, true)
        XCTAssertEqual(native["files"] as? Int, inTree.count)
        func served() throws -> Int {
            let s = try status(mnt)
            return (s["requests"] as? Int ?? -1) + (s["cacheHits"] as? Int ?? -1) + (s["joinedFetches"] as? Int ?? 0)
        }
        let before = try served()
        for name in inTree.sorted() {
            XCTAssertEqual(try TreeFixture.readAll((mnt + "/" + name).pathBytes), files[name], name)
        }
        XCTAssertEqual(try served(), before, "a file of the tree was served by the daemon")
        for (name, b) in files.sorted(by: { $0.key < $1.key }) where !inTree.contains(name) {
            XCTAssertEqual(try TreeFixture.readAll((mnt + "/" + name).pathBytes), b, name)
        }
        XCTAssertGreaterThan(try served(), before, "the files not in the tree did not come through FUSE")
        XCTAssertEqual(try FS.listDirectory(mnt).sorted(), files.keys.sorted())
        XCTAssertLessThanOrEqual(Self.diskBytes(cache + "/v1/chunks") + Self.diskBytes(trees), limit)
        XCTAssertEqual(try h.unmount(mnt).status, 0)
    }
}

enum TestMounts {
    /// Overlay mount points under `dir` (left by a failed test).
    static func overlays(under dir: String) -> [String] {
        guard let m = try? FS.readFile("/proc/self/mounts") else { return [] }
        return String(decoding: m, as: UTF8.self).split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            return f.count > 2 && f[2] == "overlay" && f[1].hasPrefix(dir) ? String(f[1]) : nil
        }
    }

    /// The VFS options of the mount at `path` (from /proc/self/mounts).
    static func options(of path: String) -> [String] {
        guard let m = try? FS.readFile("/proc/self/mounts") else { return [] }
        for line in String(decoding: m, as: UTF8.self).split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count > 3 && f[1] == path { return f[3].split(separator: ",").map(String.init) }
        }
        return []
    }
}
