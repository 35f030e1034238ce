import TestSupport
import XCTest
import SysKit
import EnvFormat

/// Manifests come from a store the mount does not control: every malformed one must be refused
/// with a FormatError, and none may crash the process.
final class ManifestHostileTests: XCTestCase {
    var valid: Manifest!
    var object: [UInt8] = []

    override func setUpWithError() throws {
        valid = try SampleTree.manifest()
        object = try valid.encode()
    }

    func index(_ path: String) -> Int { valid.resolve(Array(path.utf8))! }

    /// `valid` changed by `edit`, encoded (encode does not validate), must be refused with a
    /// message containing `why` (any message when `why` is empty).
    func assertEditRejected(_ why: String, file: StaticString = #filePath, line: UInt = #line,
                            _ edit: (inout Manifest) -> Void) throws {
        var m = valid!
        edit(&m)
        let bytes = try m.encode()
        do {
            _ = try Manifest.decode(bytes)
            XCTFail("accepted: expected '\(why)'", file: file, line: line)
        } catch let e as FormatError {
            XCTAssertTrue(why.isEmpty || e.description.contains(why), "refused for '\(e)', expected '\(why)'", file: file, line: line)
        }
    }

    func testHeaderChecks() throws {
        var bad = object
        bad[0] = UInt8(ascii: "X")
        assertRejected(bad, "bad magic")
        for version: UInt32 in [0, 3, 0x0100_0000, .max] {
            var v = object
            v.replaceSubrange(8..<12, with: le(version))
            assertRejected(v, "version \(version)")
        }
        let body = try ManifestObject.body(of: object)
        for size in [UInt64(body.count) - 1, UInt64(body.count) + 1, 0, UInt64(Manifest.maxBodySize) + 1, .max] {
            assertRejected(try ManifestObject.wrap(body, bodySize: size), "body size \(size)")
        }
        assertRejected(object + [0], "trailing byte after the frame")
        assertRejected(Array(object.prefix(24)) + randomBytes(200, seed: 5), "body not zstd")
        assertRejected([], "empty")
    }

    func testEveryTruncationIsRejected() throws {
        for n in 0..<object.count {
            assertRejected(Array(object.prefix(n)), "object truncated to \(n)")
        }
        let body = try ManifestObject.body(of: object)
        for n in 0..<body.count {
            assertRejected(try ManifestObject.wrap(Array(body.prefix(n))), "body truncated to \(n)")
        }
        assertRejected(try ManifestObject.wrap(body + [0]), "one byte after the spans")
    }

    func testHugeCountsAreRejectedWithoutAllocating() throws {
        let body = try ManifestObject.body(of: object)
        let o = ManifestObject.offsets(valid)
        // The offsets are right: the valid counts sit there.
        XCTAssertEqual(Array(body[o.chunkCount..<o.chunkCount + 8]), le(UInt64(valid.chunks.count)))
        XCTAssertEqual(Array(body[o.entryCount..<o.entryCount + 8]), le(UInt64(valid.entries.count)))
        XCTAssertEqual(Array(body[o.spanCount..<o.spanCount + 8]), le(UInt64(valid.spans.count)))
        for (what, at) in [("metadata", o.metadataCount), ("chunks", o.chunkCount), ("entries", o.entryCount), ("spans", o.spanCount)] {
            for count: UInt64 in [1 << 32, 1 << 60, (1 << 63) - 1, 1 << 63, .max - 1, .max] {
                var b = body
                b.replaceSubrange(at..<at + 8, with: le(count))
                assertRejected(try ManifestObject.wrap(b), "\(what) count \(count)")
            }
        }
        var b = body
        b.replaceSubrange(o.names..<o.names + 4, with: le(UInt32.max))
        assertRejected(try ManifestObject.wrap(b), "names blob length 2^32-1")
        b = body
        b.replaceSubrange(o.entryCount..<o.entryCount + 8, with: le(UInt64(0)))
        assertRejected(try ManifestObject.wrap(b), "no root entry")
    }

    func testBadNames() throws {
        let xy = index("xy")
        let start = Int(valid.entries[xy].nameStart)
        for (bad, why) in [(Array("..".utf8), "'.' or '..'"), (Array("x/".utf8), "NUL or '/'"), ([0x78, 0], "NUL or '/'")] {
            try assertEditRejected(why) { $0.names.replaceSubrange(start..<start + 2, with: bad) }
        }
        try assertEditRejected("'.' or '..'") { $0.entries[xy].nameLength = 1; $0.names[start] = 0x2e }
        try assertEditRejected("name out of range") { $0.entries[xy].nameLength = 0 }
        // 256 bytes (Linux's NAME_MAX is 255); "zzz…" still sorts after every other root child.
        try assertEditRejected("longer than 255") {
            $0.entries[xy].nameStart = UInt32($0.names.count)
            $0.entries[xy].nameLength = 256
            $0.names += [UInt8](repeating: UInt8(ascii: "z"), count: 256)
        }
        try assertEditRejected("name out of range") { $0.entries[xy].nameStart = UInt32($0.names.count) - 1 }
        try assertEditRejected("name out of range") { $0.entries[xy].nameStart = .max }
        // "xy" is the root's last child: renaming it to "a" breaks the order.
        try assertEditRejected("not sorted or repeated") { $0.names.replaceSubrange(start..<start + 2, with: Array("ab".utf8)) }
        try assertEditRejected("not sorted or repeated") { $0.names.replaceSubrange(start..<start + 2, with: Array("ha".utf8)); $0.entries[xy].nameLength = 1 }
    }

    func testBadSpans() throws {
        let a = index("lib/python3.11/site-packages/a.py")
        let sparse = index("lib/python3.11/site-packages/sparse.bin")
        let first = Int(valid.entries[a].first)
        try assertEditRejected("passes the end of its chunk") { $0.spans[first].offset = 101 }
        try assertEditRejected("passes the end of its chunk") { $0.spans[first].offset = .max }
        try assertEditRejected("span names chunk") { $0.spans[first].chunk = UInt32($0.chunks.count) }
        try assertEditRejected("span names chunk") { $0.spans[first].chunk = Manifest.Span.zeros - 1 }
        try assertEditRejected("spans add up to") { $0.entries[sparse].size += 1 }
        try assertEditRejected("spans add up to") { $0.entries[sparse].count -= 1 }
        try assertEditRejected("spans out of range") { $0.entries[sparse].first = UInt32($0.spans.count) }
        try assertEditRejected("spans out of range") { $0.entries[sparse].first = .max; $0.entries[sparse].count = .max }
        try assertEditRejected("empty span") {
            $0.spans.insert(.init(chunk: 0, offset: 0, length: 0), at: first + 1)
            for k in $0.entries.indices where $0.entries[k].kind == .regular && Int($0.entries[k].first) > first {
                $0.entries[k].first += 1
            }
            $0.entries[a].count += 1
        }
        // Two files naming one span range (hardlinks share through `owner`, never through spans).
        try assertEditRejected("shared or out of order") {
            $0.entries[sparse].first = $0.entries[a].first
            $0.entries[sparse].count = $0.entries[a].count
            $0.entries[sparse].size = $0.entries[a].size
        }
        // The same range named twice by moving the later file's start back onto the earlier one.
        try assertEditRejected("shared or out of order") { $0.entries[sparse].first = $0.entries[a].first }
        // A span no file uses.
        try assertEditRejected("spans no file uses") { $0.spans.append(.init(chunk: 0, offset: 0, length: 1)) }
        try assertEditRejected("differs in size") { $0.entries[a].size += 1 }
        try assertEditRejected("invalid size") { $0.chunks[0].rawSize = 0 }
        try assertEditRejected("invalid size") { $0.chunks[0].rawSize = UInt32($0.chunking.maxSize) + 1 }
        try assertEditRejected("invalid chunking") { $0.chunking.avgSize = 100 }
    }

    func testBadStructure() throws {
        let hard = index("hard")
        let lib = index("lib")
        let link = index("python-abs")
        try assertEditRejected("child range") { $0.entries[0].count += 100 }
        try assertEditRejected("child range") { $0.entries[0].first = 2 }
        try assertEditRejected("not in its parent's child range") { $0.entries[hard].parent = UInt32(lib) }
        try assertEditRejected("not in its parent's child range") { $0.entries[lib].parent = .max }
        try assertEditRejected("root") { $0.entries[0].parent = 1 }
        try assertEditRejected("root") { $0.entries[0].kind = .regular }
        try assertEditRejected("hardlink owner invalid") { $0.entries[hard].owner = UInt32(lib) }
        try assertEditRejected("hardlink owner invalid") { $0.entries[hard].owner = UInt32($0.entries.count) }
        try assertEditRejected("hardlink owner invalid") { $0.entries[hard].owner = .max }
        try assertEditRejected("hardlink owner is itself a link") {
            $0.entries[index("lib/python3.11/site-packages/a.py")].owner = UInt32(hard)
        }
        // Only regular files may name another entry as owner: fileSpans() and the file system's
        // read path index entries with it for any entry.
        try assertEditRejected("owner") { $0.entries[lib].owner = .max }
        try assertEditRejected("owner") { $0.entries[link].owner = .max }
        try assertEditRejected("owner") { $0.entries[link].owner = UInt32(hard) }
        try assertEditRejected("symlink target") { $0.entries[link].count = 0 }
        try assertEditRejected("symlink target") { $0.entries[link].first = .max }
        try assertEditRejected("symlink target contains NUL") { $0.names[Int($0.entries[link].first)] = 0 }
    }

    /// A new entry named like the first child of the root ("Z upper"), built from an existing one
    /// (Entry has no public initializer).
    func extraEntry(_ m: Manifest, kind: Manifest.Kind, parent: UInt32, first: UInt32 = 0, count: UInt32 = 0) -> Manifest.Entry {
        var e = m.entries[Int(m.entries[0].first)]
        e.kind = kind
        e.parent = parent
        e.size = 0
        e.first = first
        e.count = count
        e.owner = UInt32(m.entries.count)
        return e
    }

    func testUnreachableEntriesAreRejected() throws {
        // An extra empty file after the tree that no directory lists.
        try assertEditRejected("") { $0.entries.append(extraEntry($0, kind: .regular, parent: 0)) }
        try assertEditRejected("") { $0.entries.append(extraEntry($0, kind: .regular, parent: .max)) }
        try assertEditRejected("") { $0.entries.append(extraEntry($0, kind: .directory, parent: 0)) }
        // A directory no one lists that claims itself as its only child, with the parent index
        // that validate() uses for "no parent yet" (0xffffffff). Nothing reaches it from the root.
        try assertEditRejected("") {
            let n = UInt32($0.entries.count)
            $0.entries.append(extraEntry($0, kind: .directory, parent: .max, first: n, count: 1))
        }
    }

    /// Random byte changes in the body: decode either refuses with FormatError or returns a
    /// manifest that validates and whose every entry resolves by its own path.
    func testRandomMutationsNeverCrash() throws {
        let body = try ManifestObject.body(of: object)
        var rng = SeededRandom(seed: 99)
        var accepted = 0
        for iteration in 0..<2000 {
            var b = body
            for _ in 0...Int.random(in: 0..<4, using: &rng) {
                let at = Int.random(in: 0..<b.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: b[at] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
                case 1: b[at] = 0xff
                case 2: b[at] = 0
                default: b[at] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            do {
                let m = try Manifest.decode(try ManifestObject.wrap(b))
                accepted += 1
                XCTAssertNoThrow(try m.validate(), "iteration \(iteration)")
                for i in m.entries.indices {
                    XCTAssertEqual(m.resolve(m.path(i)), i, "iteration \(iteration): entry \(i) resolves by its path")
                    _ = m.fileSpans(i)
                }
            } catch is FormatError {
            } catch {
                XCTFail("iteration \(iteration): \(type(of: error)) \(error)")
            }
        }
        XCTAssertGreaterThan(accepted, 0, "some mutations (mode, mtime, ids) are harmless")
        XCTAssertLessThan(accepted, 2000)
    }

    /// The same for the compressed object: damage to the frame is refused.
    func testRandomMutationsOfTheCompressedObject() {
        var rng = SeededRandom(seed: 100)
        for iteration in 0..<500 {
            var o = object
            let at = Int.random(in: 0..<o.count, using: &rng)
            o[at] ^= UInt8.random(in: 1...255, using: &rng)
            do {
                let m = try Manifest.decode(o)
                XCTAssertNoThrow(try m.validate())
            } catch is FormatError {
            } catch {
                XCTFail("iteration \(iteration): \(type(of: error)) \(error)")
            }
        }
    }
}
