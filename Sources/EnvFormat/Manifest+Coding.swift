import SysKit

// Manifest object layout (all integers little-endian):
//
//   "ENVMNFST" u32 version(2; 1 is read) u32 flags(0) u64 bodySize   then one zstd frame of the body
//
// body:
//   chunking: u32 min, u32 avg, u32 max
//   sourcePath: u32 len + bytes
//   metadata: u64 n, n × (u32 len + key, u32 len + value)
//   chunks:   u64 n, n × (32-byte SHA-256, u32 rawSize, u32 storedSize)
//   names:    u32 len + bytes (entry names and symlink targets)
//   entries:  u64 n, n × (u32 parent, u32 nameStart, u16 nameLength, u8 kind, u32 mode, u32 uid,
//             u32 gid, i64 mtimeNs, u64 size, u32 first, u32 count, u32 owner)
//   spans:    u64 n, n × (u32 chunk, u32 offset, u32 length)
//   relocation (version 2 only): see Relocation.swift

extension Manifest {
    static let magic = Array("ENVMNFST".utf8)
    static let entryRecordSize = 4 + 4 + 2 + 1 + 4 + 4 + 4 + 8 + 8 + 4 + 4 + 4
    /// Refuse manifests that would expand beyond this (a 1M-entry venv is ~100 MB).
    public static let maxBodySize = 1 << 30

    public func encode(level: Int32 = 9) throws -> [UInt8] {
        var w = ByteWriter()
        w.u32(UInt32(chunking.minSize)); w.u32(UInt32(chunking.avgSize)); w.u32(UInt32(chunking.maxSize))
        w.blob(sourcePath)
        w.u64(UInt64(metadata.count))
        for (k, v) in metadata { w.blob(Array(k.utf8)); w.blob(Array(v.utf8)) }
        w.u64(UInt64(chunks.count))
        for c in chunks { w.raw(c.id.bytes); w.u32(c.rawSize); w.u32(c.storedSize) }
        w.blob(names)
        w.u64(UInt64(entries.count))
        for e in entries {
            w.u32(e.parent); w.u32(e.nameStart); w.u16(e.nameLength); w.u8(e.kind.rawValue)
            w.u32(e.mode); w.u32(e.uid); w.u32(e.gid); w.i64(e.mtimeNs); w.u64(e.size)
            w.u32(e.first); w.u32(e.count); w.u32(e.owner)
        }
        w.u64(UInt64(spans.count))
        for s in spans { w.u32(s.chunk); w.u32(s.offset); w.u32(s.length) }
        relocation.encode(into: &w)

        var out = ByteWriter()
        out.raw(Manifest.magic)
        out.u32(Manifest.formatVersion)
        out.u32(0)
        out.u64(UInt64(w.bytes.count))
        out.raw(try Zstd.compress(w.bytes, level: level))
        return out.bytes
    }

    /// Decodes and validates a manifest object. Nothing in a refused input is trusted: every
    /// count, offset, index and name is checked before use.
    public static func decode(_ object: [UInt8]) throws -> Manifest {
        var h = ByteReader(object)
        guard object.count >= 24, try h.raw(8, "magic") == magic else {
            throw FormatError("not an envmount manifest (bad magic)")
        }
        let version = try h.u32("version")
        guard readableVersions.contains(version) else {
            throw FormatError("manifest format version \(version) is not supported (this envmount reads versions \(readableVersions.lowerBound)-\(readableVersions.upperBound))")
        }
        _ = try h.u32("flags")
        let bodySize = try h.u64("body size")
        guard bodySize <= UInt64(maxBodySize) else { throw FormatError("manifest body of \(bodySize) bytes is too large") }
        let compressed = Array(object[h.pos...])
        // A tiny object claiming a huge body is refused before anything is allocated for it
        // (real manifests compress about 5-20x).
        guard bodySize <= UInt64(compressed.count) * 1000 else {
            throw FormatError("manifest claims a \(bodySize)-byte body in \(compressed.count) compressed bytes")
        }
        let body: [UInt8]
        do {
            body = try Zstd.decompress(compressed, expectedSize: Int(bodySize))
        } catch {
            throw FormatError("manifest body does not decompress: \(error)")
        }
        var r = ByteReader(body)
        let chunking = ChunkingParams(minSize: Int(try r.u32("chunking")), avgSize: Int(try r.u32("chunking")),
                                      maxSize: Int(try r.u32("chunking")))
        guard chunking.isValid else { throw FormatError("invalid chunking parameters") }
        let sourcePath = try r.blob("source path", max: 4096)
        var metadata: [(key: String, value: String)] = []
        for _ in 0..<(try r.count("metadata", minRecord: 8)) {
            let k = try r.blob("metadata key", max: 1 << 16)
            let v = try r.blob("metadata value", max: 1 << 20)
            metadata.append((String(decoding: k, as: UTF8.self), String(decoding: v, as: UTF8.self)))
        }
        let chunkCount = try r.count("chunks", minRecord: 40)
        guard chunkCount < Int(Span.zeros) else { throw FormatError("too many chunks") }
        var chunks: [ChunkRecord] = []
        chunks.reserveCapacity(chunkCount)
        for _ in 0..<chunkCount {
            let id = ChunkID(bytes: try r.raw(32, "chunk id"))
            let raw = try r.u32("chunk size"), stored = try r.u32("chunk size")
            guard raw <= UInt32(chunking.maxSize), raw > 0 else { throw FormatError("chunk \(id) has invalid size \(raw)") }
            chunks.append(ChunkRecord(id: id, rawSize: raw, storedSize: stored))
        }
        let names = try r.blob("names", max: maxBodySize)
        let entryCount = try r.count("entries", minRecord: entryRecordSize)
        guard entryCount >= 1, entryCount < Int(UInt32.max) else { throw FormatError("a manifest needs a root entry") }
        var entries: [Entry] = []
        entries.reserveCapacity(entryCount)
        for _ in 0..<entryCount {
            let parent = try r.u32("parent"), nameStart = try r.u32("name"), nameLength = try r.u16("name")
            guard let kind = Kind(rawValue: try r.u8("kind")) else { throw FormatError("unknown entry kind") }
            entries.append(Entry(parent: parent, nameStart: nameStart, nameLength: nameLength, kind: kind,
                                 mode: try r.u32("mode") & 0o7777, uid: try r.u32("uid"), gid: try r.u32("gid"),
                                 mtimeNs: try r.i64("mtime"), size: try r.u64("size"),
                                 first: try r.u32("first"), count: try r.u32("count"), owner: try r.u32("owner")))
        }
        let spanCount = try r.count("spans", minRecord: 12)
        var spans: [Span] = []
        spans.reserveCapacity(spanCount)
        for _ in 0..<spanCount {
            spans.append(Span(chunk: try r.u32("span"), offset: try r.u32("span"), length: try r.u32("span")))
        }
        let relocation = version >= 2 ? try Relocation.decode(from: &r) : Relocation()
        guard r.remaining == 0 else { throw FormatError("\(r.remaining) unexpected bytes after the manifest") }
        let m = Manifest(chunking: chunking, sourcePath: sourcePath, metadata: metadata, chunks: chunks,
                         entries: entries, names: names, spans: spans, relocation: relocation)
        try m.validate()
        try relocation.validate(m)
        return m
    }

    /// The structural checks a mount relies on: a tree rooted at entry 0 where every entry is
    /// the child of exactly one directory, sorted unique names of 1-255 bytes without `/`, NUL,
    /// `.` or `..`, spans inside their chunks adding up to each file's size, each file's spans
    /// its own range (in entry order, none shared, none left over), hardlinks to regular files.
    public func validate() throws {
        let n = entries.count
        guard entries[0].kind == .directory, entries[0].parent == 0 else { throw FormatError("entry 0 must be the root directory") }
        func bad(_ i: Int, _ why: String) -> FormatError { FormatError("manifest entry \(i): \(why)") }
        var expectedParent = [UInt32](repeating: UInt32.max, count: n)
        expectedParent[0] = 0
        var nextChild = 1
        // Each file's spans are its own range, and the ranges follow one another in entry order
        // with nothing between them: EnvFilesystem keeps one file offset per span, so a span
        // that two files shared would answer with the offsets of one of them.
        var nextSpan = 0
        for i in 1..<max(n, 1) {
            let ns = Int(entries[i].nameStart), nl = Int(entries[i].nameLength)
            guard nl > 0, ns + nl <= names.count else { throw bad(i, "name out of range") }
            guard nl <= 255 else { throw bad(i, "name of \(nl) bytes is longer than 255") }
            let nm = names[ns..<ns + nl]
            if nm.contains(0) || nm.contains(UInt8(ascii: "/")) { throw bad(i, "name contains NUL or '/'") }
            if nm.elementsEqual([0x2e]) || nm.elementsEqual([0x2e, 0x2e]) { throw bad(i, "name is '.' or '..'") }
        }
        for i in 0..<n {
            let e = entries[i]
            // UInt32.max marks "listed by no directory yet", so it must not match a stored parent.
            guard expectedParent[i] == e.parent, expectedParent[i] != UInt32.max else { throw bad(i, "not in its parent's child range") }
            // fileSpans() and readers index entries with `owner` whatever the kind.
            guard e.kind == .regular || e.owner == UInt32(i) else { throw bad(i, "owner of a directory or symlink is not itself") }
            switch e.kind {
            case .directory:
                let first = Int(e.first), count = Int(e.count)
                if count > 0 {
                    // Breadth-first order: each directory's children follow the previous one's.
                    guard first == nextChild, first + count <= n else {
                        throw bad(i, "child range \(first)+\(count) out of order or out of range")
                    }
                    for c in first..<first + count {
                        expectedParent[c] = UInt32(i)
                        if c > first && compareBytes(name(c - 1), name(c)) >= 0 { throw bad(c, "names not sorted or repeated") }
                    }
                    nextChild = first + count
                }
            case .symlink:
                guard Int(e.first) + Int(e.count) <= names.count, e.count > 0, e.count <= 4096 else { throw bad(i, "symlink target out of range") }
                if names[Int(e.first)..<Int(e.first) + Int(e.count)].contains(0) { throw bad(i, "symlink target contains NUL") }
            case .regular:
                guard Int(e.owner) < n, entries[Int(e.owner)].kind == .regular else { throw bad(i, "hardlink owner invalid") }
                if e.owner != UInt32(i) {
                    let o = entries[Int(e.owner)]
                    guard o.owner == e.owner, o.size == e.size else { throw bad(i, "hardlink owner is itself a link or differs in size") }
                    continue
                }
                guard Int(e.first) + Int(e.count) <= spans.count else { throw bad(i, "spans out of range") }
                if e.count > 0 {
                    guard Int(e.first) == nextSpan else {
                        throw bad(i, "spans \(e.first)+\(e.count) do not follow the previous file's (next is \(nextSpan)): shared or out of order")
                    }
                    nextSpan += Int(e.count)
                }
                var total: UInt64 = 0
                for s in spans[Int(e.first)..<Int(e.first) + Int(e.count)] {
                    if s.chunk != Span.zeros {
                        guard Int(s.chunk) < chunks.count else { throw bad(i, "span names chunk \(s.chunk) of \(chunks.count)") }
                        guard UInt64(s.offset) + UInt64(s.length) <= UInt64(chunks[Int(s.chunk)].rawSize) else {
                            throw bad(i, "span passes the end of its chunk")
                        }
                    }
                    guard s.length > 0 else { throw bad(i, "empty span") }
                    total += UInt64(s.length)
                }
                guard total == e.size else { throw bad(i, "spans add up to \(total) bytes, size is \(e.size)") }
            }
        }
        guard nextChild == n else { throw FormatError("manifest has \(n - nextChild) entries outside the tree") }
        guard nextSpan == spans.count else { throw FormatError("manifest has \(spans.count - nextSpan) spans no file uses") }
    }
}
