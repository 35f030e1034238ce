import EnvFormat
import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// `envmount mount … --writable DIR`: a real venv (with pip), a wheel built here, real FUSE and
/// overlayfs mounts.
final class WritableLayerTests: MountTestCase {
    var overlays: [String] = []

    override func tearDown() {
        // Overlays first, then the FUSE mounts under them (the harness unmounts those).
        for mp in overlays where Harness.isMounted(mp) { try? FS.lazyUnmount(mp) }
        if let h {
            for d in overlays.map({ _ in h.dir + "/layer/lower" }) + [h.dir + "/layer2/lower"] where Harness.isMounted(d) {
                _ = try? h.run("/bin/fusermount3", ["-u", "-z", d])
            }
        }
        super.tearDown()
    }

    /// A venv with pip, and a pure-Python wheel `tinypkg` built without the network.
    func makeVenvAndWheel() throws -> (venv: String, wheel: String) {
        let venv = h.dir + "/src/venv", wheels = h.dir + "/wheels"
        try FS.makeDirectories(h.dir + "/src")
        try FS.makeDirectories(wheels)
        let v = try h.run("/usr/bin/env", ["python3", "-m", "venv", venv])
        XCTAssertEqual(v.status, 0, "python3 -m venv failed: \(v.stderr)")
        let w = try h.run("/usr/bin/env", ["python3", Servers.repoRoot + "/Tools/make-wheel.py", wheels])
        XCTAssertEqual(w.status, 0, w.stderr)
        return (venv, wheels + "/tinypkg-1.0-py3-none-any.whl")
    }

    func python(_ mnt: String, _ code: String) throws -> CommandResult {
        try h.run(mnt + "/bin/python", ["-c", code])
    }

    /// SHA-256 of every object in a directory store, by key.
    func storeDigest(_ store: String) throws -> [String: String] {
        var out: [String: String] = [:]
        func walk(_ rel: String) throws {
            for name in try FS.listDirectory(store + rel) {
                let p = rel + "/" + name
                if try FS.lstat(store + p).kind == .directory { try walk(p) } else { out[p] = ChunkID.of(try FS.readFile(store + p)).hex }
            }
        }
        try walk("")
        return out
    }

    func testPipInstallAndUninstallPersistAcrossRemountAndResetDiscardsThem() throws {
        let (venv, wheel) = try makeVenvAndWheel()
        let store = h.dir + "/store", cache = h.dir + "/cache", layer = h.dir + "/layer"
        // Mount at the venv's own path, as a venv expects (its scripts name it).
        let mnt = venv
        XCTAssertEqual(try h.publish(venv, store, ["--env", "py"]).status, 0)
        let published = try storeDigest(store)
        try FS.removeTree(venv)
        overlays.append(mnt)

        let pid = try h.mount(store, mnt, cache: cache, ["--writable", layer])
        XCTAssertEqual(try python(mnt, "import tinypkg").status, 1, "tinypkg importable before it was installed")
        let pip = try h.run(mnt + "/bin/python", ["-m", "pip", "install", "--no-index", "--no-cache-dir",
                                                   "--disable-pip-version-check", "-q", wheel])
        XCTAssertEqual(pip.status, 0, "pip install failed: \(pip.stderr)")
        let imp = try python(mnt, "import tinypkg; print(tinypkg.VALUE)")
        XCTAssertEqual(imp.status, 0, imp.stderr)
        XCTAssertEqual(imp.stdout, "42\n")
        // Bytecode was written, into the layer.
        let site = try FS.listDirectory(layer + "/upper/lib").first { $0.hasPrefix("python3") }.map { "\(layer)/upper/lib/\($0)/site-packages" }!
        XCTAssertTrue(try FS.listDirectory(site + "/tinypkg/__pycache__").contains { $0.hasSuffix(".pyc") })
        // Uninstalling a published package hides it (whiteouts in the layer).
        let un = try h.run(mnt + "/bin/python", ["-m", "pip", "uninstall", "-y", "-q", "--disable-pip-version-check", "setuptools"])
        XCTAssertEqual(un.status, 0, "pip uninstall failed: \(un.stderr)")
        XCTAssertNotEqual(try python(mnt, "import setuptools").status, 0, "setuptools still importable after uninstall")

        let st = try h.run("envmount", ["status", mnt])
        XCTAssertEqual(st.status, 0, st.stderr)
        XCTAssertTrue(st.stdout.contains("writable  \(layer)"), st.stdout)

        // Unmount takes down the overlay and the FUSE mount under it; the daemon exits.
        let u = try h.unmount(mnt)
        XCTAssertEqual(u.status, 0, u.stderr)
        XCTAssertFalse(Harness.isMounted(mnt))
        XCTAssertFalse(Harness.isMounted(layer + "/lower"))
        XCTAssertTrue(Harness.waitForExit(pid), "daemon \(pid) still running after unmount")

        // A new revision is published meanwhile; the layer keeps the revision it was made over.
        try FS.makeDirectories(h.dir + "/src")
        XCTAssertEqual(try h.run("/usr/bin/env", ["python3", "-m", "venv", "--without-pip", h.dir + "/src/other"]).status, 0)
        XCTAssertEqual(try h.publish(h.dir + "/src/other", store, ["--env", "py"]).status, 0)
        let again = try h.run("envmount", ["mount", store, mnt, "--cache-dir", cache, "--writable", layer])
        XCTAssertEqual(again.status, 0, again.stderr)
        try h.adopt(mnt, again)
        XCTAssertTrue(again.stdout.contains("revision 1"), again.stdout)
        XCTAssertTrue(again.stderr.contains("made over revision 1"), again.stderr)
        let imp2 = try python(mnt, "import tinypkg; print(tinypkg.VALUE)")
        XCTAssertEqual(imp2.stdout, "42\n", "after remount: \(imp2.stderr)")
        XCTAssertNotEqual(try python(mnt, "import setuptools").status, 0)

        // reset MOUNTPOINT discards the layer: the installed package is gone, the uninstalled one back.
        let r = try h.run("envmount", ["reset", mnt])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try python(mnt, "import tinypkg").status, 1, "tinypkg still importable after reset")
        XCTAssertEqual(try python(mnt, "import setuptools").status, 0, "setuptools not back after reset")
        XCTAssertEqual(try FS.listDirectory(layer + "/upper"), [])

        // The published environment never changed (only the ref moved, to revision 2).
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        let immutable = published.filter { !$0.key.hasPrefix("/refs/") }
        XCTAssertEqual(try storeDigest(store).filter { immutable[$0.key] != nil }, immutable)

        // reset --writable DIR on an unmounted layer drops its record: the next mount follows the store.
        XCTAssertEqual(try h.run("envmount", ["reset", "--writable", layer]).status, 0)
        let third = try h.run("envmount", ["mount", store, mnt, "--cache-dir", cache, "--writable", layer])
        XCTAssertEqual(third.status, 0, third.stderr)
        try h.adopt(mnt, third)
        XCTAssertTrue(third.stdout.contains("revision 2"), third.stdout)
        XCTAssertEqual(try h.unmount(mnt).status, 0)
    }

    func testALayerOfAnotherEnvironmentIsRefusedAndSIGTERMTakesDownBothMounts() throws {
        let src = h.dir + "/src", store = h.dir + "/store", cache = h.dir + "/cache", layer = h.dir + "/layer"
        try FS.makeDirectories(src + "/a")
        try FS.makeDirectories(src + "/b")
        try writeFile((src + "/a/file").pathBytes, Array("a\n".utf8))
        try writeFile((src + "/b/file").pathBytes, Array("b\n".utf8))
        XCTAssertEqual(try h.publish(src + "/a", store, ["--env", "a"]).status, 0)
        XCTAssertEqual(try h.publish(src + "/b", store, ["--env", "b"]).status, 0)
        let mnt = h.dir + "/mnt"
        overlays.append(mnt)
        let pid = try h.mount(store, mnt, cache: cache, ["--env", "a", "--writable", layer])
        try writeFile((mnt + "/new").pathBytes, Array("written\n".utf8))
        XCTAssertEqual(try FS.readFile(layer + "/upper/new"), Array("written\n".utf8))

        // SIGTERM to the daemon: the overlay goes first, then the FUSE mount; the layer stays.
        kill(pid, SIGTERM)
        XCTAssertTrue(Harness.waitForExit(pid), "daemon did not exit on SIGTERM")
        XCTAssertFalse(Harness.isMounted(mnt), "overlay left mounted")
        XCTAssertFalse(Harness.isMounted(layer + "/lower"), "FUSE lower left mounted")
        XCTAssertTrue(FS.exists(layer + "/upper/new"))

        // The same DIR for environment b is refused before anything is mounted.
        let other = try h.run("envmount", ["mount", store, mnt, "--cache-dir", cache, "--env", "b", "--writable", layer])
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.stderr.contains("writable layer of environment a"), other.stderr)
        XCTAssertFalse(Harness.isMounted(mnt))
        // A non-empty directory that is not a layer is refused too.
        try FS.makeDirectories(h.dir + "/layer2")
        try writeFile((h.dir + "/layer2/precious").pathBytes, Array("x".utf8))
        let notLayer = try h.run("envmount", ["mount", store, mnt, "--cache-dir", cache, "--env", "b", "--writable", h.dir + "/layer2"])
        XCTAssertNotEqual(notLayer.status, 0)
        XCTAssertTrue(notLayer.stderr.contains("is not empty"), notLayer.stderr)
        XCTAssertEqual(try FS.listDirectory(h.dir + "/layer2"), ["precious"])

        // Remounting a still writes into the same layer.
        try h.mount(store, mnt, cache: cache, ["--env", "a", "--writable", layer])
        XCTAssertEqual(try FS.readFile(mnt + "/new"), Array("written\n".utf8))
        XCTAssertEqual(try FS.readFile(mnt + "/file"), Array("a\n".utf8))
        XCTAssertEqual(try h.unmount(mnt).status, 0)
    }
}
