import EnvFormat
import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// `envpublish MOUNTPOINT` of an `envmount mount … --writable DIR`: a real venv (with pip) changed
/// by pip in the layer, published as a new revision that reuses the base revision's chunks for
/// every file the layer did not change, then mounted fresh and compared with the merged tree.
final class WritablePublishTests: MountTestCase {
    override func tearDown() {
        // The overlays go first (MountTestCase), then the FUSE mount hidden under the layer.
        if let h {
            for m in TestMounts.overlays(under: h.dir) { try? FS.lazyUnmount(m) }
            if Harness.isMounted(h.dir + "/layer/lower") { _ = try? h.run("/bin/fusermount3", ["-u", "-z", h.dir + "/layer/lower"]) }
        }
        super.tearDown()
    }

    /// A venv with pip and a small tree `extra/` of its own, and a pure-Python wheel `tinypkg`
    /// with a console script, built here without the network.
    func makeVenvAndWheel(_ venv: String) throws -> String {
        let wheels = h.dir + "/wheels"
        try FS.makeDirectories(wheels)
        let v = try h.run("/usr/bin/env", ["python3", "-m", "venv", venv])
        XCTAssertEqual(v.status, 0, "python3 -m venv failed: \(v.stderr)")
        try FS.makeDirectories(venv + "/extra/sub")
        try writeFile((venv + "/extra/a.txt").pathBytes, Array("base a\n".utf8))
        try writeFile((venv + "/extra/sub/b.txt").pathBytes, Array("base b\n".utf8))
        try writeFile((venv + "/extra/mode.txt").pathBytes, Array("mode\n".utf8), mode: 0o644)
        let w = try h.run("/usr/bin/env", ["python3", Servers.repoRoot + "/Tools/make-wheel.py", wheels, "--console-script", "tinycli"])
        XCTAssertEqual(w.status, 0, w.stderr)
        return wheels + "/tinypkg-1.0-py3-none-any.whl"
    }

    func pip(_ mnt: String, _ args: [String]) throws {
        let r = try h.run(mnt + "/bin/python", ["-m", "pip"] + args + ["--disable-pip-version-check", "-q"])
        XCTAssertEqual(r.status, 0, "pip \(args.joined(separator: " ")) failed: \(r.stderr)")
    }

    /// The daemon counters a read of a file's bytes moves: FUSE READ requests and the bytes they
    /// carried, chunk opens (cache hits), fetches, requests, and the chunks recorded for
    /// `profile save`.
    func readCounters(_ mp: String) throws -> [String: UInt64] {
        let s = try status(mp)
        var out: [String: UInt64] = [:]
        for k in ["cacheHits", "chunksFetched", "requests", "recordedChunks", "fuseReadBytes"] {
            out[k] = (s[k] as? NSNumber)?.uint64Value ?? UInt64.max
        }
        out["fuseReads"] = ((s["fuseOps"] as? [String: Any])?["read"] as? NSNumber)?.uint64Value ?? 0
        return out
    }

    /// Regular files of the merged tree at `mnt` (one name per inode), split by whether the
    /// layer's upper directory holds them: the test's own account of what changed.
    func classify(_ mnt: String, upper: String) throws -> (unchanged: [String], inLayer: [String]) {
        var unchanged: [String] = [], inLayer: [String] = []
        var seen: Set<UInt64> = []
        func walk(_ rel: String) throws {
            for name in try FS.listDirectory(mnt + rel) {
                let r = rel + "/" + name
                let st = try FS.lstat(mnt + r)
                if st.kind == .directory { try walk(r); continue }
                guard st.kind == .regular, seen.insert(st.inode).inserted || st.links == 1 else { continue }
                if (try? FS.lstat(upper + r)) != nil { inLayer.append(r) } else { unchanged.append(r) }
            }
        }
        try walk("")
        return (unchanged, inLayer)
    }

    /// "… N unchanged files (…) reused unread from revision R, M files (…) read".
    func reuseFigures(_ out: String) -> (reused: Int, read: Int)? {
        guard let line = out.split(separator: "\n").first(where: { $0.contains("reused unread from revision") }) else { return nil }
        let words = line.split(separator: " ")
        guard let u = words.firstIndex(of: "unchanged"), let reused = Int(words[u - 1]),
              let f = words.lastIndex(of: "files"), let read = Int(words[f - 1]) else { return nil }
        return (reused, read)
    }

    func testPublishOfAWritableMountReusesUnchangedFilesUnreadAndTheNewRevisionMatchesTheMergedTree() throws {
        let venv = h.dir + "/src/venv", store = h.dir + "/store", layer = h.dir + "/layer"
        let mnt = h.dir + "/mnt", other = h.dir + "/other"
        let wheel = try makeVenvAndWheel(venv)
        // Revision 1, with a profile for the carry check.
        let p1 = try h.run("envpublish", [venv, store, "--env", "py", "--quiet", "--record", "boot=import json"])
        XCTAssertEqual(p1.status, 0, p1.stderr)
        // At another path than the venv was built at: unchanged files are relocated on the fly,
        // files pip writes name the mount path.
        try h.mount(store, mnt, cache: h.dir + "/cache", ["--writable", layer, "--no-prefetch"])
        try pip(mnt, ["install", "--no-index", "--no-cache-dir", wheel])
        XCTAssertEqual(try h.run(mnt + "/bin/tinycli", []).stdout, "42\n")

        let (unchanged, inLayer) = try classify(mnt, upper: layer + "/upper")
        XCTAssertGreaterThan(unchanged.count, 500, "a venv with pip has hundreds of files pip install did not touch")
        XCTAssertTrue(inLayer.contains { $0.hasSuffix("/tinypkg/__init__.py") }, "\(inLayer)")
        XCTAssertTrue(inLayer.contains("/bin/tinycli"), "\(inLayer)")

        // Publish the mount: STORE and --env come from the layer's record.
        let before = try readCounters(mnt)
        let pub = try h.run("envpublish", [mnt, "--no-record"])
        XCTAssertEqual(pub.status, 0, pub.stderr)
        XCTAssertTrue(pub.stdout.contains("py: revision 2"), pub.stdout)
        let figures = reuseFigures(pub.stdout)
        XCTAssertEqual(figures?.reused, unchanged.count, "files reused unread: \(pub.stdout)")
        XCTAssertEqual(figures?.read, inLayer.count, "files read: \(pub.stdout)")
        XCTAssertTrue(pub.stdout.contains("carried profile boot") && pub.stdout.contains("from revision 1"), pub.stdout)
        // Not one byte of the base revision was read through the mount during the publish.
        XCTAssertEqual(try readCounters(mnt), before, "the source mount's daemon served reads during the publish")
        // ... which these counters would show: reading the unchanged files moves them.
        for f in unchanged { _ = try TreeFixture.readAll((mnt + f).pathBytes) }
        let after = try readCounters(mnt)
        XCTAssertGreaterThan(after["fuseReads"]!, before["fuseReads"]!)
        XCTAssertGreaterThan(after["cacheHits"]! + after["chunksFetched"]!, before["cacheHits"]! + before["chunksFetched"]!)

        // Revision 2 at a third path with an empty cache: the package imports, its console script
        // (whose shebang named the writable mount) runs, and its packages are those of the mount.
        try h.mount(store, other, cache: h.dir + "/cache2", ["--env", "py", "--no-prefetch"])
        let imp = try h.run(other + "/bin/python", ["-c", "import tinypkg, sys; print(tinypkg.VALUE, sys.prefix)"])
        XCTAssertEqual(imp.stdout, "42 \(other)\n", imp.stderr)
        XCTAssertEqual(try h.run(other + "/bin/tinycli", []).stdout, "42\n")
        XCTAssertEqual(try h.unmount(other).status, 0)
        let freeze = try h.run("envmount", ["freeze", store, "--env", "py", "--revision", "2"])
        XCTAssertTrue(freeze.stdout.contains("tinypkg @ file://"), freeze.stdout + freeze.stderr)
        let diff = try h.run("envmount", ["diff", store, "--env", "py", "1", "2"])
        XCTAssertTrue(diff.stdout.contains("tinypkg"), diff.stdout + diff.stderr)
        XCTAssertFalse(diff.stdout.contains("pip"), "pip did not change: \(diff.stdout)")

        // Byte for byte: a copy of the merged tree against revision 2 mounted fresh at the same path.
        let snap = h.dir + "/snapshot"
        XCTAssertEqual(try h.run("/bin/cp", ["-a", mnt, snap]).status, 0)
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        try h.mount(store, mnt, cache: h.dir + "/cache3", ["--env", "py", "--no-prefetch", "--no-native"])
        XCTAssertTrue(try h.run("envmount", ["status", mnt]).stdout.contains("revision 2"))
        let compared = try TreeFixture.assertSame(source: snap, mount: mnt, skipContent: [], relocated: false)
        XCTAssertGreaterThan(compared, unchanged.count)
        XCTAssertEqual(try h.unmount(mnt).status, 0)
    }
    func testUninstalledPackagesReplacedDirectoriesAndModeChangesReachTheNewRevisionAndAReadOnlyMountIsRefused() throws {
        let venv = h.dir + "/src/venv", store = h.dir + "/store", layer = h.dir + "/layer", ro = h.dir + "/ro"
        _ = try makeVenvAndWheel(venv)
        XCTAssertEqual(try h.publish(venv, store, ["--env", "py"]).status, 0)
        // At the venv's own path (the usual way: its scripts name it), the venv itself gone.
        try FS.removeTree(venv)
        try h.mount(store, venv, cache: h.dir + "/cache", ["--writable", layer, "--no-prefetch"])

        // A read-only mount is refused, and so is a plain directory without STORE.
        try h.mount(store, ro, cache: h.dir + "/cache-ro", ["--env", "py", "--no-prefetch"])
        let refused = try h.run("envpublish", [ro, store, "--env", "py2", "--no-record"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("\(ro) is a read-only envmount mount of py"), refused.stderr)
        XCTAssertEqual(try h.unmount(ro).status, 0)
        let noStore = try h.run("envpublish", [h.dir + "/wheels", "--no-record"])
        XCTAssertNotEqual(noStore.status, 0)
        XCTAssertTrue(noStore.stderr.contains("missing STORE"), noStore.stderr)
        XCTAssertFalse(FS.exists(store + "/refs/py2"))

        // pip uninstall leaves whiteouts; a directory removed and made again is opaque in the
        // layer; a chmod copies a file up.
        try pip(venv, ["uninstall", "-y", "setuptools"])
        XCTAssertNotEqual(try h.run(venv + "/bin/python", ["-c", "import setuptools"]).status, 0)
        try FS.removeTree(venv + "/extra")
        try FS.makeDirectories(venv + "/extra")
        try writeFile((venv + "/extra/a.txt").pathBytes, Array("layer a\n".utf8))
        let opaque = try h.run("/usr/bin/env", ["python3", "-c", "import os, sys; print(os.getxattr(sys.argv[1], 'trusted.overlay.opaque'))", layer + "/upper/extra"])
        XCTAssertEqual(opaque.stdout, "b'y'\n", "extra/ should be an opaque directory in the layer: \(opaque.stderr)")
        try FS.chmod((venv + "/bin/activate.csh").pathBytes, 0o600)

        let (unchanged, inLayer) = try classify(venv, upper: layer + "/upper")
        let pub = try h.run("envpublish", [venv, "--no-record"])
        XCTAssertEqual(pub.status, 0, pub.stderr)
        XCTAssertTrue(pub.stdout.contains("py: revision 2"), pub.stdout)
        XCTAssertEqual(reuseFigures(pub.stdout)?.reused, unchanged.count, pub.stdout)
        XCTAssertEqual(reuseFigures(pub.stdout)?.read, inLayer.count, pub.stdout)

        // Revision 2, fresh: setuptools gone, extra/ as replaced, the mode as changed.
        let other = h.dir + "/other"
        try h.mount(store, other, cache: h.dir + "/cache2", ["--env", "py", "--no-prefetch"])
        XCTAssertNotEqual(try h.run(other + "/bin/python", ["-c", "import setuptools"]).status, 0, "setuptools still in revision 2")
        XCTAssertEqual(try h.run(other + "/bin/python", ["-c", "import pip; print('ok')"]).stdout, "ok\n")
        XCTAssertEqual(try FS.listDirectory(other + "/extra"), ["a.txt"])
        XCTAssertEqual(try FS.readFile(other + "/extra/a.txt"), Array("layer a\n".utf8))
        XCTAssertEqual(try FS.lstat(other + "/bin/activate.csh").mode, 0o600)
        XCTAssertEqual(try FS.lstat(other + "/bin/activate").mode, try FS.lstat(venv + "/bin/activate").mode)
        XCTAssertEqual(try h.unmount(other).status, 0)
        let diff = try h.run("envmount", ["diff", store, "--env", "py", "1", "2"])
        XCTAssertTrue(diff.stdout.contains("setuptools"), diff.stdout + diff.stderr)

        // The same layer published again, nothing changed since: the same tree, the same revision
        // (said with a note that the store is past the layer's base).
        let again = try h.run("envpublish", [venv, "--no-record"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("py: unchanged, still revision 2"), again.stdout)
        XCTAssertTrue(again.stderr.contains("made over revision 1"), again.stderr)
        XCTAssertEqual(try h.unmount(venv).status, 0)
    }
}
