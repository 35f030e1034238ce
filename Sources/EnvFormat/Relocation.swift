// Relocation records: where a published tree names the path it was built at, found once at
// publish so that a mount at another path can present those bytes rewritten without scanning.
//
// A prefix is an absolute path the tree names (the source path; with --with-python also the
// base interpreter's installation) and where it lives inside the tree ("" = the root). A mount at
// M presents prefix p as M + "/" + p.to. Files with no NUL byte are text: every occurrence is
// replaced, whatever the new length. Other files are binary: an occurrence is rewritten inside
// its C string, NUL-padded at the string's end, only when the new path is not longer. ELF
// RPATH/RUNPATH entries naming a directory inside the tree are fixed patches ($ORIGIN-relative,
// same length), independent of the mount path.

public struct Relocation: Sendable, Equatable {
    public struct Prefix: Sendable, Equatable {
        /// The absolute path as the tree's files spell it.
        public var from: [UInt8]
        /// Where that path's contents sit in the tree, relative to the root ("" = the root).
        public var to: [UInt8]
        public init(from: [UInt8], to: [UInt8]) { self.from = from; self.to = to }
    }

    public enum FileKind: UInt8, Sendable { case text = 1, binary = 2 }

    public struct Occurrence: Sendable, Equatable {
        public var offset: UInt64
        public var prefix: UInt8
        /// Binary files: offset of the NUL that ends the C string holding the occurrence (0: no
        /// NUL within 4 KiB, so only a same-length path can be written). Text files: 0.
        public var stringEnd: UInt64
        public init(offset: UInt64, prefix: UInt8, stringEnd: UInt64 = 0) {
            self.offset = offset; self.prefix = prefix; self.stringEnd = stringEnd
        }
    }

    public struct File: Sendable, Equatable {
        public var entry: UInt32
        public var kind: FileKind
        /// Text files starting with `#!` whose interpreter holds a prefix: where the interpreter
        /// path starts and ends, and the end of the first line (offset of its `\n`); 0 otherwise.
        public var shebangStart: UInt32
        public var shebangInterpreterEnd: UInt32
        public var shebangLineEnd: UInt32
        public var occurrences: [Occurrence]
        public init(entry: UInt32, kind: FileKind, shebangStart: UInt32 = 0, shebangInterpreterEnd: UInt32 = 0,
                    shebangLineEnd: UInt32 = 0, occurrences: [Occurrence]) {
            self.entry = entry; self.kind = kind; self.shebangStart = shebangStart
            self.shebangInterpreterEnd = shebangInterpreterEnd
            self.shebangLineEnd = shebangLineEnd; self.occurrences = occurrences
        }
        public var hasShebang: Bool { shebangLineEnd != 0 }
    }

    public struct Symlink: Sendable, Equatable {
        public var entry: UInt32
        public var prefix: UInt8
        public init(entry: UInt32, prefix: UInt8) { self.entry = entry; self.prefix = prefix }
    }

    /// Bytes to present at `offset` of a file in place of the published ones (same length).
    public struct Patch: Sendable, Equatable {
        public var entry: UInt32
        public var offset: UInt64
        public var bytes: [UInt8]
        public init(entry: UInt32, offset: UInt64, bytes: [UInt8]) { self.entry = entry; self.offset = offset; self.bytes = bytes }
    }

    public static let maxPrefixes = 8
    public static let maxPathLength = 4096
    /// How far past an occurrence the publish scan looks for the NUL ending its C string.
    public static let maxStringLength = 4096

    public var prefixes: [Prefix] = []
    public var files: [File] = []          // sorted by entry
    public var symlinks: [Symlink] = []    // sorted by entry
    public var patches: [Patch] = []       // sorted by (entry, offset)

    public init(prefixes: [Prefix] = [], files: [File] = [], symlinks: [Symlink] = [], patches: [Patch] = []) {
        self.prefixes = prefixes; self.files = files; self.symlinks = symlinks; self.patches = patches
    }

    public var isEmpty: Bool { files.isEmpty && symlinks.isEmpty && patches.isEmpty }

    /// Whether a byte right after a match continues a file name (so "/a/venv" does not match
    /// in "/a/venv2" or "/a/venv.old").
    public static func continuesName(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x5f || b == 0x2d || b == 0x2e
    }
}

// Encoding (manifest format 2, after the spans):
//   u32 nPrefixes, n × (blob from, blob to)
//   u64 nFiles, n × (u32 entry, u8 kind, u32 shebangStart, u32 shebangInterpreterEnd, u32 shebangLineEnd,
//                    u64 nOcc, nOcc × (u64 offset, u8 prefix, u64 stringEnd))
//   u64 nSymlinks, n × (u32 entry, u8 prefix)
//   u64 nPatches, n × (u32 entry, u64 offset, blob bytes)
extension Relocation {
    func encode(into w: inout ByteWriter) {
        w.u32(UInt32(prefixes.count))
        for p in prefixes { w.blob(p.from); w.blob(p.to) }
        w.u64(UInt64(files.count))
        for f in files {
            w.u32(f.entry); w.u8(f.kind.rawValue); w.u32(f.shebangStart); w.u32(f.shebangInterpreterEnd); w.u32(f.shebangLineEnd)
            w.u64(UInt64(f.occurrences.count))
            for o in f.occurrences { w.u64(o.offset); w.u8(o.prefix); w.u64(o.stringEnd) }
        }
        w.u64(UInt64(symlinks.count))
        for s in symlinks { w.u32(s.entry); w.u8(s.prefix) }
        w.u64(UInt64(patches.count))
        for p in patches { w.u32(p.entry); w.u64(p.offset); w.blob(p.bytes) }
    }

    static func decode(from r: inout ByteReader) throws -> Relocation {
        var rel = Relocation()
        let np = Int(try r.u32("relocation prefixes"))
        guard np <= maxPrefixes else { throw FormatError("relocation: \(np) prefixes (at most \(maxPrefixes))") }
        for _ in 0..<np {
            rel.prefixes.append(Prefix(from: try r.blob("relocation prefix", max: maxPathLength),
                                       to: try r.blob("relocation prefix", max: maxPathLength)))
        }
        for _ in 0..<(try r.count("relocated files", minRecord: 25)) {
            let entry = try r.u32("relocated file")
            guard let kind = FileKind(rawValue: try r.u8("relocated file kind")) else {
                throw FormatError("relocation: file entry \(entry) has an unknown kind")
            }
            let start = try r.u32("shebang"), interp = try r.u32("shebang"), line = try r.u32("shebang")
            var occ: [Occurrence] = []
            let n = try r.count("occurrences", minRecord: 17)
            occ.reserveCapacity(n)
            for _ in 0..<n {
                occ.append(Occurrence(offset: try r.u64("occurrence"), prefix: try r.u8("occurrence"), stringEnd: try r.u64("occurrence")))
            }
            rel.files.append(File(entry: entry, kind: kind, shebangStart: start, shebangInterpreterEnd: interp, shebangLineEnd: line, occurrences: occ))
        }
        for _ in 0..<(try r.count("relocated symlinks", minRecord: 5)) {
            rel.symlinks.append(Symlink(entry: try r.u32("relocated symlink"), prefix: try r.u8("relocated symlink")))
        }
        for _ in 0..<(try r.count("patches", minRecord: 16)) {
            rel.patches.append(Patch(entry: try r.u32("patch"), offset: try r.u64("patch"),
                                     bytes: try r.blob("patch bytes", max: maxPathLength)))
        }
        return rel
    }

    /// Checks every record against the manifest: entries of the right kind, occurrences inside
    /// their files and holding their prefix's length, sorted and disjoint, patches likewise.
    func validate(_ m: Manifest) throws {
        func bad(_ why: String) -> FormatError { FormatError("relocation: \(why)") }
        for (k, p) in prefixes.enumerated() {
            guard p.from.first == UInt8(ascii: "/"), p.from.count > 1, !p.from.contains(0) else { throw bad("prefix \(k) is not an absolute path") }
            guard !p.to.contains(0), p.to.first != UInt8(ascii: "/"),
                  !p.to.split(separator: UInt8(ascii: "/")).contains(where: { $0.elementsEqual([0x2e, 0x2e]) }) else {
                throw bad("prefix \(k) has a bad place in the tree")
            }
        }
        func ownFile(_ e: UInt32, _ what: String) throws -> Manifest.Entry {
            guard Int(e) < m.entries.count else { throw bad("\(what) names entry \(e) of \(m.entries.count)") }
            let en = m.entries[Int(e)]
            guard en.kind == .regular, en.owner == e else { throw bad("\(what) entry \(e) is not a regular file owning its data") }
            return en
        }
        var last: Int64 = -1
        var byEntry: [UInt32: Int] = [:]
        for f in files {
            guard Int64(f.entry) > last else { throw bad("files not sorted or repeated at entry \(f.entry)") }
            last = Int64(f.entry)
            let e = try ownFile(f.entry, "file")
            guard !f.occurrences.isEmpty else { throw bad("file entry \(f.entry) has no occurrences") }
            var end: UInt64 = 0
            for o in f.occurrences {
                guard Int(o.prefix) < prefixes.count else { throw bad("file entry \(f.entry) names prefix \(o.prefix)") }
                let len = UInt64(prefixes[Int(o.prefix)].from.count)
                guard o.offset >= end, o.offset <= e.size, len <= e.size - o.offset else {
                    throw bad("occurrence at \(o.offset) of entry \(f.entry) overlaps another or passes the end")
                }
                end = o.offset + len
                if f.kind == .binary {
                    guard o.stringEnd == 0 || (o.stringEnd >= end && o.stringEnd <= e.size
                                               && o.stringEnd - o.offset <= UInt64(Relocation.maxStringLength)) else {
                        throw bad("occurrence at \(o.offset) of entry \(f.entry) has a bad string end")
                    }
                } else if o.stringEnd != 0 {
                    throw bad("text occurrence with a string end in entry \(f.entry)")
                }
            }
            if f.shebangLineEnd != 0 || f.shebangInterpreterEnd != 0 || f.shebangStart != 0 {
                guard f.kind == .text, f.shebangStart >= 2, f.shebangStart < f.shebangInterpreterEnd,
                      f.shebangInterpreterEnd <= f.shebangLineEnd,
                      UInt64(f.shebangLineEnd) < e.size, f.shebangLineEnd <= 4096 else {
                    throw bad("bad shebang line in entry \(f.entry)")
                }
            }
            byEntry[f.entry] = byEntry.count
        }
        last = -1
        for s in symlinks {
            guard Int64(s.entry) > last else { throw bad("symlinks not sorted or repeated at entry \(s.entry)") }
            last = Int64(s.entry)
            guard Int(s.entry) < m.entries.count, m.entries[Int(s.entry)].kind == .symlink else { throw bad("entry \(s.entry) is not a symlink") }
            guard Int(s.prefix) < prefixes.count, m.symlinkTarget(Int(s.entry)).starts(with: prefixes[Int(s.prefix)].from) else {
                throw bad("symlink entry \(s.entry) does not start with its prefix")
            }
        }
        var lastEntry: Int64 = -1, lastEnd: UInt64 = 0
        for p in patches {
            let e = try ownFile(p.entry, "patch")
            guard !p.bytes.isEmpty else { throw bad("empty patch in entry \(p.entry)") }
            if Int64(p.entry) != lastEntry {
                guard Int64(p.entry) > lastEntry else { throw bad("patches not sorted at entry \(p.entry)") }
                lastEntry = Int64(p.entry); lastEnd = 0
            }
            guard p.offset >= lastEnd, p.offset <= e.size, UInt64(p.bytes.count) <= e.size - p.offset else {
                throw bad("patch at \(p.offset) of entry \(p.entry) overlaps another or passes the end")
            }
            lastEnd = p.offset + UInt64(p.bytes.count)
            if let k = byEntry[p.entry] {
                let f = files[k]
                guard f.kind == .binary else { throw bad("patch in text file entry \(p.entry)") }
                for o in f.occurrences {
                    let oEnd = o.offset + UInt64(prefixes[Int(o.prefix)].from.count)
                    if o.offset < lastEnd && p.offset < max(oEnd, o.stringEnd) { throw bad("patch overlaps an occurrence in entry \(p.entry)") }
                }
            }
        }
    }
}
