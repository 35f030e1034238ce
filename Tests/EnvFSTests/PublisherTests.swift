import TestSupport
import XCTest
import Glibc
import SysKit
import EnvFormat
import EnvStore
import EnvPublish

final class PublisherTests: XCTestCase {
    var source: TempDir!

    override func setUpWithError() throws { source = try TempDir("publish") }
    override func tearDown() { source.remove() }

    func publish(_ store: MemoryStore, env: String = "ml", skipSpecial: Bool = false) throws -> PublishResult {
        var options = PublishOptions(env: env)
        options.chunking = smallChunking
        options.workers = 2
        options.skipSpecial = skipSpecial
        return try Publisher(store: store, options: options, warn: { _ in }).publish(source: source.path)
    }

    /// About 4 MiB in 40 files of random bytes, plus a few small ones.
    func makeTree() throws {
        try Disk.mkdir(source.bytes.appendingComponent(Array("pkg".utf8)))
        for i in 0..<40 {
            try Disk.write((source.path + "/pkg/mod\(i).so").pathBytes, randomBytes(100_000 + i * 37, seed: UInt64(i)))
        }
        try Disk.write((source.path + "/pyvenv.cfg").pathBytes, Array("home = /usr/bin\nversion = 3.11.2\n".utf8))
        try FS.symlink(target: Array("pkg/mod1.so".utf8), at: (source.path + "/link").pathBytes)
    }

    func refBytes(_ store: MemoryStore, _ env: String = "ml") -> [UInt8]? { try? store.get(Ref.objectKey(env: env)) }

    func testFailedUploadLeavesTheRefAlone() throws {
        try makeTree()
        let store = MemoryStore()
        store.failPuts(1)
        XCTAssertThrowsError(try publish(store)) { XCTAssertTrue($0 is PublishError, "\($0)") }
        XCTAssertNil(refBytes(store), "no ref after a failed first publish")
        XCTAssertFalse(store.keys.contains { $0.hasPrefix("manifests/") })

        let first = try publish(store)
        XCTAssertEqual(first.ref.revision, 1)
        let before = try XCTUnwrap(refBytes(store))

        try Disk.write((source.path + "/pkg/mod3.so").pathBytes, randomBytes(100_111, seed: 1000))
        for failures in [1, 1000] {
            store.failPuts(failures)
            XCTAssertThrowsError(try publish(store), "\(failures) failing puts") { XCTAssertTrue($0 is PublishError, "\($0)") }
            XCTAssertEqual(refBytes(store), before, "the previous revision stays current")
        }
        store.failPuts(0)
        let second = try publish(store)
        XCTAssertEqual(second.ref.revision, 2)
        XCTAssertNotEqual(refBytes(store), before)
    }

    func testFailingManifestOrRefPutLeavesTheRefAlone() throws {
        try makeTree()
        let store = MemoryStore()
        _ = try publish(store)
        let before = try XCTUnwrap(refBytes(store))
        // A change of metadata only: no new chunk, so the first put is the manifest's.
        try FS.chmod((source.path + "/pkg/mod0.so").pathBytes, 0o600)
        store.failPuts(1)
        XCTAssertThrowsError(try publish(store))
        XCTAssertEqual(refBytes(store), before)
        // With the manifest already in the store (the same tree published elsewhere gives the
        // same manifest), the one put left is the ref's.
        let elsewhere = MemoryStore()
        let other = try publish(elsewhere)
        let key = Ref.manifestKey(other.ref.manifest)
        try store.put(key, try elsewhere.get(key))
        store.failPuts(1)
        XCTAssertThrowsError(try publish(store))
        XCTAssertEqual(refBytes(store), before)
        let done = try publish(store)
        XCTAssertEqual(done.chunksUploaded, 0)
        XCTAssertEqual(done.ref.manifest, other.ref.manifest)
        XCTAssertEqual(try Ref.decode(try XCTUnwrap(refBytes(store))).revision, 2)
    }

    func testRepublishOfAnUnchangedTreeKeepsTheRevision() throws {
        try makeTree()
        let store = MemoryStore()
        let first = try publish(store)
        XCTAssertFalse(first.unchanged)
        XCTAssertEqual(first.chunksUploaded, first.chunks)
        XCTAssertEqual(first.files, 41)
        XCTAssertEqual(first.symlinks, 1)
        XCTAssertEqual(first.directories, 2)
        let ref = try XCTUnwrap(refBytes(store))
        let second = try publish(store)
        XCTAssertTrue(second.unchanged)
        XCTAssertEqual(second.ref, first.ref)
        XCTAssertEqual(second.chunksUploaded, 0)
        XCTAssertEqual(refBytes(store), ref, "the ref is not rewritten")
        let m = try Manifest.decode(try store.get(Ref.manifestKey(first.ref.manifest)))
        XCTAssertEqual(m.metadata.first { $0.key == "python.version" }?.value, "3.11.2")
        XCTAssertEqual(m.chunking, smallChunking)
        // Every chunk in the table is in the store and holds its bytes.
        for c in m.chunks {
            let raw = try Zstd.decompress(try store.get(c.id.objectKey), expectedSize: Int(c.rawSize))
            XCTAssertEqual(ChunkID.of(raw), c.id)
            XCTAssertGreaterThan(c.storedSize, 0)
        }
    }

    func testEditingOneFileUploadsOnlyAFewChunks() throws {
        try makeTree()
        let store = MemoryStore()
        let first = try publish(store)
        XCTAssertGreaterThan(first.chunks, 150)

        // Change 100 bytes in the middle of one file.
        let path = source.path + "/pkg/mod20.so"
        var bytes = try FS.readFile(path)
        bytes.replaceSubrange(50_000..<50_100, with: randomBytes(100, seed: 555))
        try Disk.write(path.pathBytes, bytes)
        let second = try publish(store)
        XCTAssertFalse(second.unchanged)
        XCTAssertEqual(second.ref.revision, 2)
        XCTAssertGreaterThanOrEqual(second.chunksUploaded, 1)
        XCTAssertLessThanOrEqual(second.chunksUploaded, 3, "of \(second.chunks) chunks")

        // Insert 1000 bytes into another one: boundaries resynchronise after the edit.
        let other = source.path + "/pkg/mod30.so"
        var more = try FS.readFile(other)
        more.insert(contentsOf: randomBytes(1000, seed: 556), at: 30_000)
        try Disk.write(other.pathBytes, more)
        let third = try publish(store)
        XCTAssertEqual(third.ref.revision, 3)
        XCTAssertLessThanOrEqual(third.chunksUploaded, 4, "of \(third.chunks) chunks")
    }

    func testSpecialFilesFailUnlessSkipped() throws {
        try makeTree()
        let fifo = source.path + "/pkg/a fifo"
        try FS.mkfifo(fifo.pathBytes)
        let store = MemoryStore()
        XCTAssertThrowsError(try publish(store)) { error in
            XCTAssertTrue("\(error)".contains(fifo), "the message names the path: \(error)")
            guard case PublishError.specialFile = error else { return XCTFail("\(error)") }
        }
        XCTAssertNil(refBytes(store))
        let r = try publish(store, skipSpecial: true)
        XCTAssertEqual(r.skipped, 1)
        let m = try Manifest.decode(try store.get(Ref.manifestKey(r.ref.manifest)))
        XCTAssertNil(m.resolve(Array("pkg/a fifo".utf8)))
        XCTAssertNotNil(m.resolve(Array("pkg/mod0.so".utf8)))
    }

    func testInvalidEnvNameIsRefused() throws {
        try makeTree()
        let store = MemoryStore()
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a b"] {
            XCTAssertThrowsError(try publish(store, env: bad), bad) { error in
                guard case PublishError.invalidEnvName = error else { return XCTFail("\(error)") }
            }
        }
        XCTAssertEqual(store.keys, [], "nothing written")
    }

    func testNotADirectoryIsRefused() throws {
        try Disk.write((source.path + "/f").pathBytes, [1])
        var options = PublishOptions(env: "ml")
        options.chunking = smallChunking
        XCTAssertThrowsError(try Publisher(store: MemoryStore(), options: options, warn: { _ in }).publish(source: source.path + "/f"))
        XCTAssertThrowsError(try Publisher(store: MemoryStore(), options: options, warn: { _ in }).publish(source: source.path + "/missing"))
    }
}
