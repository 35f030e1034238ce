import TestSupport
import XCTest
import Foundation
import Glibc
import Synchronization
import SysKit
import EnvFormat
import EnvStore
import EnvFetch
import EnvFS
import EnvCache

final class ChunkFetcherTests: XCTestCase {
    var source: TempDir!
    var mounted: Mounted!

    override func setUpWithError() throws {
        source = try TempDir("source")
        try SourceTree.make(at: source.bytes)
        mounted = try Mounted(source: source.path)
    }

    override func tearDown() {
        mounted = nil
        source.remove()
    }

    func disk(_ rel: String) throws -> [UInt8] { try FS.readFile(source.path + "/" + rel) }

    /// A file that uses none of `chunks`.
    func fileAvoiding(_ chunks: Set<UInt32>) throws -> String {
        for f in ["one", "secret", "big/tool", "sparse.img", "max", "hard-a"] where try mounted.chunks(f).isDisjoint(with: chunks) {
            return f
        }
        throw XCTSkip("no file avoids chunks \(chunks)")
    }

    func assertCorruptChunkIsRefused(replacement: (Manifest.ChunkRecord) throws -> [UInt8]) throws {
        let file = try mounted.ino("multi.bin")
        let k = mounted.fs.chunks(ofEntry: Int(file) - 1)[1]
        let rec = mounted.manifest.chunks[Int(k)]
        mounted.store.overwrite(rec.id.objectKey, try replacement(rec))
        let off = try XCTUnwrap(mounted.span(ofChunk: k, inFile: file)).offset
        for (o, n) in [(off, 100), (off > 10 ? off - 10 : 0, 1000), (0, 1 << 20)] {
            let e = fsError { _ = try mounted.read(file, offset: o, size: n) }
            XCTAssertEqual(e?.errno, EIO, "read at \(o)+\(n) must fail with EIO, got \(String(describing: e))")
            if case .io? = e {} else { XCTFail("expected FSError.io, got \(String(describing: e))") }
        }
        XCTAssertFalse(mounted.cache.contains(rec.id, rawSize: rec.rawSize))
        XCTAssertNil(try mounted.cache.open(rec.id), "nothing cached for the refused chunk")
        // The rest of the environment still reads.
        let other = try fileAvoiding([k])
        XCTAssertEqual(try mounted.readAll(try mounted.ino(other)), try disk(other))
        XCTAssertEqual(try mounted.read(file, offset: 0, size: 100), Array(try disk("multi.bin").prefix(100)),
                       "the same file's other chunks still read")
        XCTAssertGreaterThan(mounted.fs.fetcher.stats.corrupt.load(ordering: .relaxed), 0)
    }

    func testChunkWithOtherBytesOfTheSameSizeIsRefused() throws {
        try assertCorruptChunkIsRefused { rec in try Zstd.compress(randomBytes(Int(rec.rawSize), seed: 77)) }
    }

    func testChunkThatDecompressesToAnotherSizeIsRefused() throws {
        try assertCorruptChunkIsRefused { rec in try Zstd.compress(randomBytes(Int(rec.rawSize) + 1, seed: 78)) }
    }

    func testChunkThatIsNotZstdIsRefused() throws {
        try assertCorruptChunkIsRefused { rec in randomBytes(Int(rec.storedSize), seed: 79) }
    }

    func testConcurrentReadersOfOneChunkFetchItOnce() throws {
        // A range inside one chunk that only this file uses.
        let file = try mounted.ino("multi.bin")
        let k = mounted.fs.chunks(ofEntry: Int(file) - 1)[1]
        let span = try XCTUnwrap(mounted.span(ofChunk: k, inFile: file))
        XCTAssertGreaterThan(span.length, 4096)
        let expected = Array(try disk("multi.bin")[Int(span.offset)..<Int(span.offset) + 4096])
        let before = mounted.store.getCount
        let gate = DispatchSemaphore(value: 0)
        let done = DispatchGroup()
        let results = Mutex<[[UInt8]?]>([])
        let fixture = mounted!
        for _ in 0..<16 {
            done.enter()
            Thread {
                gate.wait()
                let b = try? fixture.read(file, offset: span.offset, size: 4096)
                results.withLock { $0.append(b) }
                done.leave()
            }.start()
        }
        for _ in 0..<16 { gate.signal() }
        done.wait()
        XCTAssertEqual(mounted.store.getCount - before, 1, "one GET for sixteen readers")
        XCTAssertTrue(mounted.cache.contains(mounted.manifest.chunks[Int(k)].id, rawSize: mounted.manifest.chunks[Int(k)].rawSize))
        XCTAssertEqual(results.withLock { $0 }.count, 16)
        for r in results.withLock({ $0 }) { XCTAssertEqual(r, expected) }
    }

    func testCachedFilesStillReadWhenTheStoreIsOffline() throws {
        let first = "multi.bin"
        let firstIno = try mounted.ino(first)
        XCTAssertEqual(try mounted.readAll(firstIno), try disk(first))
        let uncached = try fileAvoiding(try mounted.chunks(first))
        XCTAssertFalse(try mounted.chunks(uncached).isEmpty)

        mounted.store.setUnavailable(true)
        let gets = mounted.store.getCount
        XCTAssertEqual(try mounted.readAll(firstIno), try disk(first), "served from the cache")
        XCTAssertEqual(mounted.store.getCount, gets)
        let e = fsError { _ = try mounted.readAll(try mounted.ino(uncached)) }
        XCTAssertEqual(e?.errno, EIO, "\(uncached) needs the store: \(String(describing: e))")

        mounted.store.setUnavailable(false)
        XCTAssertEqual(try mounted.readAll(try mounted.ino(uncached)), try disk(uncached), "reads again once the store is back")
    }

    /// A remount over a cache whose entries were damaged on disk: a flipped byte, a truncation,
    /// a swapped file (another chunk's bytes under this name) and trailing bytes. None of them may
    /// be served: each is removed and fetched again, and the file reads back exactly.
    func testDamagedCacheEntriesAreRefetchedNotServed() throws {
        let name = "multi.bin"
        let file = try mounted.ino(name)
        XCTAssertEqual(try mounted.readAll(file), try disk(name))
        let ks = mounted.fs.chunks(ofEntry: Int(file) - 1)
        XCTAssertGreaterThan(ks.count, 8)
        let cache = mounted.cache
        func entry(_ k: UInt32) -> String { cache.path(of: mounted.manifest.chunks[Int(k)].id) }
        // Flipped bit in the middle of chunk 1.
        var b1 = try FS.readFile(entry(ks[1]))
        b1[b1.count / 2] ^= 0x10
        try FS.writeFileAtomically(entry(ks[1]), b1, mode: 0o600)
        // Chunk 3 cut short.
        try FS.writeFileAtomically(entry(ks[3]), Array(try FS.readFile(entry(ks[3])).dropLast(100)), mode: 0o600)
        // Chunk 5's name holds chunk 6's bytes.
        try FS.writeFileAtomically(entry(ks[5]), try FS.readFile(entry(ks[6])), mode: 0o600)
        // Chunk 7 with a byte too many.
        try FS.writeFileAtomically(entry(ks[7]), try FS.readFile(entry(ks[7])) + [0], mode: 0o600)

        // A new mount process: a fresh fetcher over the same cache and store.
        let fresh = try ChunkCache(directory: cache.directory, durable: false)
        let fetcher = ChunkFetcher(store: mounted.store, cache: fresh, manifest: mounted.manifest)
        let fs = EnvFilesystem(manifest: mounted.manifest, fetcher: fetcher, readAhead: nil)
        let gets = mounted.store.getCount
        let expected = try disk(name)
        // Every chunk read on its own (one-chunk reads are answered with the cache file itself).
        var off: UInt64 = 0
        for s in mounted.manifest.fileSpans(Int(file) - 1) {
            let len = Int(mounted.manifest.spans[s].length)
            let got: [UInt8]
            switch try fs.read(file, offset: off, size: len) {
            case let .bytes(b): got = b
            case let .file(fd, o, n):
                got = try fd.read(count: n, offset: o)
                fd.close()
            }
            XCTAssertEqual(got, Array(expected[Int(off)..<Int(off) + len]), "span at \(off)")
            off += UInt64(len)
        }
        XCTAssertEqual(mounted.store.getCount - gets, 4, "the four damaged entries, and only they, are fetched again")
        XCTAssertEqual(fetcher.stats.damaged.load(ordering: .relaxed), 4)
        XCTAssertEqual(fetcher.stats.verified.load(ordering: .relaxed), UInt64(Set(ks).count - 4), "each good entry hashed once")
        for k in [ks[1], ks[3], ks[5], ks[7]] {
            XCTAssertEqual(ChunkID.of(try FS.readFile(entry(k))), mounted.manifest.chunks[Int(k)].id, "entry \(k) repaired")
        }
        // Checked once per process: a second pass neither hashes nor fetches.
        let fs2Gets = mounted.store.getCount
        var out = [UInt8]()
        while case let .bytes(b) = try fs.read(file, offset: UInt64(out.count), size: 3000), !b.isEmpty { out += b }
        XCTAssertEqual(mounted.store.getCount, fs2Gets)
        XCTAssertEqual(fetcher.stats.verified.load(ordering: .relaxed), UInt64(Set(ks).count - 4))
    }

    /// An entry damaged while the store is unreachable fails the read with EIO: never its bytes.
    func testDamagedEntryWithStoreOfflineIsEIONotWrongBytes() throws {
        let file = try mounted.ino("multi.bin")
        XCTAssertEqual(try mounted.readAll(file), try disk("multi.bin"))
        let k = mounted.fs.chunks(ofEntry: Int(file) - 1)[2]
        let p = mounted.cache.path(of: mounted.manifest.chunks[Int(k)].id)
        var b = try FS.readFile(p)
        b[0] ^= 1
        try FS.writeFileAtomically(p, b, mode: 0o600)
        let fetcher = ChunkFetcher(store: mounted.store, cache: mounted.cache, manifest: mounted.manifest)
        let fs = EnvFilesystem(manifest: mounted.manifest, fetcher: fetcher, readAhead: nil)
        mounted.store.setUnavailable(true)
        let span = try XCTUnwrap(mounted.span(ofChunk: k, inFile: file))
        let e = fsError { _ = try fs.read(file, offset: span.offset, size: 10) }
        XCTAssertEqual(e?.errno, EIO)
        XCTAssertFalse(FS.exists(p), "the damaged entry was removed")
    }
}
