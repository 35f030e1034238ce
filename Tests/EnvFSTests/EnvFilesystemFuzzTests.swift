import TestSupport
import XCTest
import Glibc
import SysKit
import EnvFormat
import EnvStore
import EnvCache
import EnvFetch
import EnvFS

/// Mutated manifests that still decode, served by EnvFilesystem over the real chunks: lookups,
/// getattr, readdir from every offset (and huge ones), readlink and reads at random offsets must
/// never trap, and a read that succeeds must give exactly the bytes the manifest's spans name
/// in the real chunks. Anything else is an error.
final class EnvFilesystemFuzzTests: XCTestCase {
    var source: TempDir!
    var mounted: Mounted!
    /// Real chunk bytes by id.
    var raw: [ChunkID: [UInt8]] = [:]

    override func setUpWithError() throws {
        source = try TempDir("fuzz-source")
        try SourceTree.make(at: source.bytes)
        mounted = try Mounted(source: source.path)
        for c in mounted.manifest.chunks {
            raw[c.id] = try Zstd.decompress(try mounted.store.get(c.id.objectKey), expectedSize: Int(c.rawSize))
        }
    }

    override func tearDown() {
        mounted = nil
        source.remove()
    }

    /// The bytes `[from, to)` of entry `i` as manifest `m` says; nil marks bytes of a chunk whose
    /// record does not match a real chunk (those reads must fail).
    func expected(_ m: Manifest, _ i: Int, from: UInt64, to: UInt64) -> [UInt8?] {
        var out: [UInt8?] = []
        var at: UInt64 = 0
        for s in m.fileSpans(i) {
            let span = m.spans[s]
            let lo = max(at, from), hi = min(at + UInt64(span.length), to)
            defer { at += UInt64(span.length) }
            guard lo < hi else { continue }
            let a = Int(lo - at), b = Int(hi - at)
            if span.chunk == Manifest.Span.zeros {
                out += [UInt8?](repeating: 0, count: b - a)
            } else if let bytes = raw[m.chunks[Int(span.chunk)].id], bytes.count == Int(m.chunks[Int(span.chunk)].rawSize) {
                out += bytes[Int(span.offset) + a..<Int(span.offset) + b].map { Optional($0) }
            } else {
                out += [UInt8?](repeating: nil, count: b - a)
            }
        }
        return out
    }

    func read(_ fs: EnvFilesystem, _ ino: UInt64, _ offset: UInt64, _ size: Int) throws -> [UInt8] {
        switch try fs.read(ino, offset: offset, size: size) {
        case let .bytes(b): return b
        case let .file(fd, o, n):
            defer { fd.close() }
            return try fd.read(count: n, offset: o)
        }
    }

    /// Drives every operation over `m`. Returns the number of reads that gave bytes.
    @discardableResult
    func exercise(_ m: Manifest, cache: ChunkCache, rng: inout SeededRandom, what: String) -> Int {
        let fs = EnvFilesystem(manifest: m, fetcher: ChunkFetcher(store: mounted.store, cache: cache, manifest: m), readAhead: nil)
        var good = 0
        let n = UInt64(m.entries.count)
        for ino in [0, n + 1, n + 1000, UInt64(UInt32.max), UInt64.max] {
            XCTAssertThrowsError(try fs.getattr(ino), "\(what): getattr \(ino)")
            XCTAssertThrowsError(try fs.read(ino, offset: 0, size: 10), "\(what): read \(ino)")
        }
        for i in m.entries.indices {
            let ino = UInt64(i + 1)
            _ = try? fs.getattr(ino)
            // Lookup by its path from the root, component by component.
            var at: UInt64 = 1
            for comp in m.path(i).split(separator: UInt8(ascii: "/")) {
                guard let a = try? fs.lookup(parent: at, name: comp) else { break }
                at = a.ino
            }
            _ = try? fs.lookup(parent: ino, name: Array("nope".utf8))
            _ = try? fs.lookup(parent: ino, name: [UInt8](repeating: 0x61, count: 300))
            _ = try? fs.readlink(ino)
            switch m.entries[i].kind {
            case .directory:
                let count = m.children(i).count
                for from in Array(0...(count + 3)) + [Int.max, Int.max - 1, Int.max - 2, Int.max / 2, Int(Int32.max), -1, Int.min] {
                    var emitted = 0
                    do {
                        try fs.readdir(ino, from: from) { _, _, _, next in
                            XCTAssertGreaterThan(next, 0)
                            emitted += 1
                            return emitted < 1000
                        }
                    } catch {}
                    XCTAssertLessThanOrEqual(emitted, count + 2, "\(what): readdir \(ino) from \(from)")
                }
            case .regular:
                let owner = Int(m.entries[i].owner)
                let size = m.entries[owner].size
                var probes: [(UInt64, Int)] = [(0, 4096), (size, 10), (size &+ 1, 10), (.max, 10), (.max - 5, 1 << 20), (0, 0)]
                for _ in 0..<2 where size > 0 {
                    let off = UInt64.random(in: 0..<size, using: &rng)
                    probes.append((off, Int.random(in: 1...(64 << 10), using: &rng)))
                }
                for (off, len) in probes {
                    guard let got = try? read(fs, ino, off, len) else { continue }
                    let end = off >= size ? off : min(size, off + UInt64(len))
                    let ref = off >= size ? [] : expected(m, owner, from: off, to: end)
                    if ref.contains(where: { $0 == nil }) {
                        XCTFail("\(what): read \(ino) at \(off)+\(len) gave bytes from a chunk whose record is false")
                    } else {
                        XCTAssertEqual(got, ref.map { $0! }, "\(what): read \(ino) at \(off)+\(len)")
                        if !got.isEmpty { good += 1 }
                    }
                }
            case .symlink:
                break
            }
        }
        return good
    }

    func testUnmutatedManifestReadsTheSource() throws {
        var rng = SeededRandom(seed: 1)
        let good = exercise(mounted.manifest, cache: mounted.cache, rng: &rng, what: "unmutated")
        XCTAssertGreaterThan(good, 20)
    }

    func testReaddirAtHugeOffsetsEndsWithoutTrapping() throws {
        let fs = mounted.fs
        for from in [Int.max, Int.max - 1, Int.max - 2, Int.max / 2 + 7, Int.min, -5] {
            var names: [[UInt8]] = []
            try fs.readdir(1, from: from) { name, _, _, _ in names.append(Array(name)); return true }
            if from >= 0 { XCTAssertEqual(names, [], "from \(from)") } else { XCTAssertEqual(names.first, [0x2e], "negative offsets start over") }
        }
    }

    /// Field-level changes (spans, sizes, owners, ranges, names, chunk records) that the decoder
    /// lets through, and raw byte changes of the body.
    func testMutatedManifestsThatDecodeNeverTrapOrLie() throws {
        let base = mounted.manifest
        var rng = SeededRandom(seed: 2024)
        var decoded = 0, reads = 0
        for iteration in 0..<300 {
            var m = base
            for _ in 0...Int.random(in: 0..<3, using: &rng) {
                let e = Int.random(in: 0..<m.entries.count, using: &rng)
                let s = Int.random(in: 0..<m.spans.count, using: &rng)
                let c = Int.random(in: 0..<m.chunks.count, using: &rng)
                let small = UInt32.random(in: 0...4, using: &rng)
                let any: UInt32 = [0, 1, small, .max, .max - 1, UInt32.random(in: 0...UInt32.max, using: &rng)][Int.random(in: 0..<6, using: &rng)]
                switch Int.random(in: 0..<14, using: &rng) {
                case 0: m.entries[e].first = Bool.random(using: &rng) ? m.entries[e].first &+ small : any
                case 1: m.entries[e].count = Bool.random(using: &rng) ? m.entries[e].count &- small : any
                case 2: m.entries[e].size = Bool.random(using: &rng) ? m.entries[e].size &+ UInt64(small) : UInt64(any)
                case 3: m.entries[e].owner = Bool.random(using: &rng) ? UInt32(Int.random(in: 0..<m.entries.count, using: &rng)) : any
                case 4: m.entries[e].parent = any
                case 5: m.entries[e].nameLength = UInt16(truncatingIfNeeded: any)
                case 6: m.spans[s].chunk = Bool.random(using: &rng) ? UInt32(Int.random(in: 0..<m.chunks.count, using: &rng)) : any
                case 7: m.spans[s].offset = Bool.random(using: &rng) ? m.spans[s].offset &+ small : any
                case 8: m.spans[s].length = Bool.random(using: &rng) ? m.spans[s].length &- small : any
                case 9: m.chunks[c].rawSize = Bool.random(using: &rng) ? m.chunks[c].rawSize &+ small : any
                case 10:
                    // Another chunk's id in this record: the store's bytes then do not match it.
                    m.chunks[c].id = m.chunks[Int.random(in: 0..<m.chunks.count, using: &rng)].id
                case 11:
                    // Two files sharing one span range.
                    let files = m.entries.indices.filter { m.entries[$0].kind == .regular && m.entries[$0].owner == UInt32($0) && m.entries[$0].count > 0 }
                    let a = files[Int.random(in: 0..<files.count, using: &rng)], b = files[Int.random(in: 0..<files.count, using: &rng)]
                    m.entries[a].first = m.entries[b].first
                    m.entries[a].count = m.entries[b].count
                    m.entries[a].size = m.entries[b].size
                case 12: m.entries[e].kind = [.regular, .directory, .symlink][Int.random(in: 0..<3, using: &rng)]
                default:
                    if !m.names.isEmpty { m.names[Int.random(in: 0..<m.names.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
                }
            }
            let decodedManifest: Manifest
            do {
                decodedManifest = try Manifest.decode(try m.encode(level: 1))
            } catch is FormatError {
                continue
            }
            decoded += 1
            reads += exercise(decodedManifest, cache: mounted.cache, rng: &rng, what: "iteration \(iteration)")
        }
        print("fuzz: \(decoded) of 300 mutated manifests decoded; \(reads) reads compared with the real chunks")
        XCTAssertGreaterThan(decoded, 10, "too few mutations got through to exercise the file system")
        XCTAssertGreaterThan(reads, 100)
    }
}
