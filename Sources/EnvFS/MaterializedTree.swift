// A revision's files kept whole in the cache as plain files, so the kernel serves them without
// the daemon: the mount puts this tree as an overlayfs lower layer above the FUSE mount.
//
// Layout under CACHE/v1:
//   trees/<manifest hex>/   the tree; every directory whose whole subtree is present is marked
//                           opaque for overlayfs (`trusted.overlay.opaque`), so lookups there
//                           never fall through to FUSE. A partial tree (under a cache limit the
//                           whole revision does not fit) holds every directory and symlink but
//                           only some regular files: the directories above a missing file are not
//                           opaque, so its name falls through to the FUSE mount below
//   trees/<manifest hex>.seal  a header (id, `partial`, `bytes=` of the files present), then
//                           per regular file present: its ctime after materialization, a digest of
//                           its bytes, and its key, SHA-256 of its path, mode, owner, mtime and
//                           size: a file of a later revision with the same key whose bytes the
//                           chunks confirm is hardlinked from the older tree, so it is stored once.
//                           Written once the tree is renamed into place: a seal means the tree
//                           is whole and in place
//   tmp/<pid>.tree.<n>/     a tree being built (removed once its writer is dead)
//
// Guarantees: bytes come only from verified chunks (read through the ChunkFetcher); the tree
// appears whole or not at all (built aside, then renamed); a file changed on disk afterwards
// moves its ctime, which cannot be set back, so `check` finds it before a mount serves the
// tree, and then compares the file's digest: a link into a newer tree also moves the ctime, a
// matching digest re-seals the file, a different one drops the tree. Trees live in the cache
// directory (0700), and count as cache use.
import EnvFetch
import EnvFormat
import Dispatch
import Glibc
import Synchronization
import SysKit

public struct MaterializedTree: Sendable {
    public let manifest: Manifest
    public let id: ChunkID
    let root: String

    public var path: String { "\(root)/trees/\(id.hex)" }
    var sealPath: String { path + ".seal" }

    /// The seal read ahead for this tree, used by its first read of the seal.
    let preread: SealPreread?

    public init(cacheDirectory: String, manifest: Manifest, id: ChunkID, preread: SealPreread? = nil) {
        self.root = cacheDirectory + "/v1"
        self.manifest = manifest
        self.id = id
        self.preread = preread
    }

    public enum State: Equatable, Sendable {
        case ready
        case absent
        case damaged(String)
    }

    struct SealEntry {
        var entry: Int
        var ctimeNs: Int64
        /// Both as the seal's bytes (hex): a seal of 11k files is read at every mount, and two
        /// String allocations per line were most of that.
        var digest: ArraySlice<UInt8>
        var key: ArraySlice<UInt8>
    }

    /// Reads `count` bytes at `offset` of a chunk into a buffer (the fetcher's verified read).
    public typealias ChunkReader = (_ chunk: UInt32, _ offset: UInt32, _ count: Int, _ into: inout [UInt8]) throws -> Void

    /// Files and bytes of regular files in the tree.
    public var totals: (files: Int, bytes: UInt64) {
        var n = 0
        var b: UInt64 = 0
        for (i, e) in manifest.entries.enumerated() where e.kind == .regular && e.owner == UInt32(i) {
            n += 1
            b += e.size
        }
        return (n, b)
    }

    // MARK: building

    /// Builds the tree from verified chunks, aside, then renames it into place. Returns the
    /// number of files written and the number shared with trees already in the cache.
    /// `only`: the inode-owning regular entries to write (nil: all of them, a complete tree);
    /// every name of such a file is written, every directory and symlink always.
    @discardableResult
    public func materialize(only: Set<Int>? = nil, read: ChunkReader) throws -> (written: Int, shared: Int) {
        if FS.exists(path) && FS.exists(sealPath) { return (0, 0) }
        for d in ["trees", "tmp"] { try FS.makeDirectories("\(root)/\(d)", mode: 0o700) }
        removeAbandoned()
        let tmp = "\(root)/tmp/\(getpid()).tree.\(UInt32.random(in: 0...UInt32.max))"
        do {
            let r = try build(into: tmp, only: only, read: read)
            try? FS.unlink(sealPath)
            try? FS.removeTree(path)
            try FS.rename(tmp, path)
            // Sealed last: a seal means the tree is in place (a tree without one is rebuilt).
            try writeSeal(r.seal, partial: r.partial)
            return (r.written, r.shared)
        } catch {
            try? FS.removeTree(tmp)
            throw error
        }
    }

    /// Trees left in tmp/ by materializers that died (`<pid>.tree.<n>`).
    private func removeAbandoned() {
        for name in (try? FS.listDirectory("\(root)/tmp")) ?? [] {
            let parts = name.split(separator: ".")
            guard parts.count == 3, parts[1] == "tree", let pid = Int32(parts[0]),
                  pid != getpid(), !ProcessControl.isAlive(pid) else { continue }
            try? FS.removeTree("\(root)/tmp/\(name)")
        }
    }

    private func build(into tmp: String, only: Set<Int>?, read: ChunkReader) throws -> (written: Int, shared: Int, seal: [SealEntry], partial: Bool) {
        let m = manifest
        // Directories with a file missing below them: not opaque.
        var incomplete = [Bool](repeating: false, count: m.entries.count)
        if let only {
            for e in m.entries where e.kind == .regular && !only.contains(Int(e.owner)) {
                var p = Int(e.parent)
                while !incomplete[p] {
                    incomplete[p] = true
                    if p == 0 { break }
                    p = Int(m.entries[p].parent)
                }
            }
        }
        var paths = [PathBytes](repeating: [], count: m.entries.count)
        paths[0] = tmp.pathBytes
        try FS.mkdir(paths[0], mode: 0o700)
        var written = 0, shared = 0
        var seal: [SealEntry] = []
        let others = otherTrees()
        var links: [Int] = []
        for i in m.entries.indices {
            let e = m.entries[i]
            if i > 0 { paths[i] = paths[Int(e.parent)] + [UInt8(ascii: "/")] + Array(m.name(i)) }
            switch e.kind {
            case .directory:
                if i > 0 { try FS.mkdir(paths[i], mode: 0o700) }
            case .symlink:
                try FS.symlink(target: m.symlinkTarget(i), at: paths[i])
                try FS.lchown(paths[i], uid: e.uid, gid: e.gid)
                try FS.setMtime(paths[i], ns: e.mtimeNs)
            case .regular:
                if let only, !only.contains(Int(e.owner)) { continue }
                if e.owner != UInt32(i) { links.append(i); continue }
                let k = key(i)
                let digest: String
                // A file an older tree holds at the same path with the same attributes is linked,
                // but only if its bytes are what this revision's chunks say.
                if let other = others.first(where: { $0.keys.contains(k) }).map({ $0.dir.pathBytes + [UInt8(ascii: "/")] + m.path(i) }),
                   let st = try? FS.lstat(other), st.kind == .regular, st.size == e.size, st.mtimeNs == e.mtimeNs,
                   let have = try? Self.digest(ofFile: other), have == (try contentDigest(i, read: read)) {
                    try FS.link(other, paths[i])
                    digest = have
                    shared += 1
                } else {
                    digest = try writeFile(i, to: paths[i], read: read)
                    written += 1
                }
                seal.append(SealEntry(entry: i, ctimeNs: 0, digest: Array(digest.utf8)[...], key: Array(k.utf8)[...]))
            }
        }
        for i in links { try FS.link(paths[Int(m.entries[i].owner)], paths[i]) }
        // Directories last, deepest first: modes that forbid writing, owners, the opaque mark,
        // and mtimes that nothing inside will move again.
        for i in m.entries.indices.reversed() where m.entries[i].kind == .directory {
            let e = m.entries[i]
            if !incomplete[i] { try FS.setxattr(paths[i], name: "trusted.overlay.opaque", value: Array("y".utf8)) }
            try FS.lchown(paths[i], uid: e.uid, gid: e.gid)
            try FS.chmod(paths[i], e.mode)
            try FS.setMtime(paths[i], ns: e.mtimeNs)
        }
        for k in seal.indices { seal[k].ctimeNs = try FS.lstat(paths[seal[k].entry]).ctimeNs }
        return (written, shared, seal, incomplete[0])
    }

    /// Writes regular file `i` from its chunks at `dest` (inside the tree being built).
    private func writeFile(_ i: Int, to dest: PathBytes, read: ChunkReader) throws -> String {
        let e = manifest.entries[i]
        let fd = try FileDescriptor.open(dest, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        let digest: String
        do {
            digest = try contentDigest(i, read: read) { bytes, offset in try fd.pwriteAll(bytes, at: offset) }
            try fd.truncate(e.size)
            fd.close()
        } catch {
            fd.close()
            throw error
        }
        try Self.setAttributes(of: e, on: dest)
        return digest
    }

    /// Gives a written file its entry's owner, mode and mtime (mode after owner: chown clears setuid).
    static func setAttributes(of e: Manifest.Entry, on dest: PathBytes) throws {
        try FS.lchown(dest, uid: e.uid, gid: e.gid)
        try FS.chmod(dest, e.mode)
        try FS.setMtime(dest, ns: e.mtimeNs)
    }

    /// The other trees in the cache and the keys of their files, to share unchanged files.
    private func otherTrees() -> [(dir: String, keys: Set<String>)] {
        var out: [(String, Set<String>)] = []
        for name in (try? FS.listDirectory("\(root)/trees")) ?? [] where name.hasSuffix(".seal") && name != "\(id.hex).seal" {
            guard let b = try? FS.readFile("\(root)/trees/\(name)") else { continue }
            var keys = Set<String>()
            for l in String(decoding: b, as: UTF8.self).split(separator: "\n").dropFirst() {
                if let k = l.split(separator: " ").last, k.utf8.count == 64 { keys.insert(String(k)) }
            }
            out.append(("\(root)/trees/\(name.dropLast(".seal".count))", keys))
        }
        return out
    }

    /// The digest of regular file `i` computed from its verified chunks; `sink` receives each
    /// data span's bytes and file offset (holes are skipped, and read back as zeros).
    func contentDigest(_ i: Int, read: ChunkReader, sink: (([UInt8], UInt64) throws -> Void)? = nil) throws -> String {
        var blockHashes: [UInt8] = []
        var offset: UInt64 = 0
        var buf: [UInt8] = []
        var pending: [UInt8] = []
        pending.reserveCapacity(Self.block)
        for s in manifest.fileSpans(i) {
            let span = manifest.spans[s]
            let n = Int(span.length)
            let zeros = span.chunk == Manifest.Span.zeros
            if !zeros {
                if buf.count != n { buf = [UInt8](repeating: 0, count: n) }
                try read(span.chunk, span.offset, n, &buf)
                try sink?(buf, offset)
            }
            var left = n, at = 0
            while left > 0 {
                // Whole blocks of a hole hash alike: no need to build them (a sparse 5 GiB file).
                if zeros && pending.isEmpty && left >= Self.block {
                    let whole = left / Self.block
                    for _ in 0..<whole { blockHashes += Self.zeroBlockHash }
                    left -= whole * Self.block
                    continue
                }
                let take = min(left, Self.block - pending.count)
                if zeros { pending.append(contentsOf: repeatElement(0, count: take)) } else { pending.append(contentsOf: buf[at..<at + take]) }
                at += take
                left -= take
                if pending.count == Self.block {
                    blockHashes += SHA256.hash(pending)
                    pending.removeAll(keepingCapacity: true)
                }
            }
            offset += UInt64(n)
        }
        if !pending.isEmpty { blockHashes += SHA256.hash(pending) }
        return ChunkID.of(blockHashes).hex
    }

    static let block = 1 << 20
    static let zeroBlockHash = SHA256.hash([UInt8](repeating: 0, count: block))

    /// SHA-256 over the SHA-256 of each 1 MiB block of the file.
    static func digest(ofFile path: String) throws -> String { try digest(ofFile: path.pathBytes) }

    /// The same digest of bytes in memory.
    static func digest(of bytes: [UInt8]) -> String {
        var hashes: [UInt8] = []
        var off = 0
        while off < bytes.count {
            let end = min(bytes.count, off + block)
            hashes += SHA256.hash(Array(bytes[off..<end]))
            off = end
        }
        return ChunkID.of(hashes).hex
    }

    static func digest(ofFile path: PathBytes) throws -> String {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        defer { fd.close() }
        var hashes: [UInt8] = []
        var off: UInt64 = 0
        while true {
            let b = try fd.read(count: block, offset: off)
            if b.isEmpty { break }
            hashes += SHA256.hash(b)
            off += UInt64(b.count)
            if b.count < block { break }
        }
        return ChunkID.of(hashes).hex
    }

    /// What makes regular file `i` a candidate to share with another revision: its path and
    /// attributes (a hardlink shares attributes). Not its spans: an insertion elsewhere moves
    /// chunk boundaries without changing the file; its bytes are compared before it is shared.
    func key(_ i: Int) -> String {
        let e = manifest.entries[i]
        var b = manifest.path(i)
        b.append(0)
        for v in [UInt64(e.mode), UInt64(e.uid), UInt64(e.gid), UInt64(bitPattern: e.mtimeNs), e.size] {
            withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) }
        }
        return ChunkID.of(b).hex
    }

    // MARK: the seal

    private func writeSeal(_ seal: [SealEntry], partial: Bool) throws {
        let bytes = seal.reduce(UInt64(0)) { $0 + manifest.entries[$1.entry].size }
        var s = "envmount-tree 1 \(id.hex)\(partial ? " partial" : "") bytes=\(bytes)\n"
        s.reserveCapacity(seal.count * 100)
        for e in seal {
            s += "\(e.entry) \(e.ctimeNs) "
            s += String(decoding: e.digest, as: UTF8.self)
            s += " "
            s += String(decoding: e.key, as: UTF8.self)
            s += "\n"
        }
        try FS.writeFileAtomically(sealPath, Array(s.utf8))
    }

    /// The seal's header: `envmount-tree 1 <id>`, then ` partial` for a partial tree, then
    /// ` bytes=N`, the bytes of its regular files (both absent in seals of older versions).
    struct SealHeader: Equatable {
        var partial = false
        var bytes: UInt64?

        init?(_ line: Substring, id: ChunkID) {
            let p = line.split(separator: " ")
            guard p.count >= 3, p[0] == "envmount-tree", p[1] == "1", p[2] == id.hex else { return nil }
            for t in p.dropFirst(3) {
                if t == "partial" { partial = true } else if t.hasPrefix("bytes="), let n = UInt64(t.dropFirst(6)) { bytes = n } else { return nil }
            }
        }
    }

    /// A decimal integer with an optional leading '-', in ASCII bytes; nil on anything else or
    /// on overflow (the seal's entry numbers and ctimes).
    public static func decimal(_ b: ArraySlice<UInt8>) -> Int64? {
        var v: Int64 = 0, neg = false, any = false
        for (k, c) in b.enumerated() {
            if k == 0 && c == 0x2d { neg = true; continue }
            guard c >= 0x30 && c <= 0x39 else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int64(c - 0x30))
            guard !o1 && !o2 else { return nil }
            v = a
            any = true
        }
        return any ? (neg ? -v : v) : nil
    }

    /// A seal line's entry number and ctime, each followed by one space: the entry (≥ 0), the
    /// ctime and the index of the space after it; nil when the line is not so. Each number is
    /// looked for within 20 bytes (19 digits and a sign), so a line without them costs little.
    private static func numbers(_ b: [UInt8], from start: Int) -> (Int, Int64, Int)? {
        guard let s1 = b[start...].prefix(21).firstIndex(of: 0x20), let entry = decimal(b[start..<s1]), entry >= 0,
              let s2 = b[(s1 + 1)...].prefix(21).firstIndex(of: 0x20), let ctime = decimal(b[(s1 + 1)..<s2]) else { return nil }
        return (Int(entry), ctime, s2)
    }

    typealias ParsedSeal = (header: SealHeader, entries: [SealEntry])

    /// The seal: read ahead (SealPreread) on its first read, else from its file. nil when there
    /// is none, it is not this tree's, or a line is malformed or names an entry past the manifest.
    private func readSeal() -> ParsedSeal? {
        guard let seal = preread?.take(id: id) ?? (try? FS.readFile(sealPath)).flatMap({ Self.parseSeal($0, id: id) }) else { return nil }
        let n = manifest.entries.count
        return seal.entries.allSatisfy({ $0.entry < n }) ? seal : nil
    }

    /// A seal's bytes parsed (entry numbers are checked against the manifest by `readSeal`).
    static func parseSeal(_ bytes: [UInt8], id: ChunkID) -> ParsedSeal? {
        // One pass over the bytes, no array per line: splitting into lines and then fields
        // allocated twice per file and was a third of the check of an 11k-file tree.
        let end = bytes.count
        let firstEnd = bytes.firstIndex(of: 0x0a) ?? end
        guard firstEnd > 0, let header = SealHeader(Substring(String(decoding: bytes[..<firstEnd], as: UTF8.self)), id: id) else { return nil }
        let int = Self.decimal
        var out: [SealEntry] = []
        out.reserveCapacity(end / 140)
        var at = firstEnd
        // A line: `<entry> <ctime> <digest> <key>`, fields split by runs of spaces; empty lines
        // are skipped.
        var fields: [Range<Int>] = []
        fields.reserveCapacity(5)
        let hex = 64
        while at < end {
            at += 1
            // The usual line: two numbers, then a 64-digit digest and key, single spaces. Only
            // the numbers are scanned; the rest is taken by length (the digest is compared with
            // a file's only when its ctime moved). Seals of 25k files are read at every mount,
            // and scanning each line's 130 hex digits was most of that.
            if let (i, c, next) = Self.numbers(bytes, from: at), next + 2 * hex + 2 <= end,
               bytes[next] == 0x20, bytes[next + hex + 1] == 0x20, next + 2 * hex + 2 == end || bytes[next + 2 * hex + 2] == 0x0a,
               bytes[next + 1] != 0x20, bytes[next + hex + 2] != 0x20 {
                out.append(SealEntry(entry: i, ctimeNs: c, digest: bytes[next + 1 ..< next + hex + 1], key: bytes[next + hex + 2 ..< next + 2 * hex + 2]))
                at = next + 2 * hex + 2
                continue
            }
            fields.removeAll(keepingCapacity: true)
            while at < end && bytes[at] != 0x0a {
                if bytes[at] == 0x20 { at += 1; continue }
                let from = at
                while at < end && bytes[at] != 0x20 && bytes[at] != 0x0a { at += 1 }
                if fields.count == 4 { return nil }
                fields.append(from..<at)
            }
            if fields.isEmpty { continue }
            guard fields.count == 4, let i = int(bytes[fields[0]]).map(Int.init), let c = int(bytes[fields[1]]),
                  i >= 0 else { return nil }
            out.append(SealEntry(entry: i, ctimeNs: c, digest: bytes[fields[2]], key: bytes[fields[3]]))
        }
        return (header, out)
    }

    /// What the sealed tree holds: its regular files (inode owners) and their bytes, and whether
    /// it is partial. nil when there is no readable seal.
    public func contents() -> (files: Set<Int>, bytes: UInt64, partial: Bool)? {
        guard let (header, seal) = readSeal() else { return nil }
        let files = Set(seal.map(\.entry))
        return (files, files.reduce(0) { $0 + manifest.entries[$1].size }, header.partial)
    }

    /// Bytes of the regular files of every sealed tree in a cache directory, from the seals'
    /// headers (what trees add to the cache's use; a file shared by two trees counts twice).
    public static func diskBytes(cacheDirectory: String) -> UInt64 {
        let dir = cacheDirectory + "/v1/trees"
        var total: UInt64 = 0
        for name in (try? FS.listDirectory(dir)) ?? [] where name.hasSuffix(".seal") {
            guard let id = ChunkID(hex: String(name.dropLast(".seal".count))),
                  let fd = try? FileDescriptor.open("\(dir)/\(name)", O_RDONLY) else { continue }
            let head = (try? fd.read(count: 256, offset: 0)) ?? []
            fd.close()
            let line = String(decoding: head.prefix { $0 != 0x0a }, as: UTF8.self)
            total += SealHeader(Substring(line), id: id)?.bytes ?? 0
        }
        return total
    }

    // MARK: checking

    /// Whether the tree can be served: it exists with its seal, and every regular file has the
    /// size, mtime and ctime it was sealed with. A file whose ctime moved is hashed: the same
    /// digest re-seals it (a newer tree linked it), another one makes the tree `.damaged`. So
    /// does a directory on the way that is no longer a directory (a symlink would let the
    /// overlay serve whatever it points to), another name of a hardlinked file that is no longer
    /// that file, and, in a partial tree, a file at the name of one that was not materialized
    /// (it would hide the FUSE file below). `rehashAll` hashes every file (for `envmount cache verify`).
    public func check(rehashAll: Bool = false) -> State { checkCounting(rehashAll: rehashAll).state }

    /// `check`, and for a tree that can be served what `contents()` says, from the same read of
    /// the seal (a mount needs both; the seal of an 11k-file tree is read in milliseconds).
    public func checkCounting(rehashAll: Bool = false) -> (state: State, contents: (files: Set<Int>, bytes: UInt64, partial: Bool)?) {
        guard FS.exists(path), let (header, seal) = readSeal() else { return (.absent, nil) }
        PhaseMarks.mark("tree: seal read")
        let state = verify(header, seal, rehashAll: rehashAll)
        guard state == .ready else { return (state, nil) }
        let files = Set(seal.map(\.entry))
        return (.ready, (files, files.reduce(0) { $0 + manifest.entries[$1].size }, header.partial))
    }

    private func verify(_ header: SealHeader, _ sealed0: [SealEntry], rehashAll: Bool) -> State {
        var seal = sealed0
        let m = manifest
        let probes = Self.probes(seal, manifest: m)
        let results = statAll(probes)
        PhaseMarks.mark("tree: names stat'ed")
        var resealed = false
        // `path` is built from the id each time it is asked for: once here, not once per file.
        let base = path.pathBytes + [UInt8(ascii: "/")]
        func notDirectory(_ d: Int) -> State {
            .damaged("\(TreeWalk.firstNonDirectory(above: d, manifest: m, root: path)) is not the directory it was written as")
        }
        for k in seal.indices {
            let i = seal[k].entry, e = m.entries[i]
            let ctime: Int64
            switch results[k] {
            case let .stat(st) where st.errno == 0 && st.kind == .regular && st.size == e.size && st.mtimeNs == e.mtimeNs:
                if st.ctimeNs == seal[k].ctimeNs && !rehashAll { continue }
                ctime = st.ctimeNs
            case .stat, .directoryMissing:
                return .damaged("\((base + m.path(i)).pathString) is missing or has the wrong size or mtime")
            case let .notDirectory(d):
                return notDirectory(d)
            }
            let p = base + m.path(i)
            guard let have = try? Self.digest(ofFile: p), have.utf8.elementsEqual(seal[k].digest) else { return .damaged("\(p.pathString) does not hold the bytes it was written with") }
            if seal[k].ctimeNs != ctime {
                seal[k].ctimeNs = ctime
                resealed = true
            }
        }
        // Every sealed file is as written: now the names that are not sealed files.
        var sealIndex = [Int](repeating: -1, count: probes.count > seal.count ? m.entries.count : 0)
        for k in seal.indices where !sealIndex.isEmpty { sealIndex[seal[k].entry] = k }
        for n in seal.count..<probes.count {
            let i = probes[n].entry, p = { (base + m.path(i)).pathString }
            switch (probes[n].want, results[n]) {
            case (_, let .notDirectory(d)):
                return notDirectory(d)
            case (.linkOf(let owner), let .stat(st)):
                guard st.errno == 0, st.kind == .regular, case let .stat(o) = results[sealIndex[owner]], st.inode == o.inode else {
                    return .damaged("\(p()) is not the hardlink it was written as")
                }
            case (.linkOf, .directoryMissing):
                return .damaged("\(p()) is not the hardlink it was written as")
            case (.absent, let .stat(st)) where st.errno != ENOENT:
                return .damaged("\(p()) was not materialized but is in the tree (it would hide the file served through FUSE)")
            case (.absent, _), (.sealed, _):
                continue
            }
        }
        if resealed { try? writeSeal(seal, partial: header.partial) }
        return .ready
    }

    /// A name the check stats, and what it must find there.
    struct Probe: Sendable {
        enum Want: Sendable { case sealed, linkOf(Int), absent }
        var entry: Int
        var want: Want
    }

    /// The sealed files (first, in seal order), the other names of hardlinked sealed files, and
    /// the names of the regular files a partial tree left out.
    static func probes(_ seal: [SealEntry], manifest m: Manifest) -> [Probe] {
        var sealed = [Bool](repeating: false, count: m.entries.count)
        var out: [Probe] = []
        out.reserveCapacity(seal.count)
        for s in seal {
            sealed[s.entry] = true
            out.append(Probe(entry: s.entry, want: .sealed))
        }
        for (i, e) in m.entries.enumerated() where e.kind == .regular && !sealed[i] {
            let owner = Int(e.owner)
            out.append(Probe(entry: i, want: owner != i && sealed[owner] ? .linkOf(owner) : .absent))
        }
        return out
    }

    /// What the stat pass found at a probe's name.
    enum Found: Sendable {
        case stat(NameStat)
        case directoryMissing
        case notDirectory(Int)
    }

    /// Stats every probe, directory by directory: each directory holding one is opened once
    /// below the tree's root, following no symlink on the way, and its names are stat'ed
    /// relative to it (TreeWalk). The directories go to several threads: with a cold inode
    /// cache each stat waits on a disk read, and more reads in flight than cores is what makes
    /// them overlap.
    private func statAll(_ probes: [Probe]) -> [Found] {
        let m = manifest
        final class Slots: Sendable {
            let found: Mutex<[Found]>
            init(_ n: Int) { found = Mutex([Found](repeating: .directoryMissing, count: n)) }
        }
        let results = Slots(probes.count)
        guard !probes.isEmpty else { return [] }
        let root: FileDescriptor
        do { root = try FileDescriptor.openDirectory(path.pathBytes) } catch {
            let e = (error as? SystemError)?.errno ?? EIO
            return [Found](repeating: e == ENOENT ? .directoryMissing : .notDirectory(0), count: probes.count)
        }
        defer { root.close() }
        let groups = TreeWalk.groups(entries: probes.map(\.entry), manifest: m)
        TreeWalk.forEachGroup(groups) { g in
            let group = groups[g]
            let found: [Found]
            switch TreeWalk.stat(group, manifest: m, root: root) {
            case let .failure(e):
                found = [Found](repeating: e.errno == ENOENT ? .directoryMissing : .notDirectory(group.directory), count: group.members.count)
            case let .success(stats):
                found = stats.map { .stat($0) }
            }
            results.found.withLock { r in for (j, k) in group.members.enumerated() { r[k] = found[j] } }
        }
        return results.found.withLock { $0 }
    }

    /// Removes the tree, its seal and its relocation layers (a file another tree shares stays there).
    public func remove() {
        try? FS.unlink(sealPath)
        try? FS.removeTree(path)
        RelocationLayer.removeAll(of: self)
    }
}

/// Runs `body` for each of `0..<parts` on up to `threads` threads and waits for them all: for
/// work that blocks on I/O, where more threads than cores keep more requests in flight.
func blockingParallelFor(parts: Int, threads: Int, _ body: @escaping @Sendable (Int) -> Void) {
    final class Next: Sendable { let value = Atomic<Int>(0) }
    let next = Next()
    let done = DispatchGroup()
    for _ in 0..<max(1, min(threads, parts)) {
        done.enter()
        DetachedThread.start(name: "em-parallel") {
            while true {
                let k = next.value.add(1, ordering: .relaxed).oldValue
                if k >= parts { break }
                body(k)
            }
            done.leave()
        }
    }
    done.wait()
}
