import Foundation
import Glibc
import SysKit
import XCTest

/// Native serving of a mount at another path than the one the environment was published from:
/// the materialized tree holds the bytes as published, and a relocation layer above it holds
/// the few files the mount presents differently.
final class NativeRelocationTests: MountTestCase {
    func log(_ cache: String) -> String {
        ((try? FS.listDirectory(cache + "/logs")) ?? []).map { String(decoding: (try? FS.readFile(cache + "/logs/" + $0)) ?? [], as: UTF8.self) }.joined()
    }

    /// Whether the daemon's log holds `text` within 10 s: a daemon logs what it found in the
    /// cache after READY, so after the mount command has returned.
    func logged(_ cache: String, _ text: String) -> Bool {
        let end = Date().addingTimeInterval(10)
        while !log(cache).contains(text) {
            if Date() > end { return false }
            usleep(50_000)
        }
        return true
    }

    /// Every entry under `root`: kind, mode, owner, mtime, size, link count, and the SHA-256 of
    /// a file's bytes or a symlink's target.
    static func snapshot(_ root: String) throws -> [String: String] {
        var out: [String: String] = [:]
        func walk(_ rel: PathBytes) throws {
            let p = root.pathBytes + rel
            let st = try FS.lstat(p)
            // Not compared for directories: their size (FUSE says 0), and their link count, which
            // overlayfs reports as 1 for a directory merged from two layers (as btrfs does for all).
            let dir = st.kind == .directory
            var d = "\(st.kind) \(String(st.mode, radix: 8)) \(st.uid):\(st.gid) \(st.mtimeNs) \(dir ? 0 : st.size) \(dir ? 0 : st.links)"
            switch st.kind {
            case .directory:
                for c in try FS.listDirectory(p) { try walk(rel + [UInt8(ascii: "/")] + c) }
            case .symlink:
                d += " -> " + String(decoding: try FS.readlink(p), as: UTF8.self)
            case .regular:
                d += " " + Hex.encode(SHA256.hash(try TreeFixture.readAll(p)))
            default:
                break
            }
            out[rel.isEmpty ? "/" : rel.pathString] = d
        }
        try walk([])
        return out
    }

    /// A real venv (with pip) and a package of our own, plus a symlink that names the source path.
    func makeVenv(_ venv: String) throws {
        try FS.makeDirectories(h.dir + "/src")
        let v = try h.run("/usr/bin/env", ["python3", "-m", "venv", venv])
        XCTAssertEqual(v.status, 0, "python3 -m venv failed: \(v.stderr)")
        let site = try FS.listDirectory(venv + "/lib").first { $0.hasPrefix("python3") }.map { "\(venv)/lib/\($0)/site-packages" }!
        try FS.makeDirectories(site + "/envmount_probe")
        try writeFile((site + "/envmount_probe/__init__.py").pathBytes,
                      Array("import hashlib, sys\nVALUE = hashlib.sha256(b'envmount').hexdigest()\n".utf8))
        try FS.symlink(target: Array((site + "/envmount_probe").utf8), at: (venv + "/probe-link").pathBytes)
    }

    func testARelocatedMountIsServedNativelyWithBytesIdenticalToFUSE() throws {
        let venv = h.dir + "/src/venv", store = h.dir + "/store", cache = h.dir + "/cache"
        // Mounted at a longer path than published: text files grow, scripts' `#!` lines change.
        let mnt = h.dir + "/elsewhere/deeper/venv"
        try makeVenv(venv)
        XCTAssertEqual(try h.publish(venv, store, ["--env", "py"]).status, 0)

        // What FUSE presents at this path.
        try h.mount(store, mnt, cache: cache, ["--no-native"])
        let viaFUSE = try Self.snapshot(mnt)
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        XCTAssertTrue(viaFUSE["/bin/pip"]?.hasPrefix("regular") == true, "no bin/pip in the venv")

        // Warm, materialize (the daemon also builds this path's relocation layer), remount.
        try h.mount(store, mnt, cache: cache)
        XCTAssertEqual(try h.run("envmount", ["warm", mnt, "--all"]).status, 0)
        // The tree's seal, which `status` reports as materialized, is written after the layer.
        let end = Date().addingTimeInterval(120)
        while Date() < end, (try status(mnt)["materialized"] as? Bool) != true { usleep(200_000) }
        XCTAssertTrue(logged(cache, "relocation layer for \(mnt)"), "no relocation layer built: \(log(cache))")
        XCTAssertEqual(try h.unmount(mnt).status, 0)

        try h.mount(store, mnt, cache: cache)
        let s = try status(mnt)
        let native = s["native"] as? [String: Any]
        XCTAssertNotNil(native, "the relocated mount is not native: \(s)")
        XCTAssertNotNil(native?["relocationLayer"] as? String, "\(s)")
        XCTAssertGreaterThan(native?["relocatedFiles"] as? Int ?? 0, 2, "\(s)")
        let viaTree = try Self.snapshot(mnt)
        XCTAssertEqual(viaTree.count, viaFUSE.count)
        for (path, want) in viaFUSE.sorted(by: { $0.key < $1.key }) {
            XCTAssertEqual(viaTree[path], want, path)
        }
        let py = try h.run(mnt + "/bin/python", ["-c", "import sys, envmount_probe; print(sys.prefix, envmount_probe.VALUE[:8])"])
        XCTAssertEqual(py.status, 0, py.stderr)
        XCTAssertEqual(py.stdout, "\(mnt) \(Hex.encode(SHA256.hash(Array("envmount".utf8))).prefix(8))\n")
        let pip = try h.run(mnt + "/bin/pip", ["--version"])   // through its relocated `#!` line
        XCTAssertEqual(pip.status, 0, pip.stderr)
        XCTAssertTrue(pip.stdout.contains(mnt + "/lib/"), pip.stdout)
        XCTAssertEqual(try FS.readlink((mnt + "/probe-link").pathBytes).pathString.hasPrefix(mnt + "/lib/"), true)
        let after = try status(mnt)
        XCTAssertEqual(after["requests"] as? Int, 0, "the daemon fetched: \(after)")
        XCTAssertEqual(after["cacheHits"] as? Int, 0, "the daemon served reads: \(after)")
        XCTAssertEqual(try h.unmount(mnt).status, 0)

        // A mount at a third path builds its layer as it mounts, and is native at once.
        let other = h.dir + "/o/venv"
        try h.mount(store, other, cache: cache)
        XCTAssertNotNil((try status(other)["native"] as? [String: Any])?["relocationLayer"] as? String)
        let cfg = String(decoding: try TreeFixture.readAll((other + "/pyvenv.cfg").pathBytes), as: UTF8.self)
        XCTAssertEqual(cfg, String(decoding: try TreeFixture.readAll((venv + "/pyvenv.cfg").pathBytes), as: UTF8.self)
            .replacingOccurrences(of: venv, with: other))
        let py2 = try h.run(other + "/bin/python", ["-c", "import sys, envmount_probe; print(sys.prefix)"])
        XCTAssertEqual(py2.stdout, other + "\n", py2.stderr)
        XCTAssertEqual(try h.unmount(other).status, 0)
    }

    func testADamagedRelocationLayerIsNeverServed() throws {
        let venv = h.dir + "/src/venv", store = h.dir + "/store", cache = h.dir + "/cache"
        let mnt = h.dir + "/m/venv"
        try makeVenv(venv)
        XCTAssertEqual(try h.publish(venv, store, ["--env", "py"]).status, 0)
        try h.mount(store, mnt, cache: cache, ["--no-native"])
        let good = try TreeFixture.readAll((mnt + "/bin/pip").pathBytes)
        let goodCfg = try TreeFixture.readAll((mnt + "/pyvenv.cfg").pathBytes)
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        try h.mount(store, mnt, cache: cache)
        XCTAssertEqual(try h.run("envmount", ["warm", mnt, "--all"]).status, 0)
        let end = Date().addingTimeInterval(120)
        while Date() < end, (try status(mnt)["materialized"] as? Bool) != true { usleep(200_000) }
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        let trees = cache + "/v1/trees"
        let relocDir = try XCTUnwrap(try FS.listDirectory(trees).first { $0.hasSuffix(".reloc") })
        let layer = try XCTUnwrap(try FS.listDirectory(trees + "/" + relocDir).first { !$0.hasSuffix(".seal") })
        let root = "\(trees)/\(relocDir)/\(layer)"

        // 1. Bytes changed, size kept, mtime put back.
        let victim = root + "/bin/pip"
        let mtime = try FS.lstat(victim).mtimeNs
        let fd = try FileDescriptor.open(victim, O_WRONLY)
        try fd.pwriteAll(Array("#!/bin/evil".utf8), at: 0)
        fd.close()
        try FS.setMtime(victim.pathBytes, ns: mtime)
        try h.mount(store, mnt, cache: cache)
        XCTAssertEqual(try TreeFixture.readAll((mnt + "/bin/pip").pathBytes), good)
        XCTAssertTrue(logged(cache, "relocation layer \(root) is damaged"), log(cache))
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        // Rebuilt from verified chunks.
        XCTAssertEqual(try TreeFixture.readAll(victim.pathBytes), good)

        // 2. A name added to the layer would hide the tree's file: refused, the layer rebuilt.
        let site = try XCTUnwrap(try FS.listDirectory(venv + "/lib").first { $0.hasPrefix("python3") })
        let stray = "\(root)/lib/\(site)/site-packages/envmount_probe/__init__.py"
        try FS.makeDirectories(root + "/lib/\(site)/site-packages/envmount_probe")
        try writeFile(stray.pathBytes, Array("VALUE = 'evil'\n".utf8))
        try h.mount(store, mnt, cache: cache)
        let py = try h.run(mnt + "/bin/python", ["-c", "import envmount_probe; print(envmount_probe.VALUE)"])
        XCTAssertEqual(py.stdout, Hex.encode(SHA256.hash(Array("envmount".utf8))) + "\n", py.stderr)
        XCTAssertNotNil((try status(mnt)["native"] as? [String: Any])?["relocationLayer"] as? String)
        XCTAssertEqual(try TreeFixture.readAll((mnt + "/pyvenv.cfg").pathBytes), goodCfg)
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        XCTAssertFalse(FS.exists(stray), "the stray file is still in the layer")

        // 3. A directory of the layer moved away and a symlink to it put in its place (its
        // files untouched): refused, not followed; the layer rebuilt with a real directory.
        try FS.rename(root + "/bin", h.dir + "/moved-bin")
        try FS.symlink(target: (h.dir + "/moved-bin").pathBytes, at: (root + "/bin").pathBytes)
        try h.mount(store, mnt, cache: cache)
        XCTAssertEqual(try TreeFixture.readAll((mnt + "/bin/pip").pathBytes), good)
        XCTAssertTrue(logged(cache, "relocation layer \(root) is damaged (\(root)/bin is not the directory it was written as)"), log(cache))
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        XCTAssertEqual(try FS.lstat(root + "/bin").kind, .directory)
    }
}
