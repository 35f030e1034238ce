// The mount-time half of relocation: a mount at a path other than the recorded source path
// presents the recorded files and symlinks with the mount path in place of the old one. Every
// plan is computed from the manifest when the mount starts (no scan); bytes are built from the
// file's verified chunk bytes on first read, and each occurrence is checked against them.
//
// - Text files: every occurrence replaced, any length; built whole once and kept (these are
//   scripts, .pth and config files, mostly small). A Python script's `#!` line that would pass
//   the kernel's 256-byte limit, or whose interpreter path gains a space, becomes pip's
//   `/bin/sh` trampoline (the publish scan records the `#!` line only for python interpreters).
// - Binary files: same-length edits only (offsets never shift): ELF RPATH/RUNPATH patches
//   recorded at publish, and each C string holding a prefix rewritten and NUL-padded at its end
//   when the new path is not longer. Reads overlay the edits on the published bytes.
import Synchronization
import SysKit
import EnvFetch
import EnvFormat

public final class RelocatedFiles: Sendable {
    /// A file that keeps the old path somewhere, with why.
    public struct Unrelocated: Sendable, Equatable {
        public var path: String
        public var count: Int
        public var reason: String
    }

    enum Plan: Sendable {
        case text(Relocation.File, size: UInt64, trampoline: Bool)
        case binary(occurrences: [Relocation.Occurrence], patches: [Relocation.Patch])
    }

    let prefixes: [Relocation.Prefix]
    /// What each prefix becomes under this mount.
    let newPrefixes: [[UInt8]]
    let hasPlan: [Bool]
    let plans: [UInt32: Plan]
    let symlinkTargets: [UInt32: [UInt8]]
    public let unrelocated: [Unrelocated]
    /// Built text files and binary edit lists, by entry.
    private let built = Mutex<[UInt32: [UInt8]]>([:])
    private let builtEdits = Mutex<[UInt32: [(offset: UInt64, bytes: [UInt8])]]>([:])
    private let builtBytes = Mutex<Int>(0)
    static let builtLimit = 256 << 20

    public var fileCount: Int { plans.count }
    public var symlinkCount: Int { symlinkTargets.count }

    static let trampolineHead = Array("#!/bin/sh\n'''exec' \"".utf8)
    static let trampolineMid = Array("\"".utf8)
    static let trampolineTail = Array(" \"$0\" \"$@\"\n' '''\n".utf8)
    /// BINPRM_BUF_SIZE: the kernel reads this much of a script for its `#!` line.
    static let shebangLimit = 256

    /// nil when nothing would change at `mountpoint` (no records, or every prefix keeps its path).
    public static func make(manifest m: Manifest, mountpoint: [UInt8]) -> RelocatedFiles? {
        let r = RelocatedFiles(manifest: m, mountpoint: mountpoint)
        // At the source path (and no bundled interpreter), even the RUNPATH patches stay off:
        // every byte as published.
        guard zip(r.prefixes, r.newPrefixes).contains(where: { $0.from != $1 }) else { return nil }
        return r.plans.isEmpty && r.symlinkTargets.isEmpty ? nil : r
    }

    init(manifest m: Manifest, mountpoint: [UInt8]) {
        let rel = m.relocation
        prefixes = rel.prefixes
        var root = mountpoint
        while root.count > 1 && root.last == UInt8(ascii: "/") { root.removeLast() }
        let newPrefixes = rel.prefixes.map { p -> [UInt8] in
            p.to.isEmpty ? root : (root == [UInt8(ascii: "/")] ? root : root + [UInt8(ascii: "/")]) + p.to
        }
        self.newPrefixes = newPrefixes
        func changes(_ k: UInt8) -> Bool { newPrefixes[Int(k)] != rel.prefixes[Int(k)].from }
        func delta(_ k: UInt8) -> Int64 { Int64(newPrefixes[Int(k)].count) - Int64(rel.prefixes[Int(k)].from.count) }

        var plans: [UInt32: Plan] = [:]
        var unrelocated: [Unrelocated] = []
        var patchesByEntry: [UInt32: [Relocation.Patch]] = [:]
        for p in rel.patches { patchesByEntry[p.entry, default: []].append(p) }
        for f in rel.files {
            let path = "/" + String(decoding: m.path(Int(f.entry)), as: UTF8.self)
            let size = m.entries[Int(f.entry)].size
            switch f.kind {
            case .text:
                let occ = f.occurrences.filter { changes($0.prefix) }
                guard !occ.isEmpty else { continue }
                var file = f
                file.occurrences = occ
                var newSize = Int64(size)
                for o in occ { newSize += delta(o.prefix) }
                var trampoline = false
                if f.hasShebang {
                    var lineDelta: Int64 = 0, interpDelta: Int64 = 0, spaces = false
                    for o in occ where o.offset < UInt64(f.shebangLineEnd) {
                        lineDelta += delta(o.prefix)
                        if o.offset < UInt64(f.shebangInterpreterEnd) {
                            interpDelta += delta(o.prefix)
                            if newPrefixes[Int(o.prefix)].contains(where: { $0 == 0x20 || $0 == 0x09 }) { spaces = true }
                        }
                    }
                    if Int64(f.shebangLineEnd) + lineDelta + 1 > Int64(Self.shebangLimit) || spaces {
                        trampoline = true
                        let interp = Int64(f.shebangInterpreterEnd - f.shebangStart) + interpDelta
                        let args = Int64(f.shebangLineEnd - f.shebangInterpreterEnd) + (lineDelta - interpDelta)
                        let rest = Int64(size) - Int64(f.shebangLineEnd) - 1 + (newSize - Int64(size) - lineDelta)
                        newSize = Int64(Self.trampolineHead.count + Self.trampolineMid.count + Self.trampolineTail.count)
                            + interp + args + rest
                    }
                }
                plans[f.entry] = .text(file, size: UInt64(max(newSize, 0)), trampoline: trampoline)
            case .binary:
                var keep: [Relocation.Occurrence] = []
                var refused = 0
                // Occurrences sharing a C string move together; a string is rewritten only when
                // every path in it fits.
                var k = 0
                let occ = f.occurrences
                while k < occ.count {
                    var j = k + 1
                    if occ[k].stringEnd != 0 { while j < occ.count && occ[j].stringEnd == occ[k].stringEnd { j += 1 } }
                    let group = occ[k..<j]
                    k = j
                    guard group.contains(where: { changes($0.prefix) }) else { continue }
                    let grows = group.contains { delta($0.prefix) > 0 }
                    let shifts = group.contains { delta($0.prefix) != 0 }
                    if grows || (shifts && group.first!.stringEnd == 0) { refused += 1; continue }
                    keep.append(contentsOf: group)
                }
                if refused > 0 {
                    unrelocated.append(Unrelocated(path: path, count: refused,
                                                   reason: "binary file: a longer path cannot replace the old one in place"))
                }
                let patches = patchesByEntry.removeValue(forKey: f.entry) ?? []
                if !keep.isEmpty || !patches.isEmpty { plans[f.entry] = .binary(occurrences: keep, patches: patches) }
            }
        }
        for (e, patches) in patchesByEntry { plans[e] = .binary(occurrences: [], patches: patches) }
        var hasPlan = [Bool](repeating: false, count: m.entries.count)
        for e in plans.keys { hasPlan[Int(e)] = true }
        var targets: [UInt32: [UInt8]] = [:]
        for s in rel.symlinks where changes(s.prefix) {
            targets[s.entry] = newPrefixes[Int(s.prefix)] + m.symlinkTarget(Int(s.entry)).dropFirst(rel.prefixes[Int(s.prefix)].from.count)
        }
        self.plans = plans
        self.hasPlan = hasPlan
        self.symlinkTargets = targets
        self.unrelocated = unrelocated.sorted { $0.path < $1.path }
    }

    @inline(__always)
    func has(_ entry: Int) -> Bool { hasPlan[entry] }

    /// The presented size of a file with a plan.
    func size(_ entry: Int, published: UInt64) -> UInt64 {
        if case let .text(_, size, _)? = plans[UInt32(entry)] { return size }
        return published
    }

    func symlinkTarget(_ entry: Int) -> [UInt8]? { symlinkTargets[UInt32(entry)] }

    /// `count` bytes at `offset` of the presented file; `published` reads the published bytes
    /// (verified chunks).
    func read(_ entry: Int, offset: UInt64, count: Int, publishedSize: UInt64, path: @autoclosure () -> String,
              published: (UInt64, Int) throws(FSError) -> [UInt8]) throws(FSError) -> [UInt8] {
        guard let plan = plans[UInt32(entry)] else { return try published(offset, count) }
        switch plan {
        case let .text(file, size, trampoline):
            let bytes: [UInt8]
            if let b = built.withLock({ $0[UInt32(entry)] }) {
                bytes = b
            } else {
                let original = try published(0, Int(publishedSize))
                bytes = try buildText(file, original: original, trampoline: trampoline, path: path())
                guard UInt64(bytes.count) == size else {
                    throw FSError.io("relocated \(path()) came out at \(bytes.count) bytes, expected \(size)")
                }
                remember(UInt32(entry), bytes)
            }
            guard offset < UInt64(bytes.count) else { return [] }
            let end = Int(min(UInt64(bytes.count), offset + UInt64(count)))
            return Array(bytes[Int(offset)..<end])
        case let .binary(occurrences, patches):
            var out = try published(offset, count)
            let edits = try binaryEdits(UInt32(entry), occurrences: occurrences, patches: patches, path: path(), published: published)
            let end = offset + UInt64(out.count)
            for e in edits where e.offset < end && e.offset + UInt64(e.bytes.count) > offset {
                let from = max(e.offset, offset), to = min(e.offset + UInt64(e.bytes.count), end)
                for p in from..<to { out[Int(p - offset)] = e.bytes[Int(p - e.offset)] }
            }
            return out
        }
    }

    private func remember(_ entry: UInt32, _ bytes: [UInt8]) {
        let total = builtBytes.withLock { t -> Int in t += bytes.count; return t }
        if total > Self.builtLimit {
            built.withLock { $0.removeAll() }
            builtBytes.withLock { $0 = bytes.count }
        }
        built.withLock { $0[entry] = bytes }
    }

    func buildText(_ f: Relocation.File, original: [UInt8], trampoline: Bool, path: String) throws(FSError) -> [UInt8] {
        for o in f.occurrences {
            let from = prefixes[Int(o.prefix)].from
            guard o.offset + UInt64(from.count) <= UInt64(original.count),
                  original[Int(o.offset)..<Int(o.offset) + from.count].elementsEqual(from) else {
                throw FSError.io("relocation record of \(path) does not match its bytes at \(o.offset); refusing to present it")
            }
        }
        func replaced(_ range: Range<Int>) -> [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(range.count + 64)
            var pos = range.lowerBound
            for o in f.occurrences where Int(o.offset) >= range.lowerBound && Int(o.offset) < range.upperBound {
                out += original[pos..<Int(o.offset)]
                out += newPrefixes[Int(o.prefix)]
                pos = Int(o.offset) + prefixes[Int(o.prefix)].from.count
            }
            out += original[pos..<max(pos, range.upperBound)]
            return out
        }
        guard trampoline else { return replaced(0..<original.count) }
        let start = Int(f.shebangStart), interpEnd = Int(f.shebangInterpreterEnd), lineEnd = Int(f.shebangLineEnd)
        guard lineEnd < original.count, original[lineEnd] == 0x0a, original.starts(with: [0x23, 0x21]) else {
            throw FSError.io("relocation record of \(path) names a #! line its bytes do not have")
        }
        return Self.trampolineHead + replaced(start..<interpEnd) + Self.trampolineMid + replaced(interpEnd..<lineEnd)
            + Self.trampolineTail + replaced(lineEnd + 1..<original.count)
    }

    private func binaryEdits(_ entry: UInt32, occurrences: [Relocation.Occurrence], patches: [Relocation.Patch], path: String,
                             published: (UInt64, Int) throws(FSError) -> [UInt8]) throws(FSError) -> [(offset: UInt64, bytes: [UInt8])] {
        if let e = builtEdits.withLock({ $0[entry] }) { return e }
        var edits = patches.map { (offset: $0.offset, bytes: $0.bytes) }
        var k = 0
        while k < occurrences.count {
            var j = k + 1
            let end = occurrences[k].stringEnd
            if end != 0 { while j < occurrences.count && occurrences[j].stringEnd == end { j += 1 } }
            let group = occurrences[k..<j]
            k = j
            let start = group.first!.offset
            let stop = end != 0 ? end : start + UInt64(prefixes[Int(group.first!.prefix)].from.count)
            let original = try published(start, Int(stop - start))
            var out: [UInt8] = []
            var pos = 0
            for o in group {
                let from = prefixes[Int(o.prefix)].from
                let at = Int(o.offset - start)
                guard at >= pos, at + from.count <= original.count, original[at..<at + from.count].elementsEqual(from) else {
                    throw FSError.io("relocation record of \(path) does not match its bytes at \(o.offset); refusing to present it")
                }
                out += original[pos..<at]
                out += newPrefixes[Int(o.prefix)]
                pos = at + from.count
            }
            out += original[pos...]
            out += [UInt8](repeating: 0, count: max(0, original.count - out.count))
            edits.append((start, Array(out.prefix(original.count))))
        }
        builtEdits.withLock { $0[entry] = edits }
        return edits
    }
}
