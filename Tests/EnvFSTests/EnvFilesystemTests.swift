import TestSupport
import XCTest
import Glibc
import SysKit
import EnvFormat
import EnvStore
import EnvFS

final class EnvFilesystemTests: XCTestCase {
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

    func testEveryEntryHasTheSourceAttributesAndBytes() throws {
        let fs = mounted.fs
        let paths = try SourceTree.walk(source.bytes)
        XCTAssertEqual(paths.count, mounted.manifest.entries.count - 1, "one entry per source path")
        var inoOfDiskInode: [UInt64: UInt64] = [:]
        var rng = SeededRandom(seed: 5)
        for rel in paths {
            let what = rel.pathString
            let st = try FS.lstat(source.bytes.appendingComponent(rel))
            let a = try fs.getattr(try mounted.ino(rel))
            XCTAssertEqual(a, try fs.getattr(a.ino), what)
            XCTAssertEqual(a.mode, st.mode, what)
            XCTAssertEqual(a.mtimeNs, st.mtimeNs, what)
            XCTAssertEqual(a.uid, st.uid, what)
            XCTAssertEqual(a.gid, st.gid, what)
            XCTAssertEqual(UInt64(a.nlink), st.links, what)
            if let known = inoOfDiskInode[st.inode] {
                XCTAssertEqual(a.ino, known, "\(what): hardlinks share an inode")
            } else {
                XCTAssertFalse(inoOfDiskInode.values.contains(a.ino), "\(what): distinct files, distinct inodes")
                inoOfDiskInode[st.inode] = a.ino
            }
            switch st.kind {
            case .directory:
                XCTAssertEqual(a.kind, .directory, what)
            case .symlink:
                XCTAssertEqual(a.kind, .symlink, what)
                let target = try FS.readlink(source.bytes.appendingComponent(rel))
                XCTAssertEqual(try fs.readlink(a.ino), target, what)
                XCTAssertEqual(a.size, UInt64(target.count), what)
            case .regular:
                XCTAssertEqual(a.kind, .regular, what)
                XCTAssertEqual(a.size, st.size, what)
                try fs.open(a.ino, writable: false)
                let disk = try diskBytes(rel)
                XCTAssertEqual(try mounted.readAll(a.ino), disk, "\(what) reads back byte-identical")
                for _ in 0..<20 where !disk.isEmpty {
                    let off = Int.random(in: 0..<disk.count, using: &rng)
                    let len = Int.random(in: 1...min(300_000, disk.count), using: &rng)
                    XCTAssertEqual(try mounted.read(a.ino, offset: UInt64(off), size: len), Array(disk[off..<min(off + len, disk.count)]),
                                   "\(what) at \(off)+\(len)")
                }
                XCTAssertEqual(try mounted.read(a.ino, offset: st.size, size: 100), [], "\(what): read at EOF")
                XCTAssertEqual(try mounted.read(a.ino, offset: st.size + 12345, size: 100), [], "\(what): read past EOF")
                XCTAssertEqual(try mounted.read(a.ino, offset: 0, size: 0), [], "\(what): empty read")
                if st.size > 3 {
                    XCTAssertEqual(try mounted.read(a.ino, offset: st.size - 3, size: 100), Array(disk.suffix(3)), "\(what): read across EOF")
                }
            default:
                XCTFail("\(what): unexpected kind \(st.kind)")
            }
        }
        XCTAssertEqual(try fs.getattr(1).kind, .directory)
        XCTAssertEqual(try fs.getattr(1).mode, try FS.stat(source.path).mode)
    }

    func diskBytes(_ rel: PathBytes) throws -> [UInt8] {
        let fd = try FileDescriptor.open(source.bytes.appendingComponent(rel), O_RDONLY)
        defer { fd.close() }
        return try fd.readAll()
    }

    func testSpecificCases() throws {
        let fs = mounted.fs
        XCTAssertEqual(try fs.getattr(try mounted.ino("secret")).mode, 0o600)
        XCTAssertEqual(try fs.getattr(try mounted.ino("private")).mode, 0o700)
        XCTAssertEqual(try fs.getattr(try mounted.ino("big/tool")).mode, 0o755)
        XCTAssertEqual(try fs.getattr(try mounted.ino("one")).mtimeNs, SourceTree.fixedMtimeNs)
        XCTAssertEqual(try fs.getattr(try mounted.ino("abs-link")).mtimeNs, SourceTree.fixedMtimeNs)
        XCTAssertEqual(try fs.getattr(try mounted.ino("big/nested")).mtimeNs, SourceTree.fixedMtimeNs)
        let hard = try fs.getattr(try mounted.ino("hard-a"))
        XCTAssertEqual(hard.nlink, 3)
        XCTAssertEqual(try fs.getattr(try mounted.ino("big/hard-b")).ino, hard.ino)
        XCTAssertEqual(try fs.getattr(try mounted.ino("big/nested/hard-c")).ino, hard.ino)
        XCTAssertEqual(try fs.readlink(try mounted.ino("dangling")), Array("nope/missing".utf8))
        XCTAssertEqual(try fs.getattr(try mounted.ino(SourceTree.invalidUTF8)).size, 2000)
        XCTAssertEqual(try fs.getattr(try mounted.ino("ünïcødé-文件.py")).size, 10)
        XCTAssertEqual(try fs.getattr(try mounted.ino("dir with spaces/with space.txt")).size, 7)
        let sparse = try mounted.ino("sparse.img")
        XCTAssertEqual(try fs.getattr(sparse).size, SourceTree.sparseSize)
        XCTAssertEqual(try mounted.read(sparse, offset: 5 << 20, size: 4096), [UInt8](repeating: 0, count: 4096), "a hole reads as zeros")
        // Holes are not stored: the chunks hold about the 115 kB of data, not 64 MiB.
        let stored = mounted.manifest.chunks.reduce(0) { $0 + Int($1.rawSize) }
        XCTAssertLessThan(stored, 8 << 20)
        XCTAssertTrue(mounted.manifest.spans.contains { $0.chunk == Manifest.Span.zeros })
    }

    func testErrors() throws {
        let fs = mounted.fs
        let file = try mounted.ino("one"), dir = try mounted.ino("big")
        XCTAssertEqual(fsError { _ = try fs.lookup(parent: 1, name: Array("missing".utf8)) }?.errno, ENOENT)
        XCTAssertEqual(fsError { _ = try fs.lookup(parent: file, name: Array("x".utf8)) }?.errno, ENOTDIR)
        XCTAssertEqual(fsError { _ = try fs.readlink(file) }?.errno, EINVAL)
        XCTAssertEqual(fsError { try fs.open(dir, writable: false) }?.errno, EISDIR)
        XCTAssertEqual(fsError { try fs.open(file, writable: true) }?.errno, EROFS)
        XCTAssertEqual(fsError { _ = try fs.read(dir, offset: 0, size: 10) }?.errno, EISDIR)
        XCTAssertEqual(fsError { try fs.readdir(file, from: 0) { _, _, _, _ in true } }?.errno, ENOTDIR)
        let count = UInt64(mounted.manifest.entries.count)
        for bad: UInt64 in [0, count + 1, .max] {
            XCTAssertEqual(fsError { _ = try fs.getattr(bad) }?.errno, ENOENT, "inode \(bad)")
            XCTAssertEqual(fsError { _ = try fs.read(bad, offset: 0, size: 1) }?.errno, ENOENT, "inode \(bad)")
        }
        XCTAssertNoThrow(try fs.getattr(count))
    }

    /// All of a directory's listing from `from`, taking at most `batch` entries per call and
    /// resuming from the last `next`, as the kernel does with a small buffer.
    func list(_ ino: UInt64, from: Int = 0, batch: Int = .max) throws -> [(name: PathBytes, ino: UInt64, kind: Manifest.Kind)] {
        var out: [(name: PathBytes, ino: UInt64, kind: Manifest.Kind)] = []
        var pos = from
        while true {
            var taken = 0
            var next = pos
            try mounted.fs.readdir(ino, from: pos) { name, ino, kind, n in
                if taken == batch { return false }
                out.append((Array(name), ino, kind))
                taken += 1
                next = n
                return true
            }
            if taken == 0 { return out }
            pos = next
        }
    }

    func testReaddirListsExactlyTheChildrenAndResumesFromAnyOffset() throws {
        var dirs: [PathBytes] = [[]]
        for rel in try SourceTree.walk(source.bytes) where try FS.lstat(source.bytes.appendingComponent(rel)).kind == .directory {
            dirs.append(rel)
        }
        XCTAssertGreaterThan(dirs.count, 6)
        for rel in dirs {
            let what = rel.isEmpty ? "/" : rel.pathString
            let ino = try mounted.ino(rel)
            let names = try FS.listDirectory(rel.isEmpty ? source.bytes : source.bytes.appendingComponent(rel))
                .sorted { compareBytes($0, $1) < 0 }
            let full = try list(ino)
            XCTAssertEqual(full.map(\.name), [[0x2e], [0x2e, 0x2e]] + names, what)
            XCTAssertEqual(full.first?.ino, ino, "\(what): '.'")
            let parent = rel.isEmpty ? 1 : try mounted.ino(Array(rel.split(separator: UInt8(ascii: "/")).dropLast().joined(separator: [UInt8(ascii: "/")])))
            XCTAssertEqual(full.dropFirst().first?.ino, parent, "\(what): '..'")
            for e in full.dropFirst(2) {
                let a = try mounted.fs.lookup(parent: ino, name: e.name)
                XCTAssertEqual(e.ino, a.ino, "\(what)/\(e.name.pathString)")
                XCTAssertEqual(e.kind, a.kind, "\(what)/\(e.name.pathString)")
            }
            for from in 0...full.count + 1 {
                XCTAssertEqual(try list(ino, from: from).map(\.name), Array(full.dropFirst(from)).map(\.name), "\(what) from \(from)")
            }
            for batch in [1, 2, 3] {
                XCTAssertEqual(try list(ino, batch: batch).map(\.name), full.map(\.name), "\(what) in batches of \(batch)")
            }
        }
    }
}
