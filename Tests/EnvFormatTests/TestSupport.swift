// Shared helpers for the format tests: seeded random bytes, and access to a manifest object's
// decompressed body so hostile bodies can be built from a valid one.
import TestSupport
import XCTest
import SysKit
import EnvFormat



/// Cuts `0..<count` into ranges of random sizes in 1...maxPiece.
func randomSplits(_ count: Int, maxPiece: Int, rng: inout SeededRandom) -> [Range<Int>] {
    var out: [Range<Int>] = []
    var pos = 0
    while pos < count {
        let n = min(Int.random(in: 1...maxPiece, using: &rng), count - pos)
        out.append(pos..<pos + n)
        pos += n
    }
    return out
}

/// Little-endian bytes of an integer, written by the test itself rather than the code under test.
func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
    (0..<(T.bitWidth / 8)).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
}

enum ManifestObject {
    static let headerSize = 24
    static let entrySize = 51

    /// The decompressed body of an encoded manifest.
    static func body(of object: [UInt8]) throws -> [UInt8] {
        var size: UInt64 = 0
        for k in 0..<8 { size |= UInt64(object[16 + k]) << (8 * UInt64(k)) }
        return try Zstd.decompress(Array(object[headerSize...]), expectedSize: Int(size))
    }

    /// A manifest object around `body`: magic, version, flags 0, body size, one zstd frame.
    static func wrap(_ body: [UInt8], version: UInt32 = Manifest.formatVersion, bodySize: UInt64? = nil) throws -> [UInt8] {
        Array("ENVMNFST".utf8) + le(version) + le(UInt32(0)) + le(bodySize ?? UInt64(body.count))
            + (try Zstd.compress(body, level: 1))
    }

    /// Byte offsets of the sections of `m`'s body (see the layout in Manifest+Coding.swift).
    struct Offsets {
        var metadataCount, chunkCount, names, entryCount, spanCount: Int
        var entries: Int { entryCount + 8 }
    }

    static func offsets(_ m: Manifest) -> Offsets {
        let meta = 12 + 4 + m.sourcePath.count
        var pos = meta + 8
        for (k, v) in m.metadata { pos += 8 + k.utf8.count + v.utf8.count }
        let names = pos + 8 + 40 * m.chunks.count
        let entryCount = names + 4 + m.names.count
        return Offsets(metadataCount: meta, chunkCount: pos, names: names, entryCount: entryCount,
                       spanCount: entryCount + 8 + entrySize * m.entries.count)
    }
}

/// Decoding `object` must throw a FormatError (and of course not crash).
func assertRejected(_ object: [UInt8], _ message: String = "", file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try Manifest.decode(object)
        XCTFail("decode accepted a hostile manifest: \(message)", file: file, line: line)
    } catch is FormatError {
    } catch {
        XCTFail("decode threw \(type(of: error)), not FormatError: \(error) \(message)", file: file, line: line)
    }
}

/// A small tree with every kind of entry a manifest holds, added in unsorted order.
enum SampleTree {
    static let chunking = ChunkingParams(minSize: 64, avgSize: 128, maxSize: 256)
    static let chunks = [
        Manifest.ChunkRecord(id: ChunkID.of([1]), rawSize: 200, storedSize: 120),
        Manifest.ChunkRecord(id: ChunkID.of([2]), rawSize: 100, storedSize: 90),
        Manifest.ChunkRecord(id: ChunkID.of([3]), rawSize: 30, storedSize: 31),
    ]
    static let highBytes: [UInt8] = [0x80, 0xff, 0xc3, 0x28]

    /// Paths of the entries (root excluded) with their kind.
    static let paths: [(String, Manifest.Kind)] = [
        ("lib", .directory), ("lib/python3.11", .directory), ("lib/python3.11/site-packages", .directory),
        ("empty", .directory), ("lib/python3.11/site-packages/a.py", .regular),
        ("lib/python3.11/site-packages/sparse.bin", .regular), ("empty.txt", .regular),
        ("python-abs", .symlink), ("lib/python3.11/site-packages/up", .symlink), ("hard", .regular),
        ("Z upper", .regular), ("bin", .directory), ("bin/python", .symlink), ("xy", .regular),
    ]

    static func builder() -> ManifestBuilder {
        var b = ManifestBuilder()
        func node(_ parent: Int, _ name: String, _ kind: Manifest.Kind, size: UInt64 = 0, mode: UInt32 = 0o644) -> ManifestBuilder.Node {
            ManifestBuilder.Node(parent: parent, name: Array(name.utf8), kind: kind, mode: mode, uid: 1000, gid: 100,
                                 mtimeNs: 1_700_000_000_123_456_789, size: size)
        }
        let root = b.add(node(0, "", .directory, mode: 0o755))
        let lib = b.add(node(root, "lib", .directory, mode: 0o755))
        let py = b.add(node(lib, "python3.11", .directory, mode: 0o700))
        let site = b.add(node(py, "site-packages", .directory))
        b.add(node(root, "empty", .directory))
        let a = b.add(node(site, "a.py", .regular, size: 150))
        b.appendSpan(a, .init(chunk: 0, offset: 0, length: 100))
        b.appendSpan(a, .init(chunk: 1, offset: 0, length: 50))
        let sparse = b.add(node(site, "sparse.bin", .regular, size: 10 + (1 << 20) + 20, mode: 0o600))
        b.appendSpan(sparse, .init(chunk: 1, offset: 50, length: 10))
        b.appendSpan(sparse, .init(chunk: Manifest.Span.zeros, offset: 0, length: 1 << 20))
        b.appendSpan(sparse, .init(chunk: 2, offset: 0, length: 20))
        b.add(node(root, "empty.txt", .regular))
        var abs = node(root, "python-abs", .symlink, size: 16, mode: 0o777)
        abs.symlinkTarget = Array("/usr/bin/python3".utf8)
        b.add(abs)
        var rel = node(site, "up", .symlink, size: 5, mode: 0o777)
        rel.symlinkTarget = Array("../..".utf8)
        b.add(rel)
        var hard = node(root, "hard", .regular, size: 150)
        hard.hardlinkOf = a
        b.add(hard)
        let high = b.add(ManifestBuilder.Node(parent: lib, name: highBytes, kind: .regular, mode: 0o755, uid: 0, gid: 0,
                                              mtimeNs: -5, size: 5))
        b.appendSpan(high, .init(chunk: 2, offset: 20, length: 5))
        let upper = b.add(node(root, "Z upper", .regular, size: 1))
        b.appendSpan(upper, .init(chunk: 2, offset: 29, length: 1))
        let bin = b.add(node(root, "bin", .directory))
        var pyLink = node(bin, "python", .symlink, size: 10, mode: 0o777)
        pyLink.symlinkTarget = Array("python3.11".utf8)
        b.add(pyLink)
        let xy = b.add(node(root, "xy", .regular, size: 3))
        b.appendSpan(xy, .init(chunk: 0, offset: 197, length: 3))
        return b
    }

    static func manifest() throws -> Manifest {
        try builder().build(chunking: chunking, sourcePath: Array("/opt/venvs/ml".utf8),
                            metadata: [("envmount.format", "1"), ("python.version", "3.11.2")], chunks: chunks)
    }
}
