// The publish-time half of relocation: while the publisher streams each file's bytes, look for
// the prefixes (the source path, and a bundled interpreter's installation) with memmem; once a
// file is read, classify it (a NUL byte anywhere = binary), drop matches that are only the
// start of a longer name, find each binary match's C-string end, note a shebang whose
// interpreter holds a prefix, and read ELF files' RPATH/RUNPATH, machine and GLIBC versions.
// Only files with a match are read again (a few small reads each).
import Glibc
import SysKit
import EnvFormat

struct PrefixScanner {
    let prefixes: [Relocation.Prefix]
    private let seamLength: Int

    // The file being fed.
    private var node = -1
    private var skip = false
    private var sawNUL = false
    private var isElf = false
    private var candidates: [(offset: UInt64, prefix: Int)] = []
    private var tail: [UInt8] = []
    private var tailOffset: UInt64 = 0

    // Results.
    var files: [Relocation.File] = []
    var patches: [Relocation.Patch] = []
    var machines: Set<String> = []
    var glibc: (Int, Int)? = nil
    var elfFiles = 0

    init(prefixes: [Relocation.Prefix]) {
        self.prefixes = prefixes
        seamLength = max(1, prefixes.map(\.from.count).max() ?? 1) - 1
    }

    /// Compiled bytecode is not scanned: Python replaces a .pyc's recorded source path with the
    /// path it loaded the .py from (importlib's `_fix_co_filename`), so the old path is harmless.
    mutating func begin(node: Int, name: [UInt8]) {
        self.node = node
        skip = name.count > 4 && name.suffix(4).elementsEqual(".pyc".utf8)
        sawNUL = false
        isElf = false
        candidates.removeAll(keepingCapacity: true)
        tail.removeAll(keepingCapacity: true)
    }

    /// `buffer[0..<count]` holds the file's bytes at `offset`; blocks arrive in order.
    mutating func feed(offset: UInt64, buffer: [UInt8], count: Int) {
        if offset == 0 { isElf = ElfInfo.isElf(buffer[0..<min(count, 4)]) }
        if !sawNUL, ByteSearch.firstIndex(of: 0, in: buffer, range: 0..<count) != nil { sawNUL = true }
        if skip || prefixes.isEmpty { return }
        // Matches that straddle the previous block's end.
        if !tail.isEmpty && seamLength > 0 {
            let seam = tail + buffer[0..<min(count, seamLength)]
            for (k, p) in prefixes.enumerated() {
                for at in ByteSearch.occurrences(of: p.from, in: seam, range: 0..<seam.count)
                where at < tail.count && at + p.from.count > tail.count {
                    candidates.append((tailOffset + UInt64(at), k))
                }
            }
        }
        for (k, p) in prefixes.enumerated() {
            for at in ByteSearch.occurrences(of: p.from, in: buffer, range: 0..<count) {
                candidates.append((offset + UInt64(at), k))
            }
        }
        let keep = min(seamLength, count)
        tail = Array(buffer[count - keep..<count])
        tailOffset = offset + UInt64(count - keep)
    }

    /// Finishes the file at `path` (`relPath`: its path in the tree) and records what it found.
    mutating func end(path: PathBytes, relPath: [UInt8], size: UInt64) throws {
        guard isElf || !candidates.isEmpty else { return }
        let fd = try FileDescriptor.open(path, O_RDONLY | O_NOFOLLOW)
        defer { fd.close() }
        let read: ElfInfo.Reader = { off, n in try fd.read(count: n, offset: off) }
        var claimed: [Range<UInt64>] = []
        if isElf, let info = try? ElfInfo.parse(size: size, read: read) {
            elfFiles += 1
            machines.insert(info.machineName)
            if let g = info.glibc, g > (glibc ?? (0, 0)) { glibc = g }
            for rp in info.runPaths {
                guard let new = rewriteRunPath(rp.value, relPath: relPath), new.count <= rp.value.count, new != rp.value else { continue }
                patches.append(Relocation.Patch(entry: UInt32(node), offset: rp.offset,
                                                bytes: new + [UInt8](repeating: 0, count: rp.value.count - new.count)))
                claimed.append(rp.offset..<rp.offset + UInt64(rp.value.count))
            }
        }
        guard !candidates.isEmpty else { return }
        // Longest prefix first at one offset, then drop overlaps and matches inside a patched RPATH.
        candidates.sort { $0.offset != $1.offset ? $0.offset < $1.offset : prefixes[$0.prefix].from.count > prefixes[$1.prefix].from.count }
        var occ: [Relocation.Occurrence] = []
        var end: UInt64 = 0
        for c in candidates where c.offset >= end {
            let len = UInt64(prefixes[c.prefix].from.count)
            if claimed.contains(where: { $0.contains(c.offset) }) { continue }
            // The bytes after the match: a name that continues is another path; up to 4 KiB to
            // find the NUL ending a binary match's C string.
            let after = c.offset + len
            let window = try fd.read(count: Int(min(UInt64(Relocation.maxStringLength) - len, size - after)), offset: after)
            if let b = window.first, Relocation.continuesName(b) { continue }
            var stringEnd: UInt64 = 0
            if sawNUL, let z = window.firstIndex(of: 0) { stringEnd = after + UInt64(z) }
            occ.append(Relocation.Occurrence(offset: c.offset, prefix: UInt8(c.prefix), stringEnd: stringEnd))
            end = after
        }
        guard !occ.isEmpty else { return }
        var file = Relocation.File(entry: UInt32(node), kind: sawNUL ? .binary : .text, occurrences: occ)
        if !sawNUL {
            let head = try fd.read(count: Int(min(size, 4096)), offset: 0)
            if head.starts(with: [0x23, 0x21]), let nl = head.firstIndex(of: 0x0a) {
                var start = 2
                while start < nl && (head[start] == 0x20 || head[start] == 0x09) { start += 1 }
                var interpEnd = start
                while interpEnd < nl && head[interpEnd] != 0x20 && head[interpEnd] != 0x09 { interpEnd += 1 }
                // Only a Python script can be re-launched through the /bin/sh trampoline.
                let base = head[start..<interpEnd].split(separator: UInt8(ascii: "/")).last ?? []
                if base.starts(with: "python".utf8),
                   occ.contains(where: { $0.offset >= UInt64(start) && $0.offset < UInt64(interpEnd) }) {
                    file.shebangStart = UInt32(start)
                    file.shebangInterpreterEnd = UInt32(interpEnd)
                    file.shebangLineEnd = UInt32(nl)
                }
            }
        }
        files.append(file)
    }

    /// An RPATH/RUNPATH whose entries name directories inside the tree, rewritten relative to
    /// `$ORIGIN` (the directory of the file); nil when no entry names one.
    func rewriteRunPath(_ value: [UInt8], relPath: [UInt8]) -> [UInt8]? {
        var changed = false
        let dir = Array(relPath.split(separator: UInt8(ascii: "/")).dropLast().map(Array.init))
        let parts = value.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false).map { part -> [UInt8] in
            for p in prefixes.sorted(by: { $0.from.count > $1.from.count }) where part.starts(with: p.from) {
                let rest = part.dropFirst(p.from.count)
                guard rest.isEmpty || rest.first == UInt8(ascii: "/") else { continue }
                let target = (p.to + rest).split(separator: UInt8(ascii: "/")).map(Array.init)
                var common = 0
                while common < dir.count && common < target.count && dir[common] == target[common] { common += 1 }
                var rel = Array("$ORIGIN".utf8)
                for _ in common..<dir.count { rel += Array("/..".utf8) }
                for c in target[common...] { rel += [UInt8(ascii: "/")] + c }
                changed = true
                return rel
            }
            return Array(part)
        }
        guard changed else { return nil }
        return Array(parts.joined(separator: [UInt8(ascii: ":")]))
    }
}
