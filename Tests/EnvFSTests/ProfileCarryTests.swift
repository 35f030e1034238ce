import TestSupport
import XCTest
import Glibc
import Synchronization
import SysKit
import EnvFormat
import EnvStore
import EnvPublish

/// The publish stage that carries the previous revision's profiles to the new one.
final class ProfileCarryTests: XCTestCase {
    var source: TempDir!
    final class Lines: Sendable { let m = Mutex<[String]>([]) }
    let warnings = Lines()

    override func setUpWithError() throws { source = try TempDir("carry") }
    override func tearDown() { source.remove() }

    func publish(_ store: MemoryStore) throws -> PublishResult {
        var options = PublishOptions(env: "ml")
        options.chunking = smallChunking
        options.workers = 2
        let w = warnings
        return try Publisher(store: store, options: options, warn: { m in w.m.withLock { $0.append(m) } }).publish(source: source.path)
    }

    func writeTree(version: UInt64) throws {
        try FS.makeDirectories(source.path + "/pkg")
        for i in 0..<12 {
            // mod7 is the package that changes between versions.
            let seed = i == 7 ? 1000 + version : UInt64(i)
            try Disk.write((source.path + "/pkg/mod\(i).so").pathBytes, randomBytes(90_000 + i * 37, seed: seed))
        }
    }

    func manifest(_ store: MemoryStore, _ r: PublishResult) throws -> Manifest {
        try Manifest.decode(try store.get(Ref.manifestKey(r.ref.manifest)))
    }

    /// The chunk ids of a file's spans, in file order.
    func chunks(_ m: Manifest, _ path: String) -> [ChunkID] {
        let e = m.resolve(Array(path.utf8))!
        return m.fileSpans(e).map { m.chunks[Int(m.spans[$0].chunk)].id }
    }

    func testAProfileIsCarriedToTheNextRevisionThroughTheFilesItRead() throws {
        try writeTree(version: 1)
        let store = MemoryStore()
        let r1 = try publish(store)
        let m1 = try manifest(store, r1)
        // A run that read mod7 (the package that will change), then mod3.
        var read: [ChunkID] = []
        for c in chunks(m1, "pkg/mod7.so") + chunks(m1, "pkg/mod3.so") where !read.contains(c) { read.append(c) }
        let original = Profile(manifest: r1.ref.manifest, chunks: read)
        try store.put(Profile.objectKey(env: "ml", manifest: r1.ref.manifest, name: "default"), original.encode())

        try writeTree(version: 2)
        let r2 = try publish(store)
        XCTAssertEqual(r2.ref.revision, 2)
        XCTAssertEqual(r2.carriedProfiles.map(\.name), ["default"])
        XCTAssertEqual(r2.carriedProfiles.first?.fromRevision, 1)
        let m2 = try manifest(store, r2)
        let carried = try Profile.decode(try store.get(Profile.objectKey(env: "ml", manifest: r2.ref.manifest, name: "default")))
        XCTAssertEqual(carried.manifest, r2.ref.manifest)
        XCTAssertEqual(r2.carriedProfiles.first?.chunks, carried.chunks.count)
        let new7 = chunks(m2, "pkg/mod7.so"), same3 = chunks(m2, "pkg/mod3.so")
        XCTAssertEqual(same3, chunks(m1, "pkg/mod3.so"), "mod3 did not change")
        XCTAssertFalse(Set(new7).isSubset(of: Set(read)), "mod7 changed, so it has new chunks")
        XCTAssertTrue(Set(new7).isSubset(of: Set(carried.chunks)), "the changed file's new chunks are in the carried profile")
        XCTAssertTrue(Set(same3).isSubset(of: Set(carried.chunks)), "the unchanged file keeps its chunks")
        XCTAssertEqual(Set(carried.chunks).count, carried.chunks.count, "each chunk named once")
        // First-read order: mod7's chunks come before the chunks only mod3 holds.
        let last7 = new7.compactMap { carried.chunks.firstIndex(of: $0) }.max()!
        let first3 = same3.filter { !new7.contains($0) }.compactMap { carried.chunks.firstIndex(of: $0) }.min()!
        XCTAssertLessThan(last7, first3)
        // Bounded: at most the neighbours' chunks that shared a chunk with the files read.
        XCTAssertLessThanOrEqual(carried.chunks.count, new7.count + same3.count + 2)

    }

    func testAProfileTheNewRevisionAlreadyHasIsNotReplaced() throws {
        try writeTree(version: 1)
        let store = MemoryStore()
        let r1 = try publish(store)
        try store.put(Profile.objectKey(env: "ml", manifest: r1.ref.manifest, name: "default"),
                      Profile(manifest: r1.ref.manifest, chunks: chunks(try manifest(store, r1), "pkg/mod3.so")).encode())
        try writeTree(version: 2)
        // The same tree published elsewhere first tells the manifest revision 2 will have.
        let m2 = try publish(MemoryStore()).ref.manifest
        let own = Profile(manifest: m2, chunks: [])
        try store.put(Profile.objectKey(env: "ml", manifest: m2, name: "default"), own.encode())
        let r2 = try publish(store)
        XCTAssertEqual(r2.ref.manifest, m2)
        XCTAssertEqual(r2.carriedProfiles, [])
        XCTAssertEqual(try Profile.decode(try store.get(Profile.objectKey(env: "ml", manifest: m2, name: "default"))), own)
    }

    func testABrokenProfileIsAWarningNotAFailedPublish() throws {
        try writeTree(version: 1)
        let store = MemoryStore()
        let r1 = try publish(store)
        let key = Profile.objectKey(env: "ml", manifest: r1.ref.manifest, name: "junk")
        try store.put(key, Array("not a profile".utf8))
        try writeTree(version: 2)
        let r2 = try publish(store)
        XCTAssertEqual(r2.ref.revision, 2)
        XCTAssertEqual(r2.carriedProfiles, [])
        XCTAssertTrue(warnings.m.withLock { $0.contains { $0.contains(key) && $0.contains("not carried") } }, "\(warnings.m.withLock { $0 })")
        XCTAssertFalse(try store.exists(Profile.objectKey(env: "ml", manifest: r2.ref.manifest, name: "junk")))
    }

    func testAFirstPublishOrAnUnchangedTreeCarriesNothing() throws {
        try writeTree(version: 1)
        let store = MemoryStore()
        let r1 = try publish(store)
        try store.put(Profile.objectKey(env: "ml", manifest: r1.ref.manifest, name: "default"),
                      Profile(manifest: r1.ref.manifest, chunks: []).encode())
        let again = try publish(store)
        XCTAssertTrue(again.unchanged)
        XCTAssertEqual(again.carriedProfiles, [])
        XCTAssertEqual(try store.list(prefix: "profiles/").count, 1)
    }
}
