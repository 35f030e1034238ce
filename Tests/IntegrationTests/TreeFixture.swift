import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// A generated source tree with every case a venv can hold, and an entry-by-entry comparison
/// of a mount against it.
enum TreeFixture {
    static let sparseName = "sparse-5GiB.bin"
    static let sparseDataAt: [(UInt64, Int)] = [(0, 1 << 20), ((4 << 30) + 12_345, 100_000)]
    static let sparseSize: UInt64 = (5 << 30) + 7

    /// Builds the tree at `root`. `manyFiles` adds a 10,000-entry directory.
    static func build(_ root: String, manyFiles: Bool, venv: Bool) throws {
        var rng = SeededRandom(seed: 42)
        let r = root.pathBytes
        try FS.makeDirectories(root)
        try writeFile(r.appendingComponent(Array("empty".utf8)), [])
        try writeFile(r.appendingComponent(Array("one-byte".utf8)), [0x41])
        for size in [256 << 10, 1 << 20, 4 << 20, (4 << 20) + 1, 12 << 20] {
            try writeFile(r.appendingComponent(Array("size-\(size).bin".utf8)), rng.bytes(size))
        }
        try writeFile(r.appendingComponent(Array("secret-0600".utf8)), Array("private\n".utf8), mode: 0o600)
        try writeFile(r.appendingComponent(Array("setuid-tool".utf8)), Array("#!/bin/sh\necho hi\n".utf8), mode: 0o4755)
        let priv = r.appendingComponent(Array("private-dir".utf8))
        try FS.mkdir(priv, mode: 0o700)
        try writeFile(priv.appendingComponent(Array("inside".utf8)), Array("x".utf8))
        let names = ["name with spaces.txt", "données ünïcode 日本.txt", "new\nline", "tab\there", "-leading-dash", ".hidden"]
        let odd = r.appendingComponent(Array("odd names".utf8))
        try FS.mkdir(odd)
        for n in names { try writeFile(odd.appendingComponent(Array(n.utf8)), Array(n.utf8)) }
        try writeFile(odd.appendingComponent([0x62, 0x61, 0x64, 0xff, 0xfe]), [1, 2, 3])   // not UTF-8
        try writeFile(odd.appendingComponent([UInt8](repeating: 0x6e, count: 255)), [9])   // NAME_MAX
        // Symlinks: absolute, relative, dangling, to a directory.
        let links = r.appendingComponent(Array("links".utf8))
        try FS.mkdir(links)
        try FS.symlink(target: Array("/etc/hostname".utf8), at: links.appendingComponent(Array("absolute".utf8)))
        try FS.symlink(target: Array("../one-byte".utf8), at: links.appendingComponent(Array("relative".utf8)))
        try FS.symlink(target: Array("does/not/exist".utf8), at: links.appendingComponent(Array("dangling".utf8)))
        try FS.symlink(target: Array("../odd names".utf8), at: links.appendingComponent(Array("to-dir".utf8)))
        // Hardlinks across directories.
        let hl = r.appendingComponent(Array("hard".utf8))
        try FS.mkdir(hl)
        try writeFile(hl.appendingComponent(Array("a".utf8)), rng.bytes(70_000))
        try FS.link(hl.appendingComponent(Array("a".utf8)), r.appendingComponent(Array("hard-b".utf8)))
        try FS.link(hl.appendingComponent(Array("a".utf8)), links.appendingComponent(Array("hard-c".utf8)))
        try FS.mkdir(r.appendingComponent(Array("empty-dir".utf8)))
        // A sparse file past 4 GiB.
        let sp = try FileDescriptor.open(r.appendingComponent(Array(sparseName.utf8)), O_WRONLY | O_CREAT | O_TRUNC)
        try sp.truncate(sparseSize)
        for (off, len) in sparseDataAt {
            try sp.pwriteAll(rng.bytes(len), at: off)
        }
        sp.close()
        if manyFiles {
            let many = r.appendingComponent(Array("many".utf8))
            try FS.mkdir(many)
            for i in 0..<10_000 {
                try writeFile(many.appendingComponent(Array("f\(i)".utf8)), Array("file \(i)\n".utf8))
            }
        }
        if venv { try makeVenv(root + "/venv") }
    }

    /// A real venv (no pip: offline and fast) with a package of our own in site-packages.
    static func makeVenv(_ path: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-m", "venv", "--without-pip", path]
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "python3 -m venv failed")
        let site = try FS.listDirectory(path + "/lib").first { $0.hasPrefix("python3") }.map { "\(path)/lib/\($0)/site-packages" }
        guard let site else { XCTFail("no lib/python3.*"); return }
        try FS.makeDirectories(site + "/envmount_probe")
        try writeFile((site + "/envmount_probe/__init__.py").pathBytes,
                      Array("import hashlib, json\nVALUE = hashlib.sha256(b'envmount').hexdigest()\n".utf8))
    }

    /// Compares every entry under `source` with the same path under `mount`. With `relocated`
    /// (a mount at another path), text files and symlinks that name `source` are expected to
    /// name `mount` instead.
    static func assertSame(source: String, mount: String, skipContent: Set<String> = [sparseName], relocated: Bool = true,
                           file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        func expected(_ bytes: [UInt8]) -> [UInt8] {
            guard relocated, source != mount, !bytes.contains(0) else { return bytes }
            return replacing(source.pathBytes, with: mount.pathBytes, in: bytes)
        }
        var hardlinkInodes: [UInt64: UInt64] = [:]   // source inode -> mount inode
        var count = 0
        func walk(_ rel: PathBytes) throws {
            let s = source.pathBytes + rel, m = mount.pathBytes + rel
            let name = rel.pathString
            let a = try FS.lstat(s)
            let b: FileStat
            do { b = try FS.lstat(m) } catch { XCTFail("missing in mount: \(name): \(error)", file: file, line: line); return }
            count += 1
            XCTAssertEqual(a.kind, b.kind, "kind of \(name)", file: file, line: line)
            if a.kind != .symlink { XCTAssertEqual(a.mode, b.mode, "mode of \(name)", file: file, line: line) }
            XCTAssertEqual(a.uid, b.uid, "uid of \(name)", file: file, line: line)
            XCTAssertEqual(a.gid, b.gid, "gid of \(name)", file: file, line: line)
            XCTAssertEqual(a.mtimeNs, b.mtimeNs, "mtime of \(name)", file: file, line: line)
            switch a.kind {
            case .directory:
                let ka = try FS.listDirectory(s).sorted { $0.lexicographicallyPrecedes($1) }
                let kb = try FS.listDirectory(m).sorted { $0.lexicographicallyPrecedes($1) }
                XCTAssertEqual(ka, kb, "children of \(name)", file: file, line: line)
                for c in ka { try walk(rel + [UInt8(ascii: "/")] + c) }
            case .symlink:
                let t = try FS.readlink(s)
                let want = relocated && t.starts(with: source.pathBytes + [UInt8(ascii: "/")]) ? mount.pathBytes + t.dropFirst(source.utf8.count) : t
                XCTAssertEqual(want, try FS.readlink(m), "target of \(name)", file: file, line: line)
                XCTAssertEqual(UInt64(want.count), b.size, "size of \(name)", file: file, line: line)
            case .regular:
                XCTAssertEqual(a.links, b.links, "link count of \(name)", file: file, line: line)
                if a.links > 1 {
                    if let seen = hardlinkInodes[a.inode] {
                        XCTAssertEqual(seen, b.inode, "hardlink \(name) is a different inode in the mount", file: file, line: line)
                    } else {
                        hardlinkInodes[a.inode] = b.inode
                    }
                }
                let base = rel.split(separator: UInt8(ascii: "/")).last.map { String(decoding: $0, as: UTF8.self) } ?? ""
                if !skipContent.contains(base) {
                    let want = expected(try readAll(s))
                    XCTAssertEqual(UInt64(want.count), b.size, "size of \(name)", file: file, line: line)
                    XCTAssertTrue(try want == readAll(m), "content of \(name)", file: file, line: line)
                } else {
                    XCTAssertEqual(a.size, b.size, "size of \(name)", file: file, line: line)
                }
            default:
                XCTFail("unexpected kind of \(name)", file: file, line: line)
            }
        }
        try walk([])
        return count
    }

    /// Every occurrence of `old` in `bytes` replaced by `new` (written here, not taken from the code under test).
    static func replacing(_ old: [UInt8], with new: [UInt8], in bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] == old[0], i + old.count <= bytes.count, bytes[i..<i + old.count].elementsEqual(old) {
                out += new
                i += old.count
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }

    static func readAll(_ p: PathBytes) throws -> [UInt8] {
        let fd = try FileDescriptor.open(p, O_RDONLY)
        defer { fd.close() }
        return try fd.readAll()
    }
}
