import TestSupport
import XCTest
import Foundation
import Glibc
import SysKit
import EnvFormat
import EnvStore
import EnvCache
import EnvFetch
import EnvFS
import EnvPublish

/// Publish finds where files name the source path; a filesystem presented at another path
/// shows them rewritten (sizes match bytes), keeps every other byte, and says what it cannot do.
final class RelocationTests: XCTestCase {
    var source: TempDir!
    var mounted: Mounted!
    var src: [UInt8] { source.bytes }

    static let bigSize = 5 << 20
    static let seamAt = (4 << 20) - 5        // straddles the publisher's 4 MiB read blocks

    override func setUpWithError() throws {
        source = try TempDir("reloc")
        let s = source.path
        func w(_ rel: String, _ bytes: [UInt8], mode: UInt32 = 0o644) throws { try Disk.write((s + "/" + rel).pathBytes, bytes, mode: mode) }
        try Disk.mkdir((s + "/bin").pathBytes)
        try Disk.mkdir((s + "/lib").pathBytes)
        try w("bin/tool", Array("#!\(s)/bin/python3 -E\nimport sys\nprint('\(s)/lib')\n".utf8), mode: 0o755)
        try w("bin/sh-tool", Array("#!\(s)/bin/bash\necho hi\n".utf8), mode: 0o755)
        try w("conf.txt", Array("home = \(s)/bin\nnot-ours = \(s)2/x \(s)-old \(s).bak\nend = \(s)\n".utf8))
        try FS.link((s + "/conf.txt").pathBytes, (s + "/conf-hard.txt").pathBytes)
        var bin = randomBytes(3000, seed: 1) + [0] + Array("\(s)/lib:\(s)/lib64".utf8) + [0] + randomBytes(500, seed: 2)
        bin += [0] + Array("prefix=\(s)".utf8) + [0] + randomBytes(100, seed: 3)
        bin = bin.map { $0 == UInt8(ascii: "/") ? 0x2f : $0 }
        try w("lib/native.so", bin)
        var big = [UInt8](repeating: UInt8(ascii: "x"), count: Self.bigSize)
        big.replaceSubrange(Self.seamAt..<Self.seamAt + s.utf8.count + 1, with: Array((s + "/").utf8))
        big.replaceSubrange(100..<100 + s.utf8.count + 1, with: Array((s + " ").utf8))
        try w("big.txt", big)
        try w("lib/cached.pyc", [0x42, 0x0d, 0x0d, 0x0a, 0] + Array("\(s)/lib/mod.py".utf8) + [0])
        try w("plain.txt", Array("no path here\n".utf8))
        try w("random.bin", randomBytes(200_000, seed: 9))
        try w("lib/ext.so", Self.elf(runpath: "\(s)/lib:$ORIGIN/x:/usr/lib"))
        try FS.symlink(target: (s + "/bin/tool").pathBytes, at: (s + "/bin/link-in").pathBytes)
        try FS.symlink(target: s.pathBytes, at: (s + "/link-root").pathBytes)
        try FS.symlink(target: Array("/usr/bin/env".utf8), at: (s + "/bin/link-out").pathBytes)
        try FS.symlink(target: (s + "2/other").pathBytes, at: (s + "/bin/link-sibling").pathBytes)
        mounted = try Mounted(source: s)
    }

    override func tearDown() {
        mounted = nil
        source.remove()
    }

    /// A filesystem over the same manifest and cache, presented at `mountpoint`.
    func presented(at mountpoint: String, manifest: Manifest? = nil) -> (EnvFilesystem, RelocatedFiles?) {
        let m = manifest ?? mounted.manifest
        let r = RelocatedFiles.make(manifest: m, mountpoint: mountpoint.pathBytes)
        let fs = EnvFilesystem(manifest: m, fetcher: ChunkFetcher(store: mounted.store, cache: mounted.cache, manifest: m), relocated: r)
        return (fs, r)
    }

    func bytes(_ fs: EnvFilesystem, _ path: String) throws -> [UInt8] {
        var ino: UInt64 = 1
        for c in path.split(separator: "/") { ino = try fs.lookup(parent: ino, name: Array(c.utf8)).ino }
        var out: [UInt8] = []
        while true {
            let b: [UInt8]
            switch try fs.read(ino, offset: UInt64(out.count), size: 70_000) {
            case let .bytes(x): b = x
            case let .file(fd, off, len): b = try fd.read(count: len, offset: off); fd.close()
            }
            if b.isEmpty { break }
            out += b
        }
        XCTAssertEqual(UInt64(out.count), try fs.getattr(ino).size, "getattr size of \(path) matches its bytes")
        return out
    }

    func link(_ fs: EnvFilesystem, _ path: String) throws -> String {
        var ino: UInt64 = 1
        for c in path.split(separator: "/") { ino = try fs.lookup(parent: ino, name: Array(c.utf8)).ino }
        let t = try fs.readlink(ino)
        XCTAssertEqual(UInt64(t.count), try fs.getattr(ino).size)
        return String(decoding: t, as: UTF8.self)
    }

    func disk(_ rel: String) throws -> [UInt8] { try FS.readFile(source.path + "/" + rel) }

    func testPublishRecordsTextBinaryAndSymlinksButNotBytecode() throws {
        let m = mounted.manifest, rel = m.relocation
        XCTAssertEqual(rel.prefixes.first?.from, src)
        func entry(_ p: String) -> UInt32 { m.entries[m.resolve(Array(p.utf8))!].owner }
        let files = Dictionary(uniqueKeysWithValues: rel.files.map { ($0.entry, $0) })
        XCTAssertEqual(files[entry("conf.txt")]?.kind, .text)
        XCTAssertEqual(files[entry("conf.txt")]?.occurrences.count, 2, "only whole path components")
        XCTAssertEqual(files[entry("lib/native.so")]?.kind, .binary)
        XCTAssertEqual(files[entry("lib/native.so")]?.occurrences.count, 3)
        XCTAssertEqual(files[entry("big.txt")]?.occurrences.map(\.offset), [100, UInt64(Self.seamAt)], "a match across read blocks is found")
        XCTAssertNil(files[entry("lib/cached.pyc")], "bytecode is not scanned")
        XCTAssertNil(files[entry("plain.txt")])
        XCTAssertNotNil(files[entry("bin/tool")].map { $0.hasShebang })
        XCTAssertEqual(files[entry("bin/tool")]?.hasShebang, true)
        XCTAssertEqual(files[entry("bin/sh-tool")]?.hasShebang, false, "only python scripts get a trampoline")
        XCTAssertEqual(Set(rel.symlinks.map(\.entry)), [entry("bin/link-in"), entry("link-root")])
    }

    func testLongerMountPathRewritesTextAndSymlinksAndListsBinaries() throws {
        let s = source.path
        let mp = s + "/../a-much-longer-mount-point-for-relocation"
        let (fs, r) = presented(at: mp)
        let r2 = try XCTUnwrap(r)
        XCTAssertEqual(try bytes(fs, "conf.txt"), Array("home = \(mp)/bin\nnot-ours = \(s)2/x \(s)-old \(s).bak\nend = \(mp)\n".utf8))
        XCTAssertEqual(try bytes(fs, "conf-hard.txt"), try bytes(fs, "conf.txt"), "a hardlink presents the same bytes")
        XCTAssertEqual(try bytes(fs, "bin/tool"), Array("#!\(mp)/bin/python3 -E\nimport sys\nprint('\(mp)/lib')\n".utf8))
        var big = try disk("big.txt")
        let d = mp.utf8.count
        big.replaceSubrange(Self.seamAt..<Self.seamAt + s.utf8.count, with: Array(mp.utf8))
        big.replaceSubrange(100..<100 + s.utf8.count, with: Array(mp.utf8))
        let got = try bytes(fs, "big.txt")
        XCTAssertEqual(got.count, Self.bigSize + 2 * (d - s.utf8.count))
        XCTAssertTrue(got == big, "big.txt rewritten at both places")
        XCTAssertEqual(try bytes(fs, "lib/native.so"), try disk("lib/native.so"), "a binary cannot take a longer path")
        XCTAssertEqual(r2.unrelocated.map(\.path), ["/lib/native.so"])
        XCTAssertEqual(r2.unrelocated.first?.count, 2, "two C strings keep the old path")
        XCTAssertEqual(try link(fs, "bin/link-in"), mp + "/bin/tool")
        XCTAssertEqual(try link(fs, "link-root"), mp)
        XCTAssertEqual(try link(fs, "bin/link-out"), "/usr/bin/env")
        XCTAssertEqual(try link(fs, "bin/link-sibling"), s + "2/other")
        for p in ["plain.txt", "random.bin", "lib/cached.pyc", "bin/sh-tool"].dropLast() {
            XCTAssertEqual(try bytes(fs, p), try disk(p), "\(p) has no prefix and is presented as published")
        }
    }

    func testShorterMountPathPadsBinaryStringsInPlace() throws {
        let mp = "/m"
        let (fs, r) = presented(at: mp)
        XCTAssertEqual(r?.unrelocated, [])
        let orig = try disk("lib/native.so")
        let got = try bytes(fs, "lib/native.so")
        XCTAssertEqual(got.count, orig.count, "offsets never shift in a binary")
        let old = Array("\(source.path)/lib:\(source.path)/lib64".utf8)
        let at = ByteSearch.occurrences(of: old, in: orig, range: 0..<orig.count).first!
        XCTAssertEqual(Array(got[at..<at + old.count]), Array("/m/lib:/m/lib64".utf8) + [UInt8](repeating: 0, count: old.count - 15))
        XCTAssertEqual(got[at + old.count], 0)
        XCTAssertEqual(Array(got[..<at]), Array(orig[..<at]))
        let p2 = Array("prefix=\(source.path)".utf8)
        let at2 = ByteSearch.occurrences(of: p2, in: orig, range: 0..<orig.count).first!
        XCTAssertEqual(Array(got[at2..<at2 + p2.count]), Array("prefix=/m".utf8) + [UInt8](repeating: 0, count: p2.count - 9))
        XCTAssertEqual(Array(got[(at2 + p2.count)...]), Array(orig[(at2 + p2.count)...]))
        // Reads at any offset and size see the same presented bytes.
        var rng = SeededRandom(seed: 3)
        var ino: UInt64 = 1
        for c in ["lib", "native.so"] { ino = try fs.lookup(parent: ino, name: Array(c.utf8)).ino }
        for _ in 0..<200 {
            let off = Int.random(in: 0..<got.count, using: &rng), n = Int.random(in: 1...5000, using: &rng)
            guard case let .bytes(b) = try fs.read(ino, offset: UInt64(off), size: n) else { return XCTFail("relocated reads answer with bytes") }
            XCTAssertEqual(b, Array(got[off..<min(got.count, off + n)]))
        }
    }

    func testPythonShebangPastTheKernelLimitGetsTheShTrampoline() throws {
        let mp = "/tmp/" + String(repeating: "long-", count: 60) + "mount"
        let (fs, _) = presented(at: mp)
        let expected = "#!/bin/sh\n'''exec' \"\(mp)/bin/python3\" -E \"$0\" \"$@\"\n' '''\nimport sys\nprint('\(mp)/lib')\n"
        XCTAssertEqual(String(decoding: try bytes(fs, "bin/tool"), as: UTF8.self), expected)
        XCTAssertEqual(String(decoding: try bytes(fs, "bin/sh-tool"), as: UTF8.self), "#!\(mp)/bin/bash\necho hi\n",
                       "a shell script is rewritten but cannot be trampolined")
    }

    /// A minimal ELF64 shared object: a dynamic string table and a dynamic section with RUNPATH.
    static func elf(runpath: String) -> [UInt8] {
        func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
        let strtab = [0] + Array(runpath.utf8) + [0] + Array("libc.so.6".utf8) + [0]
        let strOff = 64, dynOff = (strOff + strtab.count + 7) / 8 * 8
        let dynamic = le(29, 8) + le(1, 8) + le(0, 8) + le(0, 8)
        let shoff = dynOff + dynamic.count
        var header = [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1] + [UInt8](repeating: 0, count: 9)
        header += le(3, 2) + le(62, 2) + le(1, 4) + le(0, 8) + le(0, 8) + le(UInt64(shoff), 8) + le(0, 4)
        header += le(64, 2) + le(0, 2) + le(0, 2) + le(64, 2) + le(3, 2) + le(0, 2)
        func section(type: UInt64, offset: Int, size: Int, link: UInt64) -> [UInt8] {
            le(0, 4) + le(type, 4) + le(0, 8) + le(0, 8) + le(UInt64(offset), 8) + le(UInt64(size), 8) + le(link, 4) + le(0, 4) + le(1, 8) + le(0, 8)
        }
        var out = header + strtab
        out += [UInt8](repeating: 0, count: dynOff - out.count) + dynamic
        out += [UInt8](repeating: 0, count: 64) + section(type: 3, offset: strOff, size: strtab.count, link: 0)
            + section(type: 6, offset: dynOff, size: dynamic.count, link: 1)
        return out
    }

    func testElfRunPathInsideTheTreeBecomesOriginRelativeAtAnyOtherPath() throws {
        let s = source.path
        let old = Array("\(s)/lib:$ORIGIN/x:/usr/lib".utf8)
        let want = Array("$ORIGIN:$ORIGIN/x:/usr/lib".utf8)
        let orig = try disk("lib/ext.so")
        let at = ByteSearch.occurrences(of: old, in: orig, range: 0..<orig.count).first!
        for mp in ["/m", s + "/../a-much-longer-mount-point-than-the-source-path"] {
            let (fs, r) = presented(at: mp)
            let got = try bytes(fs, "lib/ext.so")
            XCTAssertEqual(got.count, orig.count)
            XCTAssertEqual(Array(got[at..<at + old.count]), want + [UInt8](repeating: 0, count: old.count - want.count), mp)
            XCTAssertEqual(Array(got[(at + old.count)...]), Array(orig[(at + old.count)...]))
            XCTAssertEqual(Array(got[..<at]), Array(orig[..<at]))
            XCTAssertFalse(r?.unrelocated.contains { $0.path == "/lib/ext.so" } ?? true, "the RUNPATH is patched, not listed")
        }
        XCTAssertEqual(mounted.manifest.metadataValue("elf.machine"), "x86_64")
    }

    func testAtTheSourcePathNothingIsRelocated() throws {
        XCTAssertNil(RelocatedFiles.make(manifest: mounted.manifest, mountpoint: src))
        XCTAssertNil(RelocatedFiles.make(manifest: mounted.manifest, mountpoint: src + [UInt8(ascii: "/")]))
    }

    func testARecordThatDoesNotMatchTheBytesFailsTheReadInsteadOfServingGarbage() throws {
        var m = mounted.manifest
        let conf = m.entries[m.resolve(Array("conf.txt".utf8))!].owner
        let k = m.relocation.files.firstIndex { $0.entry == conf }!
        m.relocation.files[k].occurrences[0].offset += 1
        let (fs, _) = presented(at: "/somewhere/else", manifest: m)
        let ino = try fs.lookup(parent: 1, name: Array("conf.txt".utf8)).ino
        guard case .io? = fsError({ _ = try fs.read(ino, offset: 0, size: 100) }) else { return XCTFail("expected EIO") }
    }
}
