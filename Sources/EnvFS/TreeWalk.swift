// Stat'ing many entries of a manifest inside a tree on disk (a materialized tree, a relocation
// layer) without building a path per entry: entries are grouped by parent directory; each
// directory is opened once below the tree's root (O_PATH, no symlink followed on the way: a
// directory replaced by a symlink is refused, not followed) and its entries are stat'ed by name
// relative to it, one path component per call, in one call into C per directory.
//
// Measured side by side (Tools/bench/bench-check.sh): the check of the small venv's tree (11.3k
// files) went from 37.5 to 20.9 ms with a warm inode cache, torch's (25k) from 140 to 61 ms; what
// is left is the kernel's own cost per stat (~2 µs on the 2-core VM, fstatat and statx alike).
// With the inode cache dropped the check waits on inode reads either way (~0.29 s on torch).
import EnvFormat
import Glibc
import SysKit

enum TreeWalk {
    /// Threads for the stat pass: with a cold inode cache every stat waits on a disk read, so
    /// more threads than cores keep more reads in flight (torch's tree, cold: one thread 0.66–
    /// 0.84 s, 8 threads ~0.29 s, 16–64 no better beyond noise); with a warm one a few suffice.
    static let threads = 8

    /// Threads once the inodes are known to be cached: the stats then wait on nothing, and more
    /// threads than cores only take turns (torch's tree on 2 cores, warm, one process, 5 rounds
    /// alternating: 8 threads 33.1 ms, 2 threads 30.0 ms, 3 threads 30.5 ms).
    static let warmThreads = min(threads, max(2, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))

    /// Names the first, serial part of a stat pass covers before it picks its threads.
    static let sampleNames = 256

    /// Runs `body` for every group: the first ones (`sampleNames` names) on this thread, timed;
    /// then the rest on `threads` threads where a name took longer than a cached inode takes
    /// (it waited on the disk), else on `warmThreads`.
    static func forEachGroup(_ groups: [Group], _ body: @escaping @Sendable (Int) -> Void) {
        let start = ProcessControl.monotonicNs()
        var first = 0, names = 0
        while first < groups.count && names < sampleNames {
            body(first)
            names += groups[first].members.count
            first += 1
        }
        guard first < groups.count else { return }
        // ~1.2 µs a name with its inode cached on the 2-core VM; ~25 µs or more when it is read.
        let cold = ProcessControl.monotonicNs() - start > UInt64(names) * 8_000
        let rest = first
        blockingParallelFor(parts: groups.count - rest, threads: cold ? threads : warmThreads) { g in body(rest + g) }
    }

    /// The entries of one directory to stat: `members[j]` is the caller's index of `entries[j]`.
    struct Group: Sendable {
        var directory: Int
        var members: [Int]
        var entries: [Int]
    }

    /// `entries` (manifest indices, any order) grouped by parent directory, each group in
    /// manifest order. `members` index into `entries`.
    static func groups(entries: [Int], manifest m: Manifest) -> [Group] {
        let order = entries.indices.sorted { entries[$0] < entries[$1] }
        var out: [Group] = []
        for k in order {
            let i = entries[k], parent = Int(m.entries[i].parent)
            // Manifest order keeps a directory's children contiguous, so one parent is one run.
            if out.last?.directory != parent { out.append(Group(directory: parent, members: [], entries: [])) }
            out[out.count - 1].members.append(k)
            out[out.count - 1].entries.append(i)
        }
        return out
    }

    /// The stats of a group's entries, or the errno of opening their directory.
    static func stat(_ g: Group, manifest m: Manifest, root: FileDescriptor) -> Result<[NameStat], Int32Error> {
        let dir: FileDescriptor
        if g.directory == 0 {
            dir = root
        } else {
            do { dir = try root.openDirectory(beneath: m.path(g.directory)) } catch {
                return .failure(Int32Error((error as? SystemError)?.errno ?? EIO))
            }
        }
        defer { if g.directory != 0 { dir.close() } }
        let starts = g.entries.map { m.entries[$0].nameStart }
        let lengths = g.entries.map { m.entries[$0].nameLength }
        return .success(dir.statNames(m.names, starts: starts, lengths: lengths))
    }

    /// For a message once opening directory `d` failed: the path of the topmost directory from
    /// the root down to `d` that is not a directory any more (a symlink, a file), else `d`'s.
    static func firstNonDirectory(above d: Int, manifest m: Manifest, root: String) -> String {
        var chain = [d]
        while let last = chain.last, last != 0 { chain.append(Int(m.entries[last].parent)) }
        for a in chain.reversed() {
            let p = a == 0 ? root : root + "/" + m.path(a).pathString
            if (try? FS.lstat(p))?.kind != .directory { return p }
        }
        return d == 0 ? root : root + "/" + m.path(d).pathString
    }
}

/// An errno as an Error, for `Result`.
struct Int32Error: Error, Equatable {
    var errno: Int32
    init(_ errno: Int32) { self.errno = errno }
}
