// EnvFS: the mounted tree in pure Swift, with no FUSE types, so it is tested without a mount.
// Inode n is manifest entry n-1 (the root is inode 1); the names of a hardlinked file all
// answer with the inode of the entry that owns its data. The tree never changes, so nothing
// here takes a lock except the chunk fetcher.
import Glibc
import SysKit
import EnvFetch
import EnvFormat

public final class EnvFilesystem: Sendable {
    public struct Attributes: Sendable, Equatable {
        public var ino: UInt64
        public var kind: Manifest.Kind
        public var mode: UInt32       // permission bits only
        public var nlink: UInt32
        public var uid: UInt32
        public var gid: UInt32
        public var size: UInt64
        public var mtimeNs: Int64
    }

    /// A read's answer: bytes, or a range of an open cache file the caller replies from and closes.
    public enum ReadResult {
        case bytes([UInt8])
        case file(FileDescriptor, offset: UInt64, length: Int)
    }

    public let manifest: Manifest
    public let fetcher: ChunkFetcher
    /// Offset of each span within its file (spans of one file are contiguous).
    let spanFileOffsets: [UInt64]
    /// Link count per inode-owning entry.
    let linkCount: [UInt32]
    /// Optional observer of chunk reads (access profiles).
    let onChunkRead: (@Sendable (UInt32) -> Void)?
    let readAhead: ReadAhead?
    /// Files and symlinks presented with the mount path in place of the source path (nil: as published).
    public let relocated: RelocatedFiles?

    public init(manifest: Manifest, fetcher: ChunkFetcher, pool: FetchPool? = nil,
                readAhead: ReadAheadConfig? = ReadAheadConfig(),
                relocated: RelocatedFiles? = nil,
                onChunkRead: (@Sendable (UInt32) -> Void)? = nil) {
        self.manifest = manifest
        self.relocated = relocated
        self.fetcher = fetcher
        self.onChunkRead = onChunkRead
        self.readAhead = readAhead.map { ReadAhead(config: $0, fetcher: fetcher, pool: pool) }
        var offsets = [UInt64](repeating: 0, count: manifest.spans.count)
        var links = [UInt32](repeating: 1, count: manifest.entries.count)
        for (i, e) in manifest.entries.enumerated() {
            switch e.kind {
            case .regular:
                if e.owner == UInt32(i) {
                    var off: UInt64 = 0
                    for s in Int(e.first)..<Int(e.first) + Int(e.count) {
                        offsets[s] = off
                        off += UInt64(manifest.spans[s].length)
                    }
                } else {
                    links[Int(e.owner)] += 1
                }
            case .directory:
                var subdirs: UInt32 = 0
                for c in manifest.children(i) where manifest.entries[c].kind == .directory { subdirs += 1 }
                links[i] = 2 + subdirs
            case .symlink:
                break
            }
        }
        spanFileOffsets = offsets
        linkCount = links
    }

    @inline(__always)
    func index(_ ino: UInt64) throws(FSError) -> Int {
        guard ino >= 1, ino <= UInt64(manifest.entries.count) else { throw .notFound }
        return Int(ino - 1)
    }

    func attributes(index i: Int) -> Attributes {
        let e = manifest.entries[i]
        let owner = e.kind == .regular ? Int(e.owner) : i
        let o = manifest.entries[owner]
        var size = o.kind == .symlink ? UInt64(o.count) : o.size
        if let r = relocated {
            if o.kind == .symlink, let t = r.symlinkTarget(owner) { size = UInt64(t.count) }
            if r.has(owner) { size = r.size(owner, published: o.size) }
        }
        return Attributes(ino: UInt64(owner + 1), kind: o.kind, mode: o.mode, nlink: linkCount[owner],
                          uid: o.uid, gid: o.gid, size: size, mtimeNs: o.mtimeNs)
    }

    public func getattr(_ ino: UInt64) throws(FSError) -> Attributes {
        attributes(index: try index(ino))
    }

    public func lookup(parent: UInt64, name: some Collection<UInt8>) throws(FSError) -> Attributes {
        let p = try index(parent)
        guard manifest.entries[p].kind == .directory else { throw .notDirectory }
        guard let c = manifest.lookup(p, name) else { throw .notFound }
        return attributes(index: c)
    }

    public func readlink(_ ino: UInt64) throws(FSError) -> [UInt8] {
        let i = try index(ino)
        guard manifest.entries[i].kind == .symlink else { throw .notSymlink }
        return relocated?.symlinkTarget(i) ?? manifest.symlinkTarget(i)
    }

    public func open(_ ino: UInt64, writable: Bool) throws(FSError) {
        let i = try index(ino)
        if manifest.entries[i].kind == .directory { throw .isDirectory }
        if writable { throw .readOnly }
    }

    /// Entries of a directory from position `from` (0 and 1 are `.` and `..`); `emit` returns
    /// false when the caller's buffer is full.
    public func readdir(_ ino: UInt64, from: Int,
                        _ emit: (_ name: ArraySlice<UInt8>, _ ino: UInt64, _ kind: Manifest.Kind, _ next: Int) -> Bool) throws(FSError) {
        let i = try index(ino)
        guard manifest.entries[i].kind == .directory else { throw .notDirectory }
        var pos = max(from, 0)
        if pos == 0 {
            if !emit([0x2e][...], ino, .directory, 1) { return }
            pos = 1
        }
        if pos == 1 {
            if !emit([0x2e, 0x2e][...], UInt64(manifest.entries[i].parent) + 1, .directory, 2) { return }
            pos = 2
        }
        let kids = manifest.children(i)
        // A caller may seek a directory anywhere (lseek to near Int.max): past the end is empty.
        guard pos - 2 < kids.count else { return }
        var c = kids.lowerBound + (pos - 2)
        while c < kids.upperBound {
            let a = attributes(index: c)
            if !emit(manifest.name(c), a.ino, a.kind, pos + 1) { return }
            c += 1
            pos += 1
        }
    }

    /// Reads up to `size` bytes at `offset` of the file as presented (relocated or published).
    public func read(_ ino: UInt64, offset: UInt64, size: Int) throws(FSError) -> ReadResult {
        let i = try index(ino)
        let owner = Int(manifest.entries[i].owner)
        if let r = relocated, r.has(owner) {
            return .bytes(try r.read(owner, offset: offset, count: size, publishedSize: manifest.entries[owner].size,
                                     path: self.path(ino)) { (off: UInt64, n: Int) throws(FSError) -> [UInt8] in
                try self.publishedBytes(ino, offset: off, size: n)
            })
        }
        return try readPublished(ino, offset: offset, size: size)
    }

    /// The whole file, when it lies in one chunk that this process has verified and that is still
    /// cached, so serving it waits for nothing; nil otherwise, and for relocated files (they are
    /// assembled per read). Not recorded as an access: a profile holds what the workload read,
    /// not what was offered to the kernel.
    public func contentsAtHand(_ ino: UInt64) -> (fd: FileDescriptor, offset: UInt64, length: Int)? {
        guard let i = try? index(ino) else { return nil }
        let owner = Int(manifest.entries[i].owner)
        let e = manifest.entries[owner]
        guard e.kind == .regular, e.size > 0, e.count == 1, !(relocated?.has(owner) ?? false) else { return nil }
        let span = manifest.spans[Int(e.first)]
        guard span.chunk != Manifest.Span.zeros, UInt64(span.length) == e.size,
              let fd = fetcher.openAtHand(span.chunk) else { return nil }
        return (fd, UInt64(span.offset), Int(e.size))
    }

    /// The published bytes, copied out of a cache file when the read path answers with one.
    func publishedBytes(_ ino: UInt64, offset: UInt64, size: Int) throws(FSError) -> [UInt8] {
        switch try readPublished(ino, offset: offset, size: size) {
        case let .bytes(b): return b
        case let .file(fd, off, len):
            defer { fd.close() }
            do { return try fd.read(count: len, offset: off) } catch { throw FSError.io("reading cached chunk for \(path(ino)): \(error)") }
        }
    }

    /// Reads up to `size` bytes at `offset` as published. A read inside one chunk is answered
    /// with the cache file itself (the FUSE layer can splice it); others are assembled into a buffer.
    func readPublished(_ ino: UInt64, offset: UInt64, size: Int) throws(FSError) -> ReadResult {
        let i = try index(ino)
        let e = manifest.entries[Int(manifest.entries[i].owner)]
        guard e.kind == .regular else { throw .isDirectory }
        if offset >= e.size || size <= 0 { return .bytes([]) }
        let want = Int(min(UInt64(size), e.size - offset))
        let spans = Int(e.first)..<Int(e.first) + Int(e.count)
        // Last span starting at or before `offset`.
        var lo = spans.lowerBound, hi = spans.upperBound
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if spanFileOffsets[mid] <= offset { lo = mid } else { hi = mid }
        }
        let first = manifest.spans[lo]
        let within = offset - spanFileOffsets[lo]
        if let ra = readAhead, spans.count > 1 {
            var last = lo
            while last + 1 < spans.upperBound && spanFileOffsets[last + 1] < offset + UInt64(want) { last += 1 }
            ra.observe(ino: ino, offset: offset, length: want, lastSpan: last, spans: spans, manifest: manifest)
        }
        if first.chunk != Manifest.Span.zeros && within + UInt64(want) <= UInt64(first.length) {
            onChunkRead?(first.chunk)
            switch try fetcher.open(first.chunk) {
            case let .file(fd):
                return .file(fd, offset: UInt64(first.offset) + within, length: want)
            case let .memory(bytes):
                let start = Int(first.offset) + Int(within)
                return .bytes(Array(bytes[start..<start + want]))
            }
        }
        var out = [UInt8](repeating: 0, count: want)
        var done = 0
        var s = lo
        var skip = within
        while done < want && s < spans.upperBound {
            let span = manifest.spans[s]
            let n = min(Int(UInt64(span.length) - skip), want - done)
            if span.chunk != Manifest.Span.zeros {
                onChunkRead?(span.chunk)
                try fetcher.read(span.chunk, offset: span.offset + UInt32(skip), count: n, into: &out, at: done)
            }
            done += n
            skip = 0
            s += 1
        }
        return .bytes(out)
    }

    /// The chunks holding a file's bytes, in file order (for warm and read-ahead).
    public func chunks(ofEntry i: Int) -> [UInt32] {
        manifest.fileSpans(i).compactMap { manifest.spans[$0].chunk == Manifest.Span.zeros ? nil : manifest.spans[$0].chunk }
    }

    /// Path of an inode, for log lines.
    public func path(_ ino: UInt64) -> String {
        guard let i = try? index(ino) else { return "?" }
        return "/" + String(decoding: manifest.path(i), as: UTF8.self)
    }
}
