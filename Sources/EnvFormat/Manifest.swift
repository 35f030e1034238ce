/// The description of one published tree. Entries are in breadth-first order with each
/// directory's children contiguous and sorted by name bytes, so a lookup is a binary search and
/// an entry's index is its inode (index + 1; the root is index 0, FUSE's inode 1).
public struct Manifest: Sendable {
    public enum Kind: UInt8, Sendable { case directory = 1, regular = 2, symlink = 3 }

    public struct ChunkRecord: Sendable, Equatable {
        public var id: ChunkID
        public var rawSize: UInt32
        public var storedSize: UInt32
        public init(id: ChunkID, rawSize: UInt32, storedSize: UInt32) {
            self.id = id; self.rawSize = rawSize; self.storedSize = storedSize
        }
    }

    /// A run of a regular file's bytes: `length` bytes at `offset` in chunk `chunk`, or zeros
    /// when `chunk == Span.zeros` (a hole in a sparse source).
    public struct Span: Sendable, Equatable {
        public static let zeros = UInt32.max
        public var chunk: UInt32
        public var offset: UInt32
        public var length: UInt32
        public init(chunk: UInt32, offset: UInt32, length: UInt32) {
            self.chunk = chunk; self.offset = offset; self.length = length
        }
    }

    public struct Entry: Sendable, Equatable {
        public var parent: UInt32
        public var nameStart: UInt32      // into `names`
        public var nameLength: UInt16
        public var kind: Kind
        public var mode: UInt32           // permission bits (07777)
        public var uid: UInt32
        public var gid: UInt32
        public var mtimeNs: Int64
        public var size: UInt64
        /// directory: first child; regular: first span; symlink: target start in `names`.
        public var first: UInt32
        /// directory: child count; regular: span count; symlink: target length.
        public var count: UInt32
        /// regular: the entry that owns the data and the inode (itself unless a hardlink).
        public var owner: UInt32
    }

    /// Written by this envmount; 1 (no relocation records) is still read.
    public static let formatVersion: UInt32 = 2
    public static let readableVersions: ClosedRange<UInt32> = 1...2

    public var chunking: ChunkingParams
    /// The path the tree was published from (a venv's scripts name it in their shebangs).
    public var sourcePath: [UInt8]
    /// Free-form facts such as `python.home` and `python.version`, sorted by key.
    public var metadata: [(key: String, value: String)]
    public var chunks: [ChunkRecord]
    public var entries: [Entry]
    public var names: [UInt8]
    public var spans: [Span]
    /// Where the tree names its source path (format 2; empty in format 1).
    public var relocation: Relocation

    public init(chunking: ChunkingParams, sourcePath: [UInt8], metadata: [(key: String, value: String)],
                chunks: [ChunkRecord], entries: [Entry], names: [UInt8], spans: [Span],
                relocation: Relocation = Relocation()) {
        self.relocation = relocation
        self.chunking = chunking
        self.sourcePath = sourcePath
        self.metadata = metadata
        self.chunks = chunks
        self.entries = entries
        self.names = names
        self.spans = spans
    }

    public func metadataValue(_ key: String) -> String? {
        metadata.first { $0.key == key }?.value
    }

    public func name(_ i: Int) -> ArraySlice<UInt8> {
        let e = entries[i]
        return names[Int(e.nameStart)..<Int(e.nameStart) + Int(e.nameLength)]
    }

    public func symlinkTarget(_ i: Int) -> [UInt8] {
        let e = entries[i]
        precondition(e.kind == .symlink)
        return Array(names[Int(e.first)..<Int(e.first) + Int(e.count)])
    }

    public func children(_ i: Int) -> Range<Int> {
        let e = entries[i]
        guard e.kind == .directory else { return 0..<0 }
        return Int(e.first)..<Int(e.first) + Int(e.count)
    }

    public func fileSpans(_ i: Int) -> Range<Int> {
        let e = entries[Int(entries[i].owner)]
        guard e.kind == .regular else { return 0..<0 }
        return Int(e.first)..<Int(e.first) + Int(e.count)
    }

    /// Binary search of a directory's sorted children.
    public func lookup(_ dir: Int, _ name: some Collection<UInt8>) -> Int? {
        var r = children(dir)
        while !r.isEmpty {
            let mid = r.lowerBound + r.count / 2
            let c = compareBytes(self.name(mid), name)
            if c == 0 { return mid }
            if c < 0 { r = mid + 1..<r.upperBound } else { r = r.lowerBound..<mid }
        }
        return nil
    }

    /// Path of entry `i` relative to the root, for messages.
    public func path(_ i: Int) -> [UInt8] {
        var parts: [ArraySlice<UInt8>] = []
        var cur = i
        var guardCount = 0
        while cur != 0 && guardCount < 4096 {
            parts.append(name(cur))
            cur = Int(entries[cur].parent)
            guardCount += 1
        }
        var out: [UInt8] = []
        for p in parts.reversed() {
            if !out.isEmpty { out.append(UInt8(ascii: "/")) }
            out.append(contentsOf: p)
        }
        return out
    }

    /// Resolves a slash-separated path relative to the root, not following symlinks.
    public func resolve(_ path: [UInt8]) -> Int? {
        var cur = 0
        for comp in path.split(separator: UInt8(ascii: "/")) where !comp.isEmpty {
            guard let next = lookup(cur, comp) else { return nil }
            cur = next
        }
        return cur
    }

    /// Number of names that refer to each inode owner (hardlink count), for regular files.
    public func linkCounts() -> [UInt32: UInt32] {
        var counts: [UInt32: UInt32] = [:]
        for (i, e) in entries.enumerated() where e.kind == .regular && e.owner != UInt32(i) {
            counts[e.owner, default: 1] += 1
        }
        return counts
    }

    public var totalFileBytes: UInt64 {
        var t: UInt64 = 0
        for (i, e) in entries.enumerated() where e.kind == .regular && e.owner == UInt32(i) { t += e.size }
        return t
    }
}

/// Lexicographic comparison of byte strings (the order of a directory's children).
public func compareBytes(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Int {
    var ia = a.makeIterator()
    var ib = b.makeIterator()
    while true {
        switch (ia.next(), ib.next()) {
        case (nil, nil): return 0
        case (nil, _): return -1
        case (_, nil): return 1
        case let (x?, y?): if x != y { return x < y ? -1 : 1 }
        }
    }
}
