// Shared fixtures for the file-system tests: a source tree on disk with the awkward cases,
// published with Publisher into a MemoryStore, then served by EnvFilesystem over a ChunkFetcher
// and a ChunkCache in a temporary directory.
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

/// Small chunks so a few MiB of files make hundreds of them.
let smallChunking = ChunkingParams(minSize: 4 << 10, avgSize: 16 << 10, maxSize: 64 << 10)

/// A directory under /tmp, removed with `remove()`.
struct TempDir {
    let path: String
    init(_ tag: String) throws {
        path = "/tmp/envfs-tests-\(tag)-\(getpid())-\(UUID().uuidString)"
        try FS.makeDirectories(path)
    }
    var bytes: PathBytes { path.pathBytes }
    func remove() { try? FS.removeTree(path) }
}



enum Disk {
    static func write(_ path: PathBytes, _ bytes: [UInt8], mode: UInt32 = 0o644) throws {
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        defer { fd.close() }
        try fd.writeAll(bytes)
        try FS.chmod(path, mode)
    }

    /// A sparse file of `size` bytes holding `data` at each offset and holes elsewhere.
    static func writeSparse(_ path: PathBytes, size: UInt64, data: [(UInt64, [UInt8])]) throws {
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC)
        defer { fd.close() }
        try fd.truncate(size)
        for (offset, bytes) in data {
            XCTAssertEqual(Glibc.lseek(fd.rawValue, off_t(offset), SEEK_SET), off_t(offset))
            try fd.writeAll(bytes)
        }
    }

    static func mkdir(_ path: PathBytes, mode: UInt32 = 0o755) throws {
        try FS.mkdir(path, mode: mode)
        try FS.chmod(path, mode)
    }
}

/// The generated source tree: sizes at chunking limits, a sparse file, symlinks of every kind,
/// hardlinks, private files and directories, and names that are not plain ASCII.
enum SourceTree {
    static let invalidUTF8: PathBytes = [0x66, 0xff, 0xfe, 0x2e, 0x70, 0x79]
    static let sparseSize: UInt64 = 64 << 20
    static let fixedMtimeNs: Int64 = 1_600_000_000_123_456_789

    static func make(at root: PathBytes, seed: UInt64 = 1) throws {
        func p(_ s: String) -> PathBytes { root.appendingComponent(Array(s.utf8)) }
        let c = smallChunking
        var n: UInt64 = seed
        func data(_ size: Int) -> [UInt8] { n += 1; return randomBytes(size, seed: n) }

        try Disk.write(p("empty"), [])
        try Disk.write(p("one"), [0x2a])
        for (name, size) in [("min", c.minSize), ("min-1", c.minSize - 1), ("avg", c.avgSize), ("max", c.maxSize),
                             ("max+1", c.maxSize + 1), ("two-max", 2 * c.maxSize)] {
            try Disk.write(p(name), data(size))
        }
        try Disk.write(p("multi.bin"), data(1 << 20))
        try Disk.mkdir(p("big"))
        try Disk.mkdir(p("big/nested"))
        try Disk.mkdir(p("big/nested/deep"))
        try Disk.write(p("big/nested/deep/file.py"), Array("print('hello')\n".utf8))
        try Disk.write(p("big/tool"), Array("#!/bin/sh\necho hi\n".utf8), mode: 0o755)
        try Disk.writeSparse(p("sparse.img"), size: sparseSize,
                             data: [(1 << 20, data(10_000)), (30 << 20 + 123, data(100_000)), (sparseSize - 5000, data(5000))])
        try FS.symlink(target: Array("/usr/bin/python3".utf8), at: p("abs-link"))
        try FS.symlink(target: Array("big/nested/deep/file.py".utf8), at: p("rel-link"))
        try FS.symlink(target: Array("nope/missing".utf8), at: p("dangling"))
        try FS.symlink(target: Array("big".utf8), at: p("dir-link"))
        try Disk.write(p("hard-a"), data(70_000))
        try FS.link(p("hard-a"), p("big/hard-b"))
        try FS.link(p("hard-a"), p("big/nested/hard-c"))
        try Disk.write(p("secret"), Array("token\n".utf8), mode: 0o600)
        try Disk.mkdir(p("private"), mode: 0o700)
        try Disk.write(p("private/key"), data(300))
        try Disk.mkdir(p("empty-dir"))
        try Disk.mkdir(p("dir with spaces"))
        try Disk.write(p("dir with spaces/with space.txt"), Array("spaced\n".utf8))
        try Disk.write(p("ünïcødé-文件.py"), Array("# unicode\n".utf8))
        try Disk.write(root.appendingComponent(invalidUTF8), data(2000))
        for f in ["one", "abs-link", "big/nested"] { try FS.setMtime(p(f), ns: fixedMtimeNs) }
    }

    /// Every path under `root` (relative, root excluded), depth first.
    static func walk(_ root: PathBytes) throws -> [PathBytes] {
        var out: [PathBytes] = []
        func visit(_ rel: PathBytes) throws {
            let abs = rel.isEmpty ? root : root.appendingComponent(rel)
            for name in try FS.listDirectory(abs).sorted(by: { compareBytes($0, $1) < 0 }) {
                let child = rel.isEmpty ? name : rel.appendingComponent(name)
                out.append(child)
                if try FS.lstat(root.appendingComponent(child)).kind == .directory { try visit(child) }
            }
        }
        try visit([])
        return out
    }
}

/// A published tree served by EnvFilesystem from a fresh cache.
final class Mounted: Sendable {
    let store: MemoryStore
    let cacheDir: TempDir
    let cache: ChunkCache
    let manifest: Manifest
    let fs: EnvFilesystem
    let result: PublishResult

    init(source: String, store: MemoryStore = MemoryStore(), env: String = "test", chunking: ChunkingParams = smallChunking) throws {
        self.store = store
        var options = PublishOptions(env: env)
        options.chunking = chunking
        options.workers = 2
        result = try Publisher(store: store, options: options, warn: { _ in }).publish(source: source)
        let ref = try Ref.decode(try store.get(Ref.objectKey(env: env)))
        manifest = try Manifest.decode(try store.get(Ref.manifestKey(ref.manifest)))
        cacheDir = try TempDir("cache")
        cache = try ChunkCache(directory: cacheDir.path, durable: false)
        fs = EnvFilesystem(manifest: manifest, fetcher: ChunkFetcher(store: store, cache: cache, manifest: manifest))
    }

    deinit { cacheDir.remove() }

    /// The inode of a relative path, by lookups from the root.
    func ino(_ path: PathBytes) throws -> UInt64 {
        var ino: UInt64 = 1
        for comp in path.split(separator: UInt8(ascii: "/")) { ino = try fs.lookup(parent: ino, name: comp).ino }
        return ino
    }

    func ino(_ path: String) throws -> UInt64 { try ino(path.pathBytes) }

    /// One read, whichever way EnvFilesystem answers it.
    func read(_ ino: UInt64, offset: UInt64, size: Int) throws -> [UInt8] {
        switch try fs.read(ino, offset: offset, size: size) {
        case let .bytes(b):
            return b
        case let .file(fd, offset, length):
            defer { fd.close() }
            let b = try fd.read(count: length, offset: offset)
            XCTAssertEqual(b.count, length, "cache file shorter than the reply")
            return b
        }
    }

    /// The whole file in reads of `step` bytes, as the kernel would ask.
    func readAll(_ ino: UInt64, step: Int = 128 << 10) throws -> [UInt8] {
        var out: [UInt8] = []
        while true {
            let b = try read(ino, offset: UInt64(out.count), size: step)
            if b.isEmpty { return out }
            out += b
        }
    }

    /// Where chunk `k` sits in file `ino`: the file offset and length of its first span.
    func span(ofChunk k: UInt32, inFile ino: UInt64) -> (offset: UInt64, length: Int)? {
        var off: UInt64 = 0
        for s in manifest.fileSpans(Int(ino) - 1) {
            let span = manifest.spans[s]
            if span.chunk == k { return (off, Int(span.length)) }
            off += UInt64(span.length)
        }
        return nil
    }

    /// Chunk table indexes of the file at `path`.
    func chunks(_ path: String) throws -> Set<UInt32> {
        Set(fs.chunks(ofEntry: Int(try ino(path)) - 1))
    }
}

/// The FSError a throwing call raised, or nil.
func fsError(_ body: () throws -> Void) -> FSError? {
    do { try body(); return nil } catch let e as FSError { return e } catch { XCTFail("not an FSError: \(error)"); return nil }
}
