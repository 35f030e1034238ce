import TestSupport
import XCTest
import SysKit
import EnvFormat
import Glibc

/// Manifest format 2: relocation records round-trip, format 1 still decodes, and hostile
/// records are refused with a FormatError before a mount could act on them.
final class RelocationFormatTests: XCTestCase {
    var valid: Manifest!

    // Node indexes in SampleTree.builder().
    static let aPy = 5, sparse = 6, pythonAbs = 8, up = 9, hard = 10, upper = 12, xy = 15

    static func relocation() -> Relocation {
        Relocation(
            prefixes: [.init(from: Array("/opt/venvs/ml".utf8), to: []),
                       .init(from: Array("/usr/bin".utf8), to: Array(".envmount-python/bin".utf8))],
            files: [.init(entry: UInt32(aPy), kind: .text, shebangStart: 2, shebangInterpreterEnd: 30, shebangLineEnd: 31,
                          occurrences: [.init(offset: 2, prefix: 0), .init(offset: 60, prefix: 0), .init(offset: 100, prefix: 1)]),
                    .init(entry: UInt32(sparse), kind: .binary,
                          occurrences: [.init(offset: 0, prefix: 0, stringEnd: 13), .init(offset: 10 + (1 << 20), prefix: 1, stringEnd: 0)])],
            symlinks: [.init(entry: UInt32(pythonAbs), prefix: 1)],
            patches: [.init(entry: UInt32(upper), offset: 0, bytes: [0x41]),
                      .init(entry: UInt32(sparse), offset: 20, bytes: Array("$ORIGIN".utf8))])
    }

    override func setUpWithError() throws {
        valid = try SampleTree.builder().build(chunking: SampleTree.chunking, sourcePath: Array("/opt/venvs/ml".utf8),
                                               metadata: [("python.version", "3.11.2")], chunks: SampleTree.chunks,
                                               relocation: Self.relocation())
    }

    func index(_ path: String) -> UInt32 { UInt32(valid.resolve(Array(path.utf8))!) }

    func testRelocationRecordsRoundTripWithEntriesRenumbered() throws {
        let object = try valid.encode()
        XCTAssertEqual(Array(object[8..<12]), le(UInt32(2)), "format version 2 is written")
        let d = try Manifest.decode(object)
        XCTAssertEqual(d.relocation, valid.relocation)
        XCTAssertEqual(d.relocation.files.map(\.entry).sorted(),
                       [index("lib/python3.11/site-packages/a.py"), index("lib/python3.11/site-packages/sparse.bin")].sorted())
        XCTAssertEqual(d.relocation.symlinks.map(\.entry), [index("python-abs")])
        XCTAssertEqual(Set(d.relocation.patches.map(\.entry)), [index("Z upper"), index("lib/python3.11/site-packages/sparse.bin")])
        XCTAssertEqual(d.relocation.files.first { $0.entry == index("lib/python3.11/site-packages/a.py") }?.occurrences.count, 3)
    }

    func testFormat1ManifestsStillDecode() throws {
        var plain = valid!
        plain.relocation = Relocation()
        let body = try ManifestObject.body(of: try plain.encode())
        // Format 1 ends after the spans: drop the empty relocation section (u32 + 3 × u64).
        let v1 = Array(body.dropLast(4 + 24))
        let d = try Manifest.decode(try ManifestObject.wrap(v1, version: 1))
        XCTAssertEqual(d.entries, valid.entries)
        XCTAssertTrue(d.relocation.isEmpty)
        // The same bytes claimed as format 2 lack the section.
        assertRejected(try ManifestObject.wrap(v1, version: 2), "format 2 without its relocation section")
    }

    func assertEditRejected(_ why: String, file: StaticString = #filePath, line: UInt = #line, _ edit: (inout Relocation) -> Void) throws {
        var m = valid!
        edit(&m.relocation)
        do {
            _ = try Manifest.decode(try m.encode())
            XCTFail("accepted: expected '\(why)'", file: file, line: line)
        } catch let e as FormatError {
            XCTAssertTrue(e.description.contains(why), "refused for '\(e)', expected '\(why)'", file: file, line: line)
        }
    }

    func testHostileRecordsAreRefused() throws {
        let a = index("lib/python3.11/site-packages/a.py")
        let fa = valid.relocation.files.firstIndex { $0.entry == a }!
        let fs = 1 - fa
        try assertEditRejected("passes the end") { $0.files[fa].occurrences[2].offset = 149 }
        try assertEditRejected("overlaps another") { $0.files[fa].occurrences[1].offset = 5 }
        try assertEditRejected("names prefix 7") { $0.files[fa].occurrences[0].prefix = 7 }
        try assertEditRejected("names entry 999") { $0.files[fa].entry = 999 }
        try assertEditRejected("not a regular file") { $0.files[fa].entry = self.index("lib") }
        try assertEditRejected("not a regular file") { $0.files[fa].entry = self.index("hard") }
        try assertEditRejected("no occurrences") { $0.files[fa].occurrences = [] }
        try assertEditRejected("not sorted") { $0.files.reverse() }
        try assertEditRejected("not sorted") { $0.files.append($0.files[0]) }
        try assertEditRejected("string end") { $0.files[fa].occurrences[0].stringEnd = 20 }
        try assertEditRejected("bad string end") { $0.files[fs].occurrences[0].stringEnd = 5 }
        try assertEditRejected("bad string end") { $0.files[fs].occurrences[1].stringEnd = UInt64(1 << 21) }
        try assertEditRejected("bad shebang") { $0.files[fa].shebangLineEnd = 200 }
        try assertEditRejected("bad shebang") { $0.files[fa].shebangStart = 0 }
        try assertEditRejected("bad shebang") { $0.files[fs].shebangStart = 2; $0.files[fs].shebangInterpreterEnd = 3; $0.files[fs].shebangLineEnd = 4 }
        try assertEditRejected("does not start with its prefix") { $0.symlinks[0].prefix = 0 }
        try assertEditRejected("does not start with its prefix") { $0.symlinks[0].entry = self.index("lib/python3.11/site-packages/up") }
        try assertEditRejected("is not a symlink") { $0.symlinks[0].entry = a }
        try assertEditRejected("passes the end") { $0.patches[0].offset = 1 }
        try assertEditRejected("empty patch") { $0.patches[0].bytes = [] }
        try assertEditRejected("patch in text file") { $0.patches[0].entry = a }
        try assertEditRejected("overlaps an occurrence") { p in
            let k = p.patches.firstIndex { $0.entry != self.index("Z upper") }!
            p.patches[k].offset = 5
        }
        try assertEditRejected("not an absolute path") { $0.prefixes[0].from = Array("opt/venvs/ml".utf8) }
        try assertEditRejected("bad place in the tree") { $0.prefixes[1].to = Array("../../etc".utf8) }
        try assertEditRejected("bad place in the tree") { $0.prefixes[1].to = Array("/etc".utf8) }
        try assertEditRejected("prefixes") { $0.prefixes += Array(repeating: $0.prefixes[0], count: 8) }
    }

    func testHugeCountsInTheRelocationSectionAreRefused() throws {
        let object = try valid.encode()
        let body = try ManifestObject.body(of: object)
        let o = ManifestObject.offsets(valid)
        let section = o.spanCount + 8 + 12 * valid.spans.count
        var prefixesEnd = section + 4
        for p in valid.relocation.prefixes { prefixesEnd += 8 + p.from.count + p.to.count }
        for (at, width) in [(section, 4), (prefixesEnd, 8)] {
            for v: UInt64 in [UInt64(UInt32.max), 1 << 40, .max] {
                var b = body
                b.replaceSubrange(at..<at + width, with: le(v).prefix(width))
                assertRejected(try ManifestObject.wrap(b), "count \(v) at \(at)")
            }
        }
        for n in 0..<(body.count - section) {
            assertRejected(try ManifestObject.wrap(Array(body.prefix(section + n))), "relocation section truncated to \(n)")
        }
    }

    /// Random changes in the relocation section: refused with FormatError, or accepted with
    /// records that still lie inside their files.
    func testRandomMutationsOfRelocationRecords() throws {
        let body = try ManifestObject.body(of: try valid.encode())
        let section = ManifestObject.offsets(valid).spanCount + 8 + 12 * valid.spans.count
        var rng = SeededRandom(seed: 8)
        var accepted = 0
        for iteration in 0..<1500 {
            var b = body
            for _ in 0...Int.random(in: 0..<3, using: &rng) {
                let at = Int.random(in: section..<b.count, using: &rng)
                b[at] = Int.random(in: 0..<2, using: &rng) == 0 ? UInt8.random(in: 0...255, using: &rng) : b[at] ^ 1
            }
            do {
                let m = try Manifest.decode(try ManifestObject.wrap(b))
                accepted += 1
                for f in m.relocation.files {
                    for o in f.occurrences {
                        XCTAssertLessThanOrEqual(o.offset + UInt64(m.relocation.prefixes[Int(o.prefix)].from.count),
                                                 m.entries[Int(f.entry)].size, "iteration \(iteration)")
                    }
                }
                for p in m.relocation.patches {
                    XCTAssertLessThanOrEqual(p.offset + UInt64(p.bytes.count), m.entries[Int(p.entry)].size, "iteration \(iteration)")
                }
            } catch is FormatError {
            } catch {
                XCTFail("iteration \(iteration): \(error)")
            }
        }
        XCTAssertLessThan(accepted, 1500)
    }

    func testElfParserReadsRunPathMachineAndGlibcOfARealBinary() throws {
        // The test binary itself: an ELF of this machine's architecture that needs glibc.
        let exe = try FS.readlink("/proc/self/exe".pathBytes)
        let fd = try FileDescriptor.open(exe, O_RDONLY)
        defer { fd.close() }
        let size = try FS.stat(exe).size
        let info = try ElfInfo.parse(size: size) { off, n in try fd.read(count: n, offset: off) }
        XCTAssertEqual(info.machineName, SystemInfo.machine())
        XCTAssertNotNil(info.glibc)
        for rp in info.runPaths {
            XCTAssertEqual(try fd.read(count: rp.value.count, offset: rp.offset), rp.value, "RUNPATH offset points at its string")
        }
        XCTAssertThrowsError(try ElfInfo.parse(size: 100) { _, n in [UInt8](repeating: 0, count: n) })
        // A truncated header or section table is refused, not read past.
        let head = try fd.read(count: 64, offset: 0)
        XCTAssertThrowsError(try ElfInfo.parse(size: 64) { off, n in Array(head[Int(off)..<min(64, Int(off) + n)]) })
    }
}
