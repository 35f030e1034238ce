import XCTest
import EnvFormat

final class ManifestTests: XCTestCase {
    func assertSameFields(_ a: Manifest, _ b: Manifest, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.chunking, b.chunking, file: file, line: line)
        XCTAssertEqual(a.sourcePath, b.sourcePath, file: file, line: line)
        XCTAssertEqual(a.metadata.map(\.key), b.metadata.map(\.key), file: file, line: line)
        XCTAssertEqual(a.metadata.map(\.value), b.metadata.map(\.value), file: file, line: line)
        XCTAssertEqual(a.chunks, b.chunks, file: file, line: line)
        XCTAssertEqual(a.entries, b.entries, file: file, line: line)
        XCTAssertEqual(a.names, b.names, file: file, line: line)
        XCTAssertEqual(a.spans, b.spans, file: file, line: line)
    }

    func testEncodeDecodeRoundTrip() throws {
        let m = try SampleTree.manifest()
        let object = try m.encode()
        XCTAssertEqual(Array(object.prefix(8)), Array("ENVMNFST".utf8))
        let d = try Manifest.decode(object)
        assertSameFields(m, d)
        // Encoding is deterministic, so the manifest's id is stable across publishes.
        XCTAssertEqual(try d.encode(), object)
        XCTAssertEqual(m.entries.count, SampleTree.paths.count + 2)   // + root + the high-byte name
    }

    func testEveryPathResolvesWithItsKind() throws {
        let m = try Manifest.decode(try SampleTree.manifest().encode())
        XCTAssertEqual(m.resolve([]), 0)
        XCTAssertEqual(m.resolve(Array("/".utf8)), 0)
        for (path, kind) in SampleTree.paths {
            guard let i = m.resolve(Array(path.utf8)) else { XCTFail("\(path) does not resolve"); continue }
            XCTAssertEqual(m.entries[i].kind, kind, path)
            XCTAssertEqual(m.path(i), Array(path.utf8), "path() of \(path)")
            XCTAssertEqual(m.resolve(Array("/\(path)/".utf8)), i, "extra slashes are ignored")
        }
        let high = m.resolve(Array("lib/".utf8) + SampleTree.highBytes)
        XCTAssertNotNil(high)
        XCTAssertEqual(high.map { m.path($0) }, Array("lib/".utf8) + SampleTree.highBytes)
        for missing in ["nope", "lib/nope", "empty/x", "empty.txt/x", "lib/python3.11/site-packages/a.py/b", "LIB", "li", "libx"] {
            XCTAssertNil(m.resolve(Array(missing.utf8)), missing)
        }
        XCTAssertEqual(m.path(0), [])
    }

    func testChildrenAreSortedAndLookupFindsEachOne() throws {
        let m = try Manifest.decode(try SampleTree.manifest().encode())
        var seen = Set<Int>([0])
        for i in m.entries.indices where m.entries[i].kind == .directory {
            let kids = m.children(i)
            for c in kids {
                XCTAssertEqual(Int(m.entries[c].parent), i)
                XCTAssertTrue(seen.insert(c).inserted, "entry \(c) listed twice")
                XCTAssertEqual(m.lookup(i, m.name(c)), c)
                if c > kids.lowerBound { XCTAssertLessThan(compareBytes(m.name(c - 1), m.name(c)), 0) }
                var longer = Array(m.name(c)); longer.append(0x41)
                XCTAssertNil(m.lookup(i, longer))
                XCTAssertNil(m.lookup(i, m.name(c).dropLast()))
            }
            XCTAssertNil(m.lookup(i, []))
            XCTAssertNil(m.lookup(i, Array("zzzz".utf8)))
            XCTAssertNil(m.lookup(i, Array("\u{1}".utf8)))
        }
        XCTAssertEqual(seen.count, m.entries.count, "every entry is some directory's child")
        XCTAssertEqual(m.children(m.resolve(Array("empty".utf8))!).count, 0)
        let file = m.resolve(Array("xy".utf8))!
        XCTAssertEqual(m.children(file).count, 0)
        XCTAssertNil(m.lookup(file, Array("xy".utf8)), "lookup in a file finds nothing")
        // Byte order: uppercase before lowercase, 0x80+ after ASCII.
        XCTAssertEqual(m.children(0).map { String(decoding: m.name($0), as: UTF8.self) },
                       ["Z upper", "bin", "empty", "empty.txt", "hard", "lib", "python-abs", "xy"])
        XCTAssertEqual(Array(m.name(m.children(m.resolve(Array("lib".utf8))!).last!)), SampleTree.highBytes)
    }

    func testFilesSpansHardlinksAndSymlinks() throws {
        let m = try Manifest.decode(try SampleTree.manifest().encode())
        let a = m.resolve(Array("lib/python3.11/site-packages/a.py".utf8))!
        let hard = m.resolve(Array("hard".utf8))!
        XCTAssertEqual(m.entries[hard].owner, UInt32(a))
        XCTAssertEqual(m.entries[a].owner, UInt32(a))
        XCTAssertEqual(m.fileSpans(hard), m.fileSpans(a))
        XCTAssertEqual(m.fileSpans(a).map { m.spans[$0] }, [.init(chunk: 0, offset: 0, length: 100), .init(chunk: 1, offset: 0, length: 50)])
        XCTAssertEqual(m.linkCounts()[UInt32(a)], 2)
        XCTAssertEqual(m.linkCounts().count, 1)
        let sparse = m.resolve(Array("lib/python3.11/site-packages/sparse.bin".utf8))!
        XCTAssertEqual(m.fileSpans(sparse).map { m.spans[$0].chunk }, [1, Manifest.Span.zeros, 2])
        XCTAssertEqual(m.entries[sparse].mode, 0o600)
        XCTAssertEqual(m.entries[m.resolve(Array("empty.txt".utf8))!].size, 0)
        XCTAssertEqual(m.fileSpans(m.resolve(Array("empty.txt".utf8))!).count, 0)
        XCTAssertEqual(m.symlinkTarget(m.resolve(Array("python-abs".utf8))!), Array("/usr/bin/python3".utf8))
        XCTAssertEqual(m.symlinkTarget(m.resolve(Array("lib/python3.11/site-packages/up".utf8))!), Array("../..".utf8))
        XCTAssertEqual(m.entries[m.resolve(Array("lib/python3.11".utf8))!].mode, 0o700)
        // Hardlinked bytes are counted once.
        let expected: UInt64 = 150 + 10 + (1 << 20) + 20 + 5 + 1 + 3
        XCTAssertEqual(m.totalFileBytes, expected)
    }

    func testBuilderRefusesBadTrees() {
        func build(_ edit: (inout ManifestBuilder) -> Void) throws {
            var b = SampleTree.builder()
            edit(&b)
            _ = try b.build(chunking: SampleTree.chunking, sourcePath: [], metadata: [], chunks: SampleTree.chunks)
        }
        func node(_ name: [UInt8]) -> ManifestBuilder.Node {
            ManifestBuilder.Node(parent: 0, name: name, kind: .directory, mode: 0o755, uid: 0, gid: 0, mtimeNs: 0, size: 0)
        }
        for bad: [UInt8] in [Array("..".utf8), Array(".".utf8), Array("a/b".utf8), [0x61, 0], Array("lib".utf8),
                              [UInt8](repeating: 0x61, count: 256)] {
            XCTAssertThrowsError(try build { $0.add(node(bad)) }, "name \(bad.prefix(8))") { XCTAssertTrue($0 is FormatError) }
        }
        XCTAssertNoThrow(try build { $0.add(node([UInt8](repeating: 0x61, count: 255))) })
    }
}
