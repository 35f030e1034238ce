import XCTest
import EnvFormat

/// ProfileTranslation over small in-memory manifests whose chunk layout the test writes by hand:
/// a chunk may hold the tail of one file and the head of the next, as the stream chunker cuts them.
final class ProfileTranslationTests: XCTestCase {
    static let chunking = ChunkingParams(minSize: 4 << 10, avgSize: 16 << 10, maxSize: 64 << 10)
    static func id(_ s: String) -> ChunkID { ChunkID.of(Array(s.utf8)) }
    let oldID = id("manifest-1"), newID = id("manifest-2")

    /// `files`: path under pkg/ -> spans (chunk name, offset in chunk, length). Chunk sizes are
    /// the sums of what the spans put in them.
    func manifest(_ files: [(String, [(String, UInt32, UInt32)])]) throws -> Manifest {
        var b = ManifestBuilder()
        b.add(.init(parent: 0, name: [], kind: .directory, mode: 0o755, uid: 0, gid: 0, mtimeNs: 0, size: 0))
        let pkg = b.add(.init(parent: 0, name: Array("pkg".utf8), kind: .directory, mode: 0o755, uid: 0, gid: 0, mtimeNs: 0, size: 0))
        var names: [String] = []
        var raw: [String: UInt32] = [:]
        for (path, spans) in files {
            let size = spans.reduce(UInt64(0)) { $0 + UInt64($1.2) }
            let n = b.add(.init(parent: pkg, name: Array(path.utf8), kind: .regular, mode: 0o644, uid: 0, gid: 0, mtimeNs: 0, size: size))
            for (c, off, len) in spans {
                if raw[c] == nil { names.append(c) }
                raw[c] = max(raw[c] ?? 0, off + len)
                b.appendSpan(n, Manifest.Span(chunk: UInt32(names.firstIndex(of: c)!), offset: off, length: len))
            }
        }
        let table = names.map { Manifest.ChunkRecord(id: Self.id($0), rawSize: raw[$0]!, storedSize: raw[$0]! / 2) }
        return try b.build(chunking: Self.chunking, sourcePath: [], metadata: [], chunks: table)
    }

    /// a(100) b(150) c(300) d(40): X = a + b[0,50), Y = b[50,150) + c[0,30), Z = c[30,300), W = d.
    func rev1() throws -> Manifest {
        try manifest([("a", [("X", 0, 100)]), ("b", [("X", 100, 50), ("Y", 0, 100)]),
                      ("c", [("Y", 100, 30), ("Z", 0, 270)]), ("d", [("W", 0, 40)])])
    }

    func ids(_ names: String...) -> [ChunkID] { names.map(Self.id) }

    func testAnUnchangedTreeKeepsTheSameChunksInTheSameOrder() throws {
        let m = try rev1()
        let p = Profile(manifest: oldID, chunks: ids("Z", "W", "X"))
        let t = ProfileTranslation.translate(p, from: m, to: m, newManifest: newID)
        XCTAssertEqual(t.profile.manifest, newID)
        XCTAssertEqual(t.profile.chunks, ids("Z", "W", "X"))
        XCTAssertEqual(t.rawBytes, 270 + 40 + 150)
        XCTAssertEqual(t.filesDropped, 0)
    }

    func testAChangedFileIsRemappedToItsNewChunksAndUnchangedOnesKeepTheirs() throws {
        // b grows to 160 bytes and is cut differently; a, c and their chunk Z are unchanged.
        let m2 = try manifest([("a", [("X2", 0, 100)]), ("b", [("X2", 100, 60), ("Y2", 0, 100)]),
                               ("c", [("Y2", 100, 30), ("Z", 0, 270)]), ("d", [("W", 0, 40)])])
        let reads = ProfileTranslation.translate(Profile(manifest: oldID, chunks: ids("Z", "Y")), from: try rev1(), to: m2, newManifest: newID)
        // Z holds only c[30,300): still Z. Y held b[50,150) (now in X2 and Y2) and c[0,30) (in Y2).
        XCTAssertEqual(reads.profile.chunks, ids("Z", "X2", "Y2"))
        XCTAssertEqual(reads.filesCarried, 2)
        let headOnly = ProfileTranslation.translate(Profile(manifest: oldID, chunks: ids("X")), from: try rev1(), to: m2, newManifest: newID)
        XCTAssertEqual(headOnly.profile.chunks, ids("X2"), "a and b[0,50) both live in X2 now; named once")
    }

    func testAFileThatIsGoneIsDroppedAndAShrunkFileIsClamped() throws {
        // d removed; b shrinks to 40 bytes, so b[50,150) no longer exists; c unchanged.
        let m2 = try manifest([("a", [("X3", 0, 100)]), ("b", [("X3", 100, 40)]), ("c", [("Y3", 0, 30), ("Z", 0, 270)])])
        let t = ProfileTranslation.translate(Profile(manifest: oldID, chunks: ids("W", "Y")), from: try rev1(), to: m2, newManifest: newID)
        XCTAssertEqual(t.profile.chunks, ids("Y3"), "d is gone; b[50,150) is past b's new end; c[0,30) is in Y3")
        XCTAssertEqual(t.filesDropped, 1)
        XCTAssertEqual(t.rawBytes, 30)
    }

    func testChunksTheOldManifestDoesNotNameAreSkipped() throws {
        let m = try rev1()
        let t = ProfileTranslation.translate(Profile(manifest: oldID, chunks: ids("nope", "W")), from: m, to: m, newManifest: newID)
        XCTAssertEqual(t.profile.chunks, ids("W"))
        XCTAssertEqual(t.unknownChunks, 1)
    }

    func testAPathThatBecameADirectoryIsDropped() throws {
        var b = ManifestBuilder()
        b.add(.init(parent: 0, name: [], kind: .directory, mode: 0o755, uid: 0, gid: 0, mtimeNs: 0, size: 0))
        let pkg = b.add(.init(parent: 0, name: Array("pkg".utf8), kind: .directory, mode: 0o755, uid: 0, gid: 0, mtimeNs: 0, size: 0))
        b.add(.init(parent: pkg, name: Array("d".utf8), kind: .directory, mode: 0o755, uid: 0, gid: 0, mtimeNs: 0, size: 0))
        let m2 = try b.build(chunking: Self.chunking, sourcePath: [], metadata: [], chunks: [])
        let t = ProfileTranslation.translate(Profile(manifest: oldID, chunks: ids("W")), from: try rev1(), to: m2, newManifest: newID)
        XCTAssertEqual(t.profile.chunks, [])
        XCTAssertEqual(t.filesDropped, 1)
    }
}
