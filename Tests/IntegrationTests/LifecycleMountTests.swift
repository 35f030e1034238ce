import EnvFormat
import EnvStore
import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// Revisions of a real venv that pip changes between publishes, against a directory store and
/// S3 (moto, signatures checked): freeze equals pip freeze, diff names the changed packages,
/// `--revision` mounts compare equal to copies of the source kept aside, concurrent publishes
/// (two processes) both land, and gc --keep-last 2 removes the dropped revision's own chunks
/// while every kept revision still mounts whole.
final class LifecycleMountTests: MountTestCase {

    /// pip in the venv, from PyPI. A failure to reach PyPI fails in CI and skips elsewhere.
    func pip(_ venv: String, _ args: [String]) throws -> String {
        let r = try h.run(venv + "/bin/python", ["-m", "pip", "--disable-pip-version-check", "--no-input"] + args)
        if r.status != 0 {
            throw Servers.unavailable("pip \(args.joined(separator: " ")) failed (PyPI unreachable?): \(r.stderr.suffix(400))")
        }
        return r.stdout
    }

    func copyAside(_ src: String, _ dst: String) throws {
        let r = try h.run("/bin/cp", ["-a", src, dst])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func chunkKeys(_ store: any ObjectStore, revision n: UInt64, env: String) throws -> Set<String> {
        let rec = try RevisionRecord.decode(try store.get(RevisionRecord.objectKey(env: env, revision: n)))
        let m = try Manifest.decode(try store.get(Ref.manifestKey(rec.manifestID!)))
        return Set(m.chunks.map(\.id.objectKey))
    }

    func lifecycle(storeURL: String, store: any ObjectStore, env: [String: String]) throws {
        let src = h.dir + "/venv", name = "venv"
        let mk = try h.run("/usr/bin/env", ["python3", "-m", "venv", src])
        XCTAssertEqual(mk.status, 0, mk.stderr)
        var freezes: [String] = []
        let steps: [[String]] = [["six==1.16.0"], ["idna==3.7"], ["six==1.17.0", "packaging==24.1"]]
        for (i, pkgs) in steps.enumerated() {
            _ = try pip(src, ["install", "--no-deps", "-q"] + pkgs)
            freezes.append(try pip(src, ["freeze"]))
            try copyAside(src, h.dir + "/copy\(i + 1)")
            let p = try h.run("envpublish", [src, storeURL], env: env)
            XCTAssertEqual(p.status, 0, p.stderr)
            XCTAssertTrue(p.stdout.contains("\(name): revision \(i + 1),"), p.stdout)
            XCTAssertTrue(p.stdout.contains("/month at $0.015/GB-month"), "the cost line: \(p.stdout)")
        }
        XCTAssertTrue(freezes[2].contains("six==1.17.0"), freezes[2])

        // freeze == pip freeze, for every revision and for the current one.
        for n in 1...3 {
            let f = try h.run("envmount", ["freeze", storeURL, "--env", name, "--revision", "\(n)"], env: env)
            XCTAssertEqual(f.status, 0, f.stderr)
            XCTAssertEqual(f.stdout, freezes[n - 1], "freeze of revision \(n)")
        }
        XCTAssertEqual(try h.run("envmount", ["freeze", storeURL, "--env", name], env: env).stdout, freezes[2])

        // diff speaks in packages; the default is the two latest.
        let d12 = try h.run("envmount", ["diff", storeURL, "--env", name, "1", "2"], env: env)
        XCTAssertEqual(d12.status, 0, d12.stderr)
        XCTAssertTrue(d12.stdout.contains("added       idna 3.7"), d12.stdout)
        let d = try h.run("envmount", ["diff", storeURL, "--env", name], env: env)
        XCTAssertTrue(d.stdout.contains("revision 2"), d.stdout)
        XCTAssertTrue(d.stdout.contains("upgraded    six 1.16.0 → 1.17.0"), d.stdout)
        XCTAssertTrue(d.stdout.contains("added       packaging 24.1"), d.stdout)
        XCTAssertTrue(d.stdout.contains("new chunks"), d.stdout)

        // ls: three revisions, 3 current; JSON parses.
        let ls = try h.run("envmount", ["ls", storeURL, "--json"], env: env)
        XCTAssertEqual(ls.status, 0, ls.stderr)
        let doc = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(ls.stdout.utf8)) as? [String: Any])
        let envs = try XCTUnwrap(doc["environments"] as? [[String: Any]])
        XCTAssertEqual(envs.first?["current"] as? Int, 3)
        XCTAssertEqual((envs.first?["revisions"] as? [Any])?.count, 3)
        XCTAssertGreaterThan(doc["totalBytes"] as? Int ?? 0, 0)

        // --revision mounts each revision as it was.
        for n in 1...3 {
            let mp = h.dir + "/mnt\(n)"
            try h.mount(storeURL, mp, cache: h.dir + "/cache", ["--env", name, "--revision", "\(n)", "--no-relocate"], env: env)
            XCTAssertGreaterThan(try TreeFixture.assertSame(source: h.dir + "/copy\(n)", mount: mp, skipContent: [], relocated: false), 100)
            XCTAssertEqual(try h.unmount(mp).status, 0)
        }
        let none = try h.run("envmount", ["mount", storeURL, h.dir + "/mnt1", "--env", name, "--revision", "9", "--cache-dir", h.dir + "/cache"], env: env)
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.stderr.contains("no revision 9"), none.stderr)

        // gc --keep-last 2: revision 1's own chunks go, 2 and 3 stay whole.
        let only1 = try chunkKeys(store, revision: 1, env: name)
            .subtracting(try chunkKeys(store, revision: 2, env: name)).subtracting(try chunkKeys(store, revision: 3, env: name))
        XCTAssertFalse(only1.isEmpty)
        let gc = try h.run("envpublish", ["gc", storeURL, "--keep-last", "2", "--grace", "0s"], env: env)
        XCTAssertEqual(gc.status, 0, gc.stderr)
        XCTAssertTrue(gc.stdout.contains("dropped 1"), gc.stdout)
        XCTAssertTrue(gc.stdout.contains("freed"), gc.stdout)
        let left = Set(try store.list(prefix: "chunks/"))
        XCTAssertTrue(only1.isDisjoint(with: left), "revision 1's own chunks are gone")
        XCTAssertFalse(try store.exists(RevisionRecord.objectKey(env: name, revision: 1)))
        for n in 2...3 {
            let mp = h.dir + "/mnt\(n)"
            try h.mount(storeURL, mp, cache: h.dir + "/cache-after-gc", ["--env", name, "--revision", "\(n)", "--no-relocate"], env: env)
            XCTAssertGreaterThan(try TreeFixture.assertSame(source: h.dir + "/copy\(n)", mount: mp, skipContent: [], relocated: false), 100)
            XCTAssertEqual(try h.unmount(mp).status, 0)
        }

        // Two publishes at once, as two processes: two revisions, both recorded, the later current.
        try FS.makeDirectories(h.dir + "/a/pkg")
        try FS.makeDirectories(h.dir + "/b/pkg")
        var rng = SeededRandom(seed: 77)
        try writeFile((h.dir + "/a/pkg/x.bin").pathBytes, rng.bytes(3 << 20))
        try writeFile((h.dir + "/b/pkg/y.bin").pathBytes, rng.bytes(3 << 20))
        let results = LockedResults()
        let group = DispatchGroup()
        for t in ["a", "b"] {
            group.enter()
            nonisolated(unsafe) let harness = h!
            DispatchQueue.global().async {
                let r = try? harness.run("envpublish", [harness.dir + "/" + t, storeURL, "--env", "both", "--quiet"], env: env)
                results.add(r)
                group.leave()
            }
        }
        group.wait()
        let rs = results.all
        XCTAssertEqual(rs.count, 2)
        XCTAssertEqual(rs.filter { $0?.status == 0 }.count, 2, rs.map { $0?.stderr ?? "" }.joined())
        let claimed = rs.compactMap { $0?.stdout.components(separatedBy: "revision ").dropFirst().first?.prefix { $0.isNumber } }.sorted()
        XCTAssertEqual(claimed, ["1", "2"], rs.map { $0?.stdout ?? "" }.joined())
        XCTAssertEqual(try Ref.decode(try store.get(Ref.objectKey(env: "both"))).revision, 2)
        XCTAssertTrue(try store.exists(RevisionRecord.objectKey(env: "both", revision: 1)))
        XCTAssertTrue(try store.exists(RevisionRecord.objectKey(env: "both", revision: 2)))
    }

    func testRevisionsOfARealVenvInADirectoryStore() throws {
        let dir = h.dir + "/store"
        try lifecycle(storeURL: dir, store: DirectoryStore(root: dir), env: [:])
    }

    func testRevisionsOfARealVenvInS3() throws {
        let moto = try MotoServer()
        stops.append { moto.stop() }
        let s3 = try S3Store(url: "s3://envs/life", options: StoreOptions(), environment: moto.env)
        try s3.createBucket()
        try lifecycle(storeURL: "s3://envs/life", store: s3, env: moto.env)
    }

    /// A gc with the default grace period while a publish uploads: the publish's new chunks are
    /// young, so gc leaves them, and the new revision mounts whole.
    func testGCDuringAPublishLosesNothing() throws {
        let src = h.dir + "/big", store = h.dir + "/store"
        try FS.makeDirectories(src)
        var rng = SeededRandom(seed: 5)
        try writeFile((src + "/old.bin").pathBytes, rng.bytes(2 << 20))
        XCTAssertEqual(try h.publish(src, store, ["--env", "big"]).status, 0)
        for i in 0..<10 { try writeFile((src + "/f\(i).bin").pathBytes, rng.bytes(2 << 20)) }
        let group = DispatchGroup()
        nonisolated(unsafe) var published: CommandResult?
        group.enter()
        nonisolated(unsafe) let harness = h!
        DispatchQueue.global().async {
            published = try? harness.run("envpublish", [src, store, "--env", "big", "--quiet", "--jobs", "1", "--level", "19"])
            group.leave()
        }
        var gcRuns = 0
        while group.wait(timeout: .now() + 0.3) == .timedOut {
            let gc = try h.run("envpublish", ["gc", store, "--keep-last", "1"])
            XCTAssertEqual(gc.status, 0, gc.stderr)
            gcRuns += 1
        }
        XCTAssertGreaterThan(gcRuns, 0, "gc ran while the publish did")
        XCTAssertEqual(published?.status, 0, published?.stderr ?? "")
        let mp = h.dir + "/mnt"
        try h.mount(store, mp, cache: h.dir + "/cache", ["--env", "big"])
        XCTAssertEqual(try TreeFixture.assertSame(source: src, mount: mp, skipContent: []), 12)
    }
}

extension LifecycleMountTests {
    /// Signed revisions: `--revision N` mounts an older signed revision on purpose past the
    /// rollback check, a replayed older ref without it is still refused, and a signed rollback
    /// becomes the newest revision.
    func testSignedRevisionsMountOnPurposeAndRollBack() throws {
        let store = h.dir + "/store", key = h.dir + "/key.pem", state = h.dir + "/state"
        let env = ["ENVMOUNT_CONFIG_DIR": h.dir + "/etc"]
        XCTAssertEqual(try h.run("envpublish", ["keygen", key]).status, 0)
        var rng = SeededRandom(seed: 9)
        for t in ["a", "b"] {
            try FS.makeDirectories(h.dir + "/\(t)/pkg")
            try writeFile((h.dir + "/\(t)/pkg/\(t).bin").pathBytes, rng.bytes(1 << 20))
            let p = try h.run("envpublish", [h.dir + "/" + t, store, "--env", "s", "--sign", key, "--quiet"])
            XCTAssertEqual(p.status, 0, p.stderr)
        }
        let trust = ["--env", "s", "--trust", key + ".pub", "--state-dir", state]
        try h.mount(store, h.dir + "/m2", cache: h.dir + "/cache", trust, env: env)
        XCTAssertEqual(try h.unmount(h.dir + "/m2").status, 0)

        // Replaying revision 1's ref (validly signed) is refused as a rollback ...
        let current = try FS.readFile(store + "/refs/s")
        let old = try RevisionRecord.decode(try FS.readFile(store + "/revisions/s/1"))
        try FS.writeFileAtomically(store + "/refs/s", old.refBytes)
        try FS.makeDirectories(h.dir + "/m1")
        let refused = try h.run("envmount", ["mount", store, h.dir + "/m1", "--cache-dir", h.dir + "/cache"] + trust, env: env)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("rollback"), refused.stderr)
        try FS.writeFileAtomically(store + "/refs/s", current)
        // ... but mounting it on purpose works, and is checked as signed.
        try h.mount(store, h.dir + "/m1", cache: h.dir + "/cache", trust + ["--revision", "1"], env: env)
        XCTAssertEqual(try TreeFixture.assertSame(source: h.dir + "/a", mount: h.dir + "/m1", skipContent: []), 3)
        XCTAssertEqual(try h.unmount(h.dir + "/m1").status, 0)

        // A signed rollback is revision 3, and mounts as the newest.
        let rb = try h.run("envpublish", ["rollback", store, "--env", "s", "--to", "1", "--sign", key])
        XCTAssertEqual(rb.status, 0, rb.stderr)
        XCTAssertTrue(rb.stdout.contains("revision 3 restores revision 1"), rb.stdout)
        try FS.makeDirectories(h.dir + "/m3")
        let again = try h.run("envmount", ["mount", store, h.dir + "/m3", "--cache-dir", h.dir + "/cache"] + trust, env: env)
        XCTAssertEqual(again.status, 0, again.stderr)
        try h.adopt(h.dir + "/m3", again)
        XCTAssertTrue(again.stdout.contains("revision 3"), again.stdout)
        XCTAssertEqual(try TreeFixture.assertSame(source: h.dir + "/a", mount: h.dir + "/m3", skipContent: []), 3)
    }
}

final class LockedResults: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [CommandResult?] = []
    func add(_ r: CommandResult?) { lock.lock(); items.append(r); lock.unlock() }
    var all: [CommandResult?] { lock.lock(); defer { lock.unlock() }; return items }
}
