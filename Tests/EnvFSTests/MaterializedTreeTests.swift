import EnvCache
@testable import EnvFS
import EnvFormat
import EnvStore
import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// Trees built from a published source (the awkward cases: sparse, hardlinks, odd names,
/// setuid), shared between revisions, and checked against damage.
final class MaterializedTreeTests: XCTestCase {
    func materialize(_ m: Mounted, cacheDir: String) throws -> (MaterializedTree, (written: Int, shared: Int)) {
        let tree = MaterializedTree(cacheDirectory: cacheDir, manifest: m.manifest, id: ChunkID.of(try m.store.get(
            Ref.manifestKey(try Ref.decode(try m.store.get(Ref.objectKey(env: "test"))).manifest))))
        let fetcher = m.fs.fetcher
        let r = try tree.materialize { chunk, offset, count, buf in try fetcher.read(chunk, offset: offset, count: count, into: &buf, at: 0) }
        return (tree, r)
    }

    func testATreeHoldsTheSourceAndALaterRevisionSharesItsUnchangedFiles() throws {
        let source = try TempDir("source"), trees = try TempDir("trees")
        defer { source.remove(); trees.remove() }
        try SourceTree.make(at: source.bytes)
        let store = MemoryStore()
        let first = try Mounted(source: source.path, store: store)
        let (tree1, r1) = try materialize(first, cacheDir: trees.path)
        XCTAssertEqual(r1.shared, 0)
        XCTAssertGreaterThan(r1.written, 10)
        XCTAssertEqual(tree1.check(), .ready)
        for rel in try SourceTree.walk(source.bytes) {
            let a = try FS.lstat(source.bytes.appendingComponent(rel)), b = try FS.lstat(tree1.path.pathBytes.appendingComponent(rel))
            XCTAssertEqual(a.kind, b.kind, rel.pathString)
            XCTAssertEqual(a.mode, b.mode, rel.pathString)
            XCTAssertEqual(a.mtimeNs, b.mtimeNs, rel.pathString)
            XCTAssertEqual(a.size, b.size, rel.pathString)
            if a.kind == .regular {
                XCTAssertEqual(a.links, b.links, rel.pathString)
                XCTAssertEqual(try FileDescriptor.open(source.bytes.appendingComponent(rel), O_RDONLY).readAll(),
                               try FileDescriptor.open(tree1.path.pathBytes.appendingComponent(rel), O_RDONLY).readAll(), rel.pathString)
            }
        }

        // Revision 2 changes one file: every other file is linked from revision 1's tree.
        let changed = source.bytes.appendingComponent(Array("changed.py".utf8))
        try Disk.write(changed, Array("print('v2')\n".utf8))
        let second = try Mounted(source: source.path, store: store)
        let (tree2, r2) = try materialize(second, cacheDir: trees.path)
        XCTAssertEqual(r2.written, 1, "only the new file is written")
        XCTAssertEqual(r2.shared, r1.written)
        XCTAssertEqual(tree2.check(), .ready)
        // Linking moved the ctimes of tree 1's files: its check re-hashes them, and they pass.
        XCTAssertEqual(tree1.check(), .ready)
        XCTAssertEqual(tree1.check(), .ready)

        // A byte changed in a shared file damages both trees; neither is served.
        var victim: PathBytes = []
        for rel in try SourceTree.walk(source.bytes) where rel != Array("changed.py".utf8) {
            let st = try FS.lstat(source.bytes.appendingComponent(rel))
            if st.kind == .regular && st.size > 10 && st.size < 1 << 20 { victim = rel; break }
        }
        let fd = try FileDescriptor.open(tree2.path.pathBytes.appendingComponent(victim), O_WRONLY)
        try fd.pwriteAll([0x5a], at: 3)
        fd.close()
        guard case .damaged = tree2.check() else { return XCTFail("damage not found in tree 2") }
        guard case .damaged = tree1.check() else { return XCTFail("damage not found in tree 1") }
        tree2.remove()
        XCTAssertEqual(tree2.check(), .absent)
    }

    /// Directories under `root` (relative, "" for the root) marked opaque for overlayfs.
    func opaqueDirectories(_ root: String) throws -> Set<String> {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", """
            import os, sys
            for d, _, _ in os.walk(sys.argv[1]):
                try:
                    if os.getxattr(d, "trusted.overlay.opaque", follow_symlinks=False) == b"y":
                        print(os.path.relpath(d, sys.argv[1]))
                except OSError:
                    pass
            """, root]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        return Set(String(decoding: data, as: UTF8.self).split(separator: "\n").map { $0 == "." ? "" : String($0) })
    }

    func testAPartialTreeHoldsTheChosenFilesAndLeavesTheDirectoriesAboveMissingOnesOpen() throws {
        let (source, mounted) = try publishedSource(), trees = try TempDir("trees")
        defer { source.remove(); trees.remove() }
        let m = mounted.manifest
        let owners = m.entries.indices.filter { m.entries[$0].kind == .regular && m.entries[$0].owner == UInt32($0) }
        // Every other file.
        let chosen = Set(owners.enumerated().filter { $0.offset % 2 == 1 }.map(\.element))
        XCTAssertGreaterThan(chosen.count, 3)
        let tree = MaterializedTree(cacheDirectory: trees.path, manifest: m, id: ChunkID.of(Array("partial".utf8)))
        let fetcher = mounted.fs.fetcher
        let r = try tree.materialize(only: chosen) { chunk, offset, count, buf in try fetcher.read(chunk, offset: offset, count: count, into: &buf, at: 0) }
        XCTAssertEqual(r.written, chosen.count)
        let c = try XCTUnwrap(tree.contents())
        XCTAssertEqual(c.files, chosen)
        XCTAssertTrue(c.partial)
        XCTAssertEqual(c.bytes, chosen.reduce(0) { $0 + m.entries[$1].size })
        XCTAssertEqual(MaterializedTree.diskBytes(cacheDirectory: trees.path), c.bytes)
        XCTAssertEqual(tree.check(), .ready)

        // Chosen files (every name of them) hold their bytes; the others are absent; every
        // directory and symlink is there; a directory is opaque exactly when nothing below it is missing.
        var open = Set<Int>()
        for e in m.entries where e.kind == .regular && !chosen.contains(Int(e.owner)) {
            var d = Int(e.parent)
            while open.insert(d).inserted && d != 0 { d = Int(m.entries[d].parent) }
        }
        XCTAssertTrue(open.contains(0))
        var wantOpaque = Set<String>()
        for (i, e) in m.entries.enumerated() {
            let rel = m.path(i)
            let p = i == 0 ? tree.path.pathBytes : tree.path.pathBytes.appendingComponent(rel)
            switch e.kind {
            case .regular:
                if chosen.contains(Int(e.owner)) {
                    XCTAssertEqual(try FileDescriptor.open(p, O_RDONLY).readAll(),
                                   try FileDescriptor.open(source.bytes.appendingComponent(rel), O_RDONLY).readAll(), rel.pathString)
                } else {
                    XCTAssertFalse(FS.exists(p.pathString), "\(rel.pathString) is not chosen but in the tree")
                }
            case .directory:
                XCTAssertEqual(try FS.lstat(p).kind, .directory, rel.pathString)
                if !open.contains(i) { wantOpaque.insert(rel.pathString) }
            case .symlink:
                XCTAssertEqual(try FS.readlink(p), m.symlinkTarget(i), rel.pathString)
            }
        }
        XCTAssertFalse(wantOpaque.isEmpty, "the source tree has no complete directory to check")
        XCTAssertEqual(try opaqueDirectories(tree.path), wantOpaque)
    }

    /// A tree of the source tree, materialized alone in a cache directory of its own (so no file
    /// is shared with another test's tree).
    /// The awkward source tree (SourceTree) published to a memory store; the caller removes `source`.
    func publishedSource() throws -> (source: TempDir, mounted: Mounted) {
        let source = try TempDir("source")
        do {
            try SourceTree.make(at: source.bytes)
            return (source, try Mounted(source: source.path, store: MemoryStore()))
        } catch {
            source.remove()
            throw error
        }
    }

    func lonelyTree(_ mounted: Mounted, in dir: TempDir) throws -> MaterializedTree {
        let tree = MaterializedTree(cacheDirectory: dir.path, manifest: mounted.manifest, id: ChunkID.of(Array(dir.path.utf8)))
        let fetcher = mounted.fs.fetcher
        try tree.materialize { chunk, offset, count, buf in try fetcher.read(chunk, offset: offset, count: count, into: &buf, at: 0) }
        XCTAssertEqual(tree.check(), .ready)
        return tree
    }

    func damage(_ tree: MaterializedTree) -> String? {
        if case let .damaged(why) = tree.check() { return why }
        return nil
    }

    /// Rewrites one byte of a file in place and puts its mtime back: only its ctime tells.
    func flipByte(_ path: PathBytes) throws {
        let st = try FS.lstat(path)
        let fd = try FileDescriptor.open(path, O_RDWR)
        let b = try fd.read(count: 1, offset: 0)
        try fd.pwriteAll([b[0] ^ 0xff], at: 0)
        fd.close()
        try FS.setMtime(path, ns: st.mtimeNs)
    }

    /// The seal's usual lines are read by length (numbers scanned, digest and key taken as 64
    /// digits each); any other spacing goes through the field scanner. Both read the same seal,
    /// and both find a damaged file by its digest.
    func testTheSealReadsTheSameWhateverItsSpacing() throws {
        let (source, mounted) = try publishedSource()
        defer { source.remove() }
        for spacing in ["usual", "doubled", "bad entry"] {
            let dir = try TempDir("trees")
            defer { dir.remove() }
            let tree = try lonelyTree(mounted, in: dir)
            let usual = try XCTUnwrap(tree.contents())
            let seal = tree.path + ".seal"
            let lines = String(decoding: try FS.readFile(seal), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            XCTAssertGreaterThan(lines.count, 10)
            XCTAssertTrue(lines.dropFirst().allSatisfy { $0.isEmpty || $0.split(separator: " ").map(\.count).suffix(2) == [64, 64] }, "the usual shape")
            var body = lines.dropFirst().map(String.init)
            switch spacing {
            case "doubled": body = body.map { $0.replacingOccurrences(of: " ", with: "  ") + " " }
            case "bad entry": body[0] = "\(mounted.manifest.entries.count)" + body[0].drop { $0 != " " }
            default: break
            }
            try Disk.write(seal.pathBytes, Array(([String(lines[0])] + body).joined(separator: "\n").utf8))
            guard spacing != "bad entry" else {
                XCTAssertNil(tree.contents(), "an entry past the manifest makes the seal unreadable")
                XCTAssertEqual(tree.check(), .absent)
                continue
            }
            let read = try XCTUnwrap(tree.contents(), spacing)
            XCTAssertEqual(read.files, usual.files, spacing)
            XCTAssertEqual(read.bytes, usual.bytes, spacing)
            XCTAssertEqual(tree.check(), .ready, spacing)
            // Its ctime moved, its bytes did not: the digest read from the seal must match.
            let victim = tree.path.pathBytes.appendingComponent(Array("multi.bin".utf8))
            try FS.chmod(victim, try FS.lstat(victim).mode)
            XCTAssertEqual(tree.check(), .ready, spacing)
            try flipByte(victim)
            XCTAssertEqual(damage(tree), "\(victim.pathString) does not hold the bytes it was written with", spacing)
        }
    }

    /// A seal read ahead (SealPreread, as a mount starts it while it decodes the manifest) is
    /// used once, by the tree it was read for, and is checked against the manifest as the file is.
    func testASealReadAheadIsUsedOnceByItsOwnTree() throws {
        let (source, mounted) = try publishedSource(), dir = try TempDir("trees")
        defer { source.remove(); dir.remove() }
        let tree = try lonelyTree(mounted, in: dir)
        let usual = try XCTUnwrap(tree.contents())

        let ahead = SealPreread(cacheDirectory: dir.path)
        ahead.start(id: tree.id)
        let early = MaterializedTree(cacheDirectory: dir.path, manifest: mounted.manifest, id: tree.id, preread: ahead)
        // The file goes: the first read is the one read ahead, the next one finds nothing.
        ahead.waitUntilRead()
        let seal = try FS.readFile(tree.path + ".seal")
        try FS.unlink(tree.path + ".seal")
        XCTAssertEqual(early.contents()?.files, usual.files)
        XCTAssertNil(early.contents(), "read ahead once: the second read is the file's")
        try Disk.write((tree.path + ".seal").pathBytes, seal)

        // Started for another tree: not used.
        let other = SealPreread(cacheDirectory: dir.path)
        other.start(id: ChunkID.of([1, 2, 3]))
        XCTAssertEqual(MaterializedTree(cacheDirectory: dir.path, manifest: mounted.manifest, id: tree.id, preread: other).check(), .ready)

        // Asked for by another tree first (a writable layer's pinned revision): not kept.
        let asked = SealPreread(cacheDirectory: dir.path)
        asked.start(id: tree.id)
        asked.waitUntilRead()
        let another = MaterializedTree(cacheDirectory: dir.path, manifest: mounted.manifest, id: ChunkID.of([4]), preread: asked)
        try FS.makeDirectories(another.path)
        XCTAssertEqual(another.check(), .absent, "a tree directory without a seal")
        XCTAssertNil(asked.take(id: tree.id), "dropped once another tree asked")

        // An entry past the manifest is refused when read ahead too.
        var lines = String(decoding: seal, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines[1] = "\(mounted.manifest.entries.count)" + lines[1].drop { $0 != " " }
        try Disk.write((tree.path + ".seal").pathBytes, Array(lines.joined(separator: "\n").utf8))
        let bad = SealPreread(cacheDirectory: dir.path)
        bad.start(id: tree.id)
        XCTAssertEqual(MaterializedTree(cacheDirectory: dir.path, manifest: mounted.manifest, id: tree.id, preread: bad).check(), .absent)
    }

    func testTheCheckFindsDamageDeepInTheTreeAndAtItsRoot() throws {
        let (source, mounted) = try publishedSource()
        defer { source.remove() }
        let deep = Array("big/nested/deep/file.py".utf8), top = Array("multi.bin".utf8)
        for (rel, depth) in [(deep, 3), (top, 0)] {
            XCTAssertEqual(rel.filter { $0 == UInt8(ascii: "/") }.count, depth)
            // A byte changed in place, mtime put back: found by its ctime, refused by its digest.
            // A byte appended: the size differs. The file gone.
            let damages: [(String, (PathBytes) throws -> Void)] = [
                ("does not hold the bytes it was written with", flipByte),
                ("is missing or has the wrong size or mtime", { p in
                    let fd = try FileDescriptor.open(p, O_WRONLY | O_APPEND)
                    try fd.writeAll([0x0a])
                    fd.close()
                }),
                ("is missing or has the wrong size or mtime", { try FS.unlink($0) }),
            ]
            for (why, damageIt) in damages {
                let dir = try TempDir("trees")
                defer { dir.remove() }
                let tree = try lonelyTree(mounted, in: dir)
                let path = tree.path.pathBytes.appendingComponent(rel)
                try damageIt(path)
                XCTAssertEqual(damage(tree), "\(path.pathString) \(why)")
            }
        }
        // The directory holding the deep file gone.
        let dir = try TempDir("trees")
        defer { dir.remove() }
        let tree = try lonelyTree(mounted, in: dir)
        try FS.removeTree(tree.path + "/big/nested/deep")
        XCTAssertEqual(damage(tree), "\(tree.path)/big/nested/deep/file.py is missing or has the wrong size or mtime")
    }

    func testATreeWhoseDirectoryWasReplacedByASymlinkIsRefused() throws {
        let (source, mounted) = try publishedSource()
        defer { source.remove() }

        // big/nested moved out of the tree and a symlink to it put in its place: every file
        // below it is still there, untouched (same size, mtime and ctime through the symlink),
        // but the overlay would serve whatever the symlink points to.
        var dir = try TempDir("trees")
        var tree = try lonelyTree(mounted, in: dir)
        let file = tree.path + "/big/nested/deep/file.py"
        let before = try FS.lstat(file)
        try FS.rename(tree.path + "/big/nested", dir.path + "/elsewhere")
        try FS.symlink(target: (dir.path + "/elsewhere").pathBytes, at: (tree.path + "/big/nested").pathBytes)
        XCTAssertEqual(try FS.lstat(file), before, "the files look untouched through the symlink")
        XCTAssertEqual(damage(tree), "\(tree.path)/big/nested is not the directory it was written as")
        dir.remove()

        // The same one level deeper (the directory right above a file), and a relative symlink.
        dir = try TempDir("trees")
        tree = try lonelyTree(mounted, in: dir)
        try FS.rename(tree.path + "/big/nested/deep", tree.path + "/big/nested/deep2")
        try FS.symlink(target: Array("deep2".utf8), at: (tree.path + "/big/nested/deep").pathBytes)
        XCTAssertEqual(damage(tree), "\(tree.path)/big/nested/deep is not the directory it was written as")
        dir.remove()

        // The tree's root itself.
        dir = try TempDir("trees")
        defer { dir.remove() }
        tree = try lonelyTree(mounted, in: dir)
        try FS.rename(tree.path, dir.path + "/moved")
        try FS.symlink(target: (dir.path + "/moved").pathBytes, at: tree.path.pathBytes)
        XCTAssertEqual(damage(tree), "\(tree.path) is not the directory it was written as")
    }

    func testAnotherNameOfAHardlinkedFileMustStillBeThatFile() throws {
        let (source, mounted) = try publishedSource(), dir = try TempDir("trees")
        defer { source.remove(); dir.remove() }
        let tree = try lonelyTree(mounted, in: dir)
        // big/nested/hard-c is hard-a's inode: replaced by a copy (same bytes, mode and mtime),
        // and then by other bytes, the overlay would serve the copy; only the inode tells.
        let link = tree.path + "/big/nested/hard-c", owner = tree.path + "/hard-a"
        XCTAssertEqual(try FS.lstat(link).inode, try FS.lstat(owner).inode)
        let st = try FS.lstat(owner)
        try FS.unlink(link)
        try Disk.write(link.pathBytes, try FileDescriptor.open(owner, O_RDONLY).readAll(), mode: st.mode)
        try FS.setMtime(link.pathBytes, ns: st.mtimeNs)
        XCTAssertEqual(damage(tree), "\(link) is not the hardlink it was written as")
        try FS.unlink(link)
        XCTAssertEqual(damage(tree), "\(link) is not the hardlink it was written as")
    }

    func testAPartialTreeRefusesAFileAtTheNameOfOneItLeftOut() throws {
        let (source, mounted) = try publishedSource(), dir = try TempDir("trees")
        defer { source.remove(); dir.remove() }
        let m = mounted.manifest
        // Every file but big/nested/deep/file.py (three directories down) and multi.bin (at the root).
        let left = try [Array("big/nested/deep/file.py".utf8), Array("multi.bin".utf8)].map { try XCTUnwrap(m.resolve($0)) }
        let chosen = Set(m.entries.indices.filter { m.entries[$0].kind == .regular && m.entries[$0].owner == UInt32($0) && !left.contains($0) })
        let tree = MaterializedTree(cacheDirectory: dir.path, manifest: m, id: ChunkID.of(Array("partial".utf8)))
        let fetcher = mounted.fs.fetcher
        try tree.materialize(only: chosen) { chunk, offset, count, buf in try fetcher.read(chunk, offset: offset, count: count, into: &buf, at: 0) }
        XCTAssertEqual(tree.check(), .ready)
        for i in left {
            // The directory above it is not opaque: a file put at its name would hide the FUSE one.
            let p = tree.path + "/" + m.path(i).pathString
            XCTAssertFalse(FS.exists(p))
            try Disk.write(p.pathBytes, Array("evil\n".utf8))
            XCTAssertEqual(damage(tree), "\(p) was not materialized but is in the tree (it would hide the file served through FUSE)")
            try FS.unlink(p)
            XCTAssertEqual(tree.check(), .ready)
        }
        // A sealed file damaged in a partial tree is found as in a whole one.
        let victim = tree.path + "/big/tool"
        try flipByte(victim.pathBytes)
        XCTAssertEqual(damage(tree), "\(victim) does not hold the bytes it was written with")
    }
}
