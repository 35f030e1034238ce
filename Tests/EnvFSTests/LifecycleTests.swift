import Dispatch
import TestSupport
import XCTest
import Glibc
import Synchronization
import SysKit
import EnvFormat
import EnvStore
import EnvPublish

/// Revisions, concurrent publishes, rollback and gc through Publisher over a MemoryStore and a
/// DirectoryStore (the same bodies; S3 runs in the integration tests).
final class LifecycleTests: XCTestCase {
    var dirs: [TempDir] = []

    override func tearDown() { for d in dirs { d.remove() } }

    func tree(_ seed: UInt64, files: Int = 12, size: Int = 60_000) throws -> String {
        let d = try TempDir("life\(seed)")
        dirs.append(d)
        try Disk.mkdir((d.path + "/pkg").pathBytes)
        for i in 0..<files {
            try Disk.write((d.path + "/pkg/m\(i).so").pathBytes, randomBytes(size + i, seed: seed * 1000 + UInt64(i)))
        }
        return d.path
    }

    func publisher(_ store: any ObjectStore, env: String = "ml", progress: @escaping @Sendable (PublishProgress) -> Void = { _ in }) -> Publisher {
        var o = PublishOptions(env: env)
        o.chunking = smallChunking
        o.workers = 3
        return Publisher(store: store, options: o, warn: { _ in }, progress: progress)
    }

    func directoryStore() throws -> DirectoryStore {
        let d = try TempDir("lifestore")
        dirs.append(d)
        return DirectoryStore(root: d.path + "/store")
    }

    func current(_ store: any ObjectStore, _ env: String = "ml") throws -> Ref {
        try Ref.decode(try store.get(Ref.objectKey(env: env)))
    }

    /// Rounds of two publishes started at the same instant: two distinct revisions each round,
    /// both recorded with their own manifest, the higher one current, none claimed twice.
    func concurrentPublishes(_ store: any ObjectStore) throws {
        var expected: UInt64 = 0
        for round in 0..<6 {
            let a = try tree(UInt64(100 + round * 2)), b = try tree(UInt64(101 + round * 2))
            let results = Mutex<[PublishResult]>([])
            let errors = Mutex<[String]>([])
            let start = DispatchSemaphore(value: 0)
            let group = DispatchGroup()
            for src in [a, b] {
                group.enter()
                let p = publisher(store)
                DispatchQueue.global().async {
                    start.wait()
                    do {
                        let r = try p.publish(source: src)
                        results.withLock { $0.append(r) }
                    } catch { errors.withLock { $0.append("\(error)") } }
                    group.leave()
                }
            }
            start.signal(); start.signal()
            group.wait()
            XCTAssertEqual(errors.withLock { $0 }, [])
            let rs = results.withLock { $0 }
            XCTAssertEqual(rs.count, 2)
            let numbers = rs.map(\.ref.revision).sorted()
            XCTAssertEqual(numbers, [expected + 1, expected + 2], "round \(round): two distinct revisions")
            expected += 2
            for r in rs {
                let rec = try RevisionRecord.decode(try store.get(RevisionRecord.objectKey(env: "ml", revision: r.ref.revision)))
                XCTAssertEqual(rec.manifest, r.ref.manifest.hex, "revision \(r.ref.revision) records the manifest of the publish that claimed it")
                XCTAssertEqual(try Ref.decode(rec.refBytes), r.ref)
            }
            XCTAssertEqual(try current(store).revision, expected, "the later revision is current")
        }
        XCTAssertEqual(try RevisionLog(store: store, env: "ml").numbers(), Array(1...expected))
    }

    func testConcurrentPublishesMemory() throws { try concurrentPublishes(MemoryStore()) }
    func testConcurrentPublishesDirectory() throws { try concurrentPublishes(try directoryStore()) }

    func testRollbackIsANewRevision() throws {
        let store = try directoryStore()
        let a = try tree(1), b = try tree(2)
        let r1 = try publisher(store).publish(source: a)
        let r2 = try publisher(store).publish(source: b)
        XCTAssertEqual([r1.ref.revision, r2.ref.revision], [1, 2])
        let r3 = try Rollback.run(store: store, env: "ml", to: 1)
        XCTAssertEqual(r3.revision, 3)
        XCTAssertEqual(r3.rollbackOf, 1)
        XCTAssertEqual(try current(store).manifest, r1.ref.manifest)
        XCTAssertEqual(try current(store).revision, 3)
        XCTAssertEqual(try RevisionLog(store: store, env: "ml").numbers(), [1, 2, 3], "history is kept")
        XCTAssertThrowsError(try Rollback.run(store: store, env: "ml", to: 1)) { XCTAssertTrue("\($0)".contains("already"), "\($0)") }
        XCTAssertThrowsError(try Rollback.run(store: store, env: "ml", to: 9)) { XCTAssertTrue("\($0)".contains("no revision 9"), "\($0)") }
    }

    func chunkKeys(_ store: any ObjectStore, manifest: ChunkID) throws -> Set<String> {
        Set(try Manifest.decode(try store.get(Ref.manifestKey(manifest))).chunks.map(\.id.objectKey))
    }

    func testGCKeepsTheLastRevisionsAndRespectsTheGracePeriod() throws {
        let store = MemoryStore()
        let srcs = [try tree(11), try tree(12), try tree(13)]
        var refs: [Ref] = []
        for s in srcs { refs.append(try publisher(store).publish(source: s).ref) }
        let unique1 = try chunkKeys(store, manifest: refs[0].manifest)
            .subtracting(try chunkKeys(store, manifest: refs[1].manifest)).subtracting(try chunkKeys(store, manifest: refs[2].manifest))
        XCTAssertFalse(unique1.isEmpty)

        var o = GCOptions()
        o.keepLast = 2
        // Everything is young: nothing may go.
        let before = Set(store.keys)
        let young = try GarbageCollector(store: store, options: o).run()
        XCTAssertEqual(young.dropped["ml"], [1])
        XCTAssertEqual(young.freedObjects, 0)
        XCTAssertEqual(young.young.count, 1, "the record; a young manifest keeps its chunks")
        XCTAssertEqual(Set(store.keys).subtracting([GCMarker.completed]), before)

        for k in store.keys { store.age(k, seconds: 7200) }
        o.dryRun = true
        let dry = try GarbageCollector(store: store, options: o).run()
        XCTAssertEqual(dry.deleted["chunks"]?.count, unique1.count)
        XCTAssertEqual(Set(store.keys).subtracting([GCMarker.completed]), before, "a dry run deletes nothing")

        o.dryRun = false
        let r = try GarbageCollector(store: store, options: o).run()
        XCTAssertEqual(r.deleted["chunks"]?.count, unique1.count)
        XCTAssertEqual(r.deleted["revision records"]?.count, 1)
        XCTAssertEqual(r.deleted["manifests"]?.count, 1)
        let keys = Set(store.keys)
        XCTAssertTrue(unique1.isDisjoint(with: keys), "the dropped revision's own chunks are gone")
        for ref in refs.dropFirst() {
            XCTAssertTrue(try chunkKeys(store, manifest: ref.manifest).isSubset(of: keys), "revision \(ref.revision) is whole")
        }
        XCTAssertFalse(keys.contains(RevisionRecord.objectKey(env: "ml", revision: 1)))
        XCTAssertFalse(keys.contains(GCMarker.running))
    }

    /// A gc that runs while a publish is between its chunk listing and its commit deletes chunks
    /// the publish reuses (an old revision's); the publish notices and uploads them again.
    func testGCDuringAPublishLosesNothing() throws {
        for makeStore in [{ MemoryStore() as any ObjectStore }, { try self.directoryStore() as any ObjectStore }] {
            let store = try makeStore()
            let a = try tree(21), b = try tree(22)
            let first = try publisher(store).publish(source: a).ref
            _ = try publisher(store).publish(source: b)
            if let m = store as? MemoryStore { for k in m.keys { m.age(k, seconds: 7200) } }
            let ran = Mutex(false)
            let gcFailure = Mutex<String?>(nil)
            var gcOptions = GCOptions()
            gcOptions.keepLast = 1
            gcOptions.grace = 0
            let o = gcOptions
            let p = publisher(store, progress: { _ in
                guard !ran.withLock({ let r = $0; $0 = true; return r }) else { return }
                do { _ = try GarbageCollector(store: store, options: o).run() } catch { gcFailure.withLock { $0 = "\(error)" } }
            })
            let r = try p.publish(source: a)   // the same tree as revision 1: every chunk reused
            XCTAssertNil(gcFailure.withLock { $0 })
            XCTAssertTrue(ran.withLock { $0 })
            XCTAssertEqual(r.ref.manifest, first.manifest)
            XCTAssertEqual(r.ref.revision, 3)
            for k in try chunkKeys(store, manifest: r.ref.manifest) {
                XCTAssertTrue(try store.exists(k), "\(k) of the new revision survived the gc")
            }
        }
    }

    func testGCKeepWithinKeepsRecentRevisionsAndTheCurrentOne() throws {
        let store = MemoryStore()
        for seed in [51, 52, 53] as [UInt64] { _ = try publisher(store).publish(source: try tree(seed)) }
        var o = GCOptions()
        o.now += 7200         // two hours later: every revision (and object) is two hours old
        o.keepWithin = 3600   // so only the current one is kept
        let r = try GarbageCollector(store: store, options: o).run()
        XCTAssertEqual(r.kept["ml"], [3])
        XCTAssertEqual(r.dropped["ml"], [1, 2])
        XCTAssertEqual(try RevisionLog(store: store, env: "ml").numbers(), [3])
        o.keepWithin = 3 * 3600
        let again = try GarbageCollector(store: store, options: o).run()
        XCTAssertEqual(again.freedObjects, 0, "nothing left to free")
    }

    func testExcludeRules() throws {
        let r = try ExcludeRules(patterns: ["__pycache__", "*.pyc", ".pytest_cache/", "/share/doc", "tests/data", "lib/**/*.a"])
        func x(_ p: String, dir: Bool = false) -> Bool { r.excludes(Array(p.utf8), isDirectory: dir) }
        XCTAssertTrue(x("lib/python3.11/site-packages/six/__pycache__", dir: true))
        XCTAssertTrue(x("a/b/c.cpython-311.pyc"))
        XCTAssertFalse(x("a/b/c.py"))
        XCTAssertFalse(x("a/b/pyc"))
        XCTAssertTrue(x("x/.pytest_cache", dir: true))
        XCTAssertFalse(x("x/.pytest_cache"), "a trailing / matches directories only")
        XCTAssertTrue(x("share/doc", dir: true))
        XCTAssertFalse(x("usr/share/doc", dir: true), "a leading / anchors")
        XCTAssertTrue(x("pkg/tests/data", dir: true))
        XCTAssertFalse(x("pkg/mytests/data", dir: true), "matches at a component boundary")
        XCTAssertTrue(x("lib/x/y/z.a"))
        XCTAssertFalse(x("bin/z.a"))
        XCTAssertThrowsError(try ExcludeRules(patterns: ["/"]))
        XCTAssertThrowsError(try ExcludeRules(patterns: ["[abc"]))
        XCTAssertEqual(try ExcludeRules.patterns(fromFile: Array("# c\n\n- *.pyc\n__pycache__\n".utf8), path: "f"), ["*.pyc", "__pycache__"])
        XCTAssertThrowsError(try ExcludeRules.patterns(fromFile: Array("+ keep\n".utf8), path: "f"))
    }

    func testPublishExcludesAndCountsWhatItLeftOut() throws {
        let src = try tree(31, files: 3)
        try Disk.mkdir((src + "/pkg/__pycache__").pathBytes)
        try Disk.write((src + "/pkg/__pycache__/m.cpython-311.pyc").pathBytes, randomBytes(1000, seed: 1))
        try Disk.write((src + "/pkg/x.pyc").pathBytes, randomBytes(500, seed: 2))
        let store = MemoryStore()
        var o = PublishOptions(env: "ml")
        o.chunking = smallChunking
        o.excludes = ["__pycache__", "*.pyc"]
        let r = try Publisher(store: store, options: o, warn: { _ in }).publish(source: src)
        XCTAssertEqual(r.excludedFiles, 2)
        XCTAssertEqual(r.excludedBytes, 1500)
        XCTAssertEqual(r.files, 3)
        let m = try Manifest.decode(try store.get(Ref.manifestKey(r.ref.manifest)))
        XCTAssertNil(m.resolve(Array("pkg/__pycache__".utf8)))
        XCTAssertNil(m.resolve(Array("pkg/x.pyc".utf8)))
        XCTAssertNotNil(m.resolve(Array("pkg/m0.so".utf8)))
        XCTAssertEqual(r.record?.excludedFiles, 2)
    }

    func testPackagesFreezeAndDiff() throws {
        let src = try tree(41, files: 1)
        let site = src + "/lib/python3.11/site-packages"
        try FS.makeDirectories(site)
        func dist(_ dir: String, _ name: String, _ version: String, directURL: String? = nil) throws {
            try FS.makeDirectories(site + "/" + dir)
            try Disk.write((site + "/\(dir)/METADATA").pathBytes, Array("Metadata-Version: 2.1\nName: \(name)\nVersion: \(version)\n\nName: not-this\n".utf8))
            if let d = directURL { try Disk.write((site + "/\(dir)/direct_url.json").pathBytes, Array(d.utf8)) }
        }
        try dist("six-1.16.0.dist-info", "six", "1.16.0")
        try dist("PyYAML-6.0.1.dist-info", "PyYAML", "6.0.1")
        try dist("pip-23.2.1.dist-info", "pip", "23.2.1")
        try dist("setuptools-65.5.0.dist-info", "setuptools", "65.5.0")
        try dist("mypkg-0.1.dist-info", "mypkg", "0.1", directURL: #"{"url": "file:///tmp/mypkg-0.1-py3-none-any.whl", "archive_info": {"hash": "sha256=ab", "hashes": {"sha256": "ab"}}}"#)
        try dist("dev-1.0.dist-info", "dev", "1.0", directURL: #"{"url": "file:///src/my%20dev", "dir_info": {"editable": true}}"#)
        try Disk.write((src + "/pyvenv.cfg").pathBytes, Array("home = /usr/bin\nversion = 3.11.7\n".utf8))
        let store = MemoryStore()
        let r1 = try XCTUnwrap(publisher(store).publish(source: src).record)
        XCTAssertEqual(PackageScanner.freeze(r1.packages, python: r1.python), """
            # Editable install with no version control (dev==1.0)
            -e /src/my dev
            mypkg @ file:///tmp/mypkg-0.1-py3-none-any.whl#sha256=ab
            PyYAML==6.0.1
            six==1.16.0

            """)
        XCTAssertTrue(PackageScanner.freeze(r1.packages, python: "3.12.1").contains("setuptools==65.5.0"), "3.12 keeps setuptools")

        try FS.removeTree(site + "/six-1.16.0.dist-info")
        try FS.rename(site + "/PyYAML-6.0.1.dist-info", site + "/PyYAML-6.0.10.dist-info")
        try Disk.write((site + "/PyYAML-6.0.10.dist-info/METADATA").pathBytes, Array("Name: PyYAML\nVersion: 6.0.10\n".utf8))
        try dist("idna-3.7.dist-info", "idna", "3.7")
        try dist("setuptools-65.5.0.dist-info", "setuptools", "65.4.0rc1")
        let r2 = try XCTUnwrap(publisher(store).publish(source: src).record)
        let d = PackageDiff(from: r1.packages, to: r2.packages)
        XCTAssertEqual(d.added.map(\.name), ["idna"])
        XCTAssertEqual(d.removed.map(\.name), ["six"])
        XCTAssertEqual(d.upgraded.map(\.to.name), ["PyYAML"], "6.0.10 is newer than 6.0.1 (numbers, not text)")
        XCTAssertEqual(d.downgraded.map(\.to.name), ["setuptools"])
        XCTAssertLessThan(PackageDiff.compareVersions("2.0rc1", "2.0"), 0)
        XCTAssertLessThan(PackageDiff.compareVersions("2.0", "2.0.post1"), 0)
        XCTAssertLessThan(PackageDiff.compareVersions("1.9", "1.10"), 0)
    }
}
