import TestSupport
import XCTest
import EnvFormat

final class ChunkerTests: XCTestCase {
    static let small = ChunkingParams(minSize: 4 << 10, avgSize: 16 << 10, maxSize: 64 << 10)

    /// Chunks `files` (one stream in order), each file fed in append calls of random sizes.
    func chunk(_ files: [[UInt8]], params: ChunkingParams = small, maxPiece: Int, seed: UInt64) -> [StreamChunker.Chunk] {
        var rng = SeededRandom(seed: seed)
        var chunker = StreamChunker(params: params)
        var out: [StreamChunker.Chunk] = []
        for (f, bytes) in files.enumerated() {
            if bytes.isEmpty {
                XCTAssertTrue(chunker.append(file: f, fileOffset: 0, bytes: bytes[...]).isEmpty)
                continue
            }
            for r in randomSplits(bytes.count, maxPiece: maxPiece, rng: &rng) {
                out += chunker.append(file: f, fileOffset: UInt64(r.lowerBound), bytes: bytes[r])
            }
        }
        out += chunker.finish()
        return out
    }

    /// Adjacent pieces of one file merged, so chunkings fed in different splits compare equal.
    func mergedPieces(_ c: StreamChunker.Chunk) -> [StreamChunker.Piece] {
        var out: [StreamChunker.Piece] = []
        for p in c.pieces {
            if var last = out.last, last.file == p.file, last.chunkOffset + last.length == p.chunkOffset,
               last.fileOffset + UInt64(last.length) == p.fileOffset {
                last.length += p.length
                out[out.count - 1] = last
            } else {
                out.append(p)
            }
        }
        return out
    }

    func assertSizesInBounds(_ chunks: [StreamChunker.Chunk], _ p: ChunkingParams, file: StaticString = #filePath, line: UInt = #line) {
        for (k, c) in chunks.enumerated() {
            XCTAssertLessThanOrEqual(c.bytes.count, p.maxSize, "chunk \(k)", file: file, line: line)
            XCTAssertGreaterThan(c.bytes.count, 0, "chunk \(k)", file: file, line: line)
            if k < chunks.count - 1 {
                XCTAssertGreaterThanOrEqual(c.bytes.count, p.minSize, "chunk \(k) of \(chunks.count)", file: file, line: line)
            }
        }
    }

    func testSmallParamsAreValid() {
        XCTAssertTrue(Self.small.isValid)
        XCTAssertTrue(ChunkingParams.default.isValid)
        XCTAssertFalse(ChunkingParams(minSize: 4096, avgSize: 12288, maxSize: 65536).isValid, "avg not a power of two")
        XCTAssertFalse(ChunkingParams(minSize: 32, avgSize: 1024, maxSize: 4096).isValid, "min below 64")
        XCTAssertFalse(ChunkingParams(minSize: 4096, avgSize: 4096, maxSize: 65536).isValid, "min == avg")
        XCTAssertFalse(ChunkingParams(minSize: 4096, avgSize: 65536, maxSize: 65536).isValid, "avg == max")
        XCTAssertFalse(ChunkingParams(minSize: 1 << 20, avgSize: 1 << 24, maxSize: 128 << 20).isValid, "max above 64 MiB")
    }

    func testChunksStayWithinBoundsAndConcatenateToTheInput() {
        let data = randomBytes(16 << 20, seed: 1)
        let chunks = chunk([data], maxPiece: 300_000, seed: 2)
        XCTAssertGreaterThan(chunks.count, 16 << 20 / (64 << 10))
        assertSizesInBounds(chunks, Self.small)
        XCTAssertEqual(chunks.flatMap(\.bytes), data)
        // Some cuts are content-defined, not all forced at the maximum.
        XCTAssertGreaterThan(chunks.filter { $0.bytes.count < Self.small.maxSize }.count, chunks.count / 2)
    }

    /// Files of awkward sizes: empty, one byte, and each size at a chunking limit.
    func awkwardFiles(seed: UInt64) -> [[UInt8]] {
        let p = Self.small
        var rng = SeededRandom(seed: seed)
        var sizes = [0, 1, 0, p.minSize, p.minSize - 1, p.minSize + 1, p.avgSize, p.maxSize, p.maxSize - 1,
                     p.maxSize + 1, 2 * p.maxSize, 0, 3 * p.maxSize + 7, 1 << 20]
        while sizes.reduce(0, +) < 12 << 20 {
            sizes.append(Int.random(in: 0...(3 * p.maxSize), using: &rng))
            if Int.random(in: 0..<8, using: &rng) == 0 { sizes.append(0) }
        }
        sizes.shuffle(using: &rng)
        return sizes.enumerated().map { randomBytes($0.element, seed: seed &+ UInt64($0.offset) &+ 100) }
    }

    func testPiecesMapBackToFileOffsets() {
        let files = awkwardFiles(seed: 7)
        let chunks = chunk(files, maxPiece: 100_000, seed: 8)
        assertSizesInBounds(chunks, Self.small)
        XCTAssertEqual(chunks.flatMap(\.bytes), files.flatMap { $0 })

        var covered = [UInt64](repeating: 0, count: files.count)   // bytes of each file seen, in order
        var lastFile = -1
        for (k, c) in chunks.enumerated() {
            var at = 0
            for p in c.pieces {
                XCTAssertEqual(p.chunkOffset, at, "pieces of chunk \(k) are contiguous")
                XCTAssertGreaterThan(p.length, 0, "chunk \(k) has an empty piece")
                XCTAssertGreaterThanOrEqual(p.file, lastFile, "files appear in stream order")
                lastFile = p.file
                XCTAssertEqual(p.fileOffset, covered[p.file], "file \(p.file) continues where it left off")
                let src = files[p.file]
                XCTAssertLessThanOrEqual(Int(p.fileOffset) + p.length, src.count)
                XCTAssertTrue(c.bytes[p.chunkOffset..<p.chunkOffset + p.length]
                                .elementsEqual(src[Int(p.fileOffset)..<Int(p.fileOffset) + p.length]),
                              "chunk \(k) piece for file \(p.file) at \(p.fileOffset)")
                covered[p.file] += UInt64(p.length)
                at += p.length
            }
            XCTAssertEqual(at, c.bytes.count, "pieces of chunk \(k) cover it")
        }
        for (f, bytes) in files.enumerated() { XCTAssertEqual(covered[f], UInt64(bytes.count), "file \(f) fully covered") }
    }

    func testResultIsIndependentOfHowAppendsAreSplit() {
        let files = awkwardFiles(seed: 11)
        let reference = chunk(files, maxPiece: Int.max / 2, seed: 0)     // each file in one call
        for (maxPiece, seed) in [(1000, UInt64(1)), (70_000, 2), (2_000_000, 3)] {
            let other = chunk(files, maxPiece: maxPiece, seed: seed)
            XCTAssertEqual(other.map { ChunkID.of($0.bytes) }, reference.map { ChunkID.of($0.bytes) }, "split \(maxPiece)")
            XCTAssertEqual(other.map(mergedPieces), reference.map(mergedPieces), "split \(maxPiece)")
        }
        // The files concatenated and fed as one gives the same boundaries.
        let whole = chunk([files.flatMap { $0 }], maxPiece: 500_000, seed: 4)
        XCTAssertEqual(whole.map { ChunkID.of($0.bytes) }, reference.map { ChunkID.of($0.bytes) })
    }

    func testBoundariesResynchroniseAfterAnInsertion() {
        let data = randomBytes(8 << 20, seed: 21)
        let editAt = data.count / 2
        var edited = data
        edited.insert(contentsOf: randomBytes(100, seed: 22), at: editAt)

        let before = chunk([data], maxPiece: 1 << 20, seed: 23)
        let after = chunk([edited], maxPiece: 1 << 20, seed: 24)
        // Every chunk that ends before the edit is unchanged.
        var end = 0
        var k = 0
        while end + before[k].bytes.count <= editAt {
            XCTAssertEqual(ChunkID.of(after[k].bytes), ChunkID.of(before[k].bytes), "chunk \(k) before the edit")
            end += before[k].bytes.count
            k += 1
        }
        XCTAssertGreaterThan(k, 100, "the edit is well inside the stream")
        let old = Set(before.map { ChunkID.of($0.bytes) })
        let changed = after.filter { !old.contains(ChunkID.of($0.bytes)) }.count
        XCTAssertGreaterThanOrEqual(changed, 1)
        XCTAssertLessThanOrEqual(changed, 3, "chunks after the edit resynchronise")
        // And the tail is the same run of chunks.
        XCTAssertEqual(after.suffix(100).map { ChunkID.of($0.bytes) }, before.suffix(100).map { ChunkID.of($0.bytes) })
    }

    func testDefaultParamsAverageAboutOneMebibyte() {
        let data = randomBytes(64 << 20, seed: 31)
        let chunks = chunk([data], params: .default, maxPiece: 4 << 20, seed: 32)
        assertSizesInBounds(chunks, .default)
        let mean = Double(data.count) / Double(chunks.count)
        XCTAssertGreaterThanOrEqual(mean, 0.5 * Double(1 << 20), "mean \(mean) over \(chunks.count) chunks")
        XCTAssertLessThanOrEqual(mean, 2.0 * Double(1 << 20), "mean \(mean) over \(chunks.count) chunks")
        XCTAssertEqual(chunks.reduce(0) { $0 + $1.bytes.count }, data.count)
    }

    func testEmptyStreamHasNoChunks() {
        var chunker = StreamChunker(params: Self.small)
        XCTAssertTrue(chunker.append(file: 0, fileOffset: 0, bytes: [][...]).isEmpty)
        XCTAssertTrue(chunker.finish().isEmpty)
        // A stream shorter than the minimum is one chunk.
        XCTAssertTrue(chunker.append(file: 0, fileOffset: 0, bytes: [1, 2, 3][...]).isEmpty)
        let tail = chunker.finish()
        XCTAssertEqual(tail.map(\.bytes), [[1, 2, 3]])
        let piece = tail.first?.pieces.first
        XCTAssertEqual(tail.first?.pieces.count, 1)
        XCTAssertEqual(piece?.file, 0)
        XCTAssertEqual(piece?.fileOffset, 0)
        XCTAssertEqual(piece?.chunkOffset, 0)
        XCTAssertEqual(piece?.length, 3)
    }
}
