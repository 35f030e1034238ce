import EnvFetch
import EnvFS
import EnvFormat
import FuseKit
import Glibc
import Synchronization
import SysKit

/// Fills the kernel's caches ahead of the workload while a profile is prefetched, so that the
/// workload's own system calls find names and bytes in the kernel instead of waiting on a FUSE
/// round trip for each (on the 2-vCPU test VM a round trip costs ~200 µs, and a cold small
/// import makes ~3,300 of them, one after another).
///
/// - It lists, through the FUSE mount and on a few threads, every directory that holds a file of
///   the profile's chunks, in the profile's order: each READDIRPLUS gives the kernel a dentry and
///   an inode for every name in the directory (and caches the listing), so the workload's
///   lookups of those names, `__pycache__/*.pyc` included, send no LOOKUP.
/// - As each chunk of the profile is verified (fetched, or hashed on first use), it puts the
///   small files lying in that chunk into the page cache (`FuseNotifier.store`), so reading them
///   sends no READ. Python source is left out (an import with valid bytecode only stats it), and
///   so are files over `maxFileSize` (read-ahead serves those in large READs) and relocated files.
///
/// - After listing a directory that is a regular Python package (it holds `__init__.py`), it
///   looks up the names Python's import system probes there before the source and that do not
///   exist (`__init__` + each extension-module suffix: `.cpython-311-x86_64-linux-gnu.so`,
///   `.abi3.so`, `.so`), so the kernel caches them as absent: 3 round trips per package the
///   workload imports, 440 of the small venv's imports.
///
/// The bytes come from verified cache entries only (`EnvFilesystem.contentsAtHand`); a store that
/// races a READ of the same file rewrites the same bytes. Nothing here fetches: a chunk the
/// prefetch never brings is skipped once its job has finished.
final class KernelPrimer: Sendable {
    static let maxFileSize: UInt64 = 1 << 20
    static let listers = 3

    private let fs: EnvFilesystem
    private let notifier: FuseNotifier
    private let root: String
    private let stopped = Atomic<Bool>(false)
    /// Opened by `mounted()`: nothing touches the FUSE mount before it answers.
    private let mountGate = Mutex<Bool>(false)
    /// Directories listed so far (by entry index), for the storer to wait on.
    private let listed: Mutex<[Bool]>
    let stats = Stats()

    final class Stats: Sendable {
        /// Directories listed; the files stored are FuseOpCounters.pushedFiles.
        let directories = Atomic<Int>(0)
        /// Every directory is listed and every chunk of the profile gone through (or it stopped).
        let finished = Atomic<Bool>(false)
        /// Threads still at work: the storer and the listers.
        let working = Atomic<Int>(1)
        func threadDone() {
            if working.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { finished.store(true, ordering: .releasing) }
        }
    }

    /// `root`: where the FUSE mount itself is (under an overlay, its hidden lower).
    init(fs: EnvFilesystem, notifier: FuseNotifier, root: String) {
        self.fs = fs
        self.notifier = notifier
        self.root = root
        self.listed = Mutex([Bool](repeating: false, count: fs.manifest.entries.count))
    }

    /// The FUSE mount answers from now on.
    func mounted() { mountGate.withLock { $0 = true } }

    /// Stops at the next file or directory (unmount).
    func stop() { stopped.store(true, ordering: .relaxed) }

    /// The work for a profile's chunks, in profile order: the files (entry indices) to store per
    /// chunk, and the directories to list: those holding any file of the profile's chunks (its
    /// `.py` files are stat'ed even when only their bytecode is read), each after its ancestors,
    /// in order of first use.
    struct Plan: Equatable {
        var files: [[Int]]
        var directories: [Int]
        /// Names an import probes in a package directory before its `__init__.py`.
        var packageProbes: [[UInt8]] = []
    }

    static func plan(_ m: Manifest, profile chunks: [UInt32], maxFileSize: UInt64 = maxFileSize,
                     skip: (Int) -> Bool = { _ in false }) -> Plan {
        var position = [Int32](repeating: -1, count: m.chunks.count)
        for (p, c) in chunks.enumerated() where position[Int(c)] < 0 { position[Int(c)] = Int32(p) }
        var files = [[Int]](repeating: [], count: chunks.count)
        // Every file of the profile's chunks, by the position of its first chunk: its directory
        // is listed; stored too if it is small, one chunk, and not Python source.
        var named = [[Int]](repeating: [], count: chunks.count)
        for i in m.entries.indices {
            let e = m.entries[i]
            guard e.kind == .regular, e.count > 0 else { continue }
            let first = m.spans[Int(e.first)].chunk
            guard first != Manifest.Span.zeros, position[Int(first)] >= 0 else { continue }
            let p = Int(position[Int(first)])
            named[p].append(i)
            guard Int(e.owner) == i, e.count == 1, e.size > 0, e.size <= maxFileSize,
                  !isPythonSource(m.name(i)), !skip(i) else { continue }
            files[p].append(i)
        }
        var seen = Set<Int>()
        var directories: [Int] = []
        func add(_ d: Int) {
            guard seen.insert(d).inserted else { return }
            if d != 0 { add(Int(m.entries[d].parent)) }
            directories.append(d)
        }
        for group in named { for i in group { add(Int(m.entries[i].parent)) } }
        let probes = [extensionSuffix(m), ".abi3.so", ".so"].compactMap { $0 }.map { Array("__init__\($0)".utf8) }
        return Plan(files: files, directories: directories, packageProbes: probes)
    }

    /// The CPython extension-module suffix the tree's own modules use (`.cpython-311-x86_64-linux-gnu.so`),
    /// the most common one when several are present; nil when the tree has none.
    static func extensionSuffix(_ m: Manifest) -> String? {
        var counts: [String: Int] = [:]
        let marker = Array(".cpython-".utf8)
        for i in m.entries.indices where m.entries[i].kind == .regular {
            let n = m.name(i)
            guard n.count > marker.count + 3, n.suffix(3).elementsEqual(".so".utf8),
                  let at = n.firstRange(of: marker) else { continue }
            counts[String(decoding: n[at.lowerBound...], as: UTF8.self), default: 0] += 1
        }
        return counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }?.key
    }

    static func isPythonSource(_ name: ArraySlice<UInt8>) -> Bool {
        name.count >= 3 && name.suffix(3).elementsEqual(".py".utf8)
    }

    /// Starts priming for the profile's chunks; `jobFinished` says when the prefetch is over, after
    /// which a chunk still not verified is given up.
    func start(profile chunks: [UInt32], fetcher: ChunkFetcher, jobFinished: @escaping @Sendable () -> Bool) {
        DetachedThread.start(name: "em-prime") { [self] in
            defer { stats.threadDone() }
            let manifest = fs.manifest
            let plan = Self.plan(manifest, profile: chunks)
            guard waitUntilMounted() else { return }
            let nextDirectory = Atomic<Int>(0)
            stats.working.add(Self.listers, ordering: .relaxed)
            for n in 0..<Self.listers {
                DetachedThread.start(name: "em-prime-ls\(n)") { [self] in
                    defer { stats.threadDone() }
                    while !stopped.load(ordering: .relaxed) {
                        let k = nextDirectory.add(1, ordering: .relaxed).oldValue
                        guard k < plan.directories.count else { return }
                        let d = plan.directories[k]
                        let path = d == 0 ? root : root + "/" + String(decoding: manifest.path(d), as: UTF8.self)
                        _ = try? FS.listDirectory(path.pathBytes)
                        listed.withLock { $0[d] = true }
                        if manifest.lookup(d, "__init__.py".utf8) != nil {
                            for probe in plan.packageProbes where manifest.lookup(d, probe) == nil {
                                _ = try? FS.lstat(path.pathBytes + [UInt8(ascii: "/")] + probe)
                            }
                        }
                        stats.directories.add(1, ordering: .relaxed)
                    }
                }
            }
            for (p, group) in plan.files.enumerated() where !group.isEmpty {
                guard waitFor({ fetcher.isVerified(chunks[p]) }, orGiveUpWhen: jobFinished) else { continue }
                for i in group {
                    let parent = Int(manifest.entries[i].parent)
                    guard waitFor({ listed.withLock { $0[parent] } }, orGiveUpWhen: { false }) else { return }
                    guard let r = fs.contentsAtHand(UInt64(i + 1)) else { continue }
                    notifier.store(ino: UInt64(i + 1), fd: r.fd.rawValue, offset: r.offset, length: r.length)
                }
            }
        }
    }

    private func waitUntilMounted() -> Bool {
        waitFor({ mountGate.withLock { $0 } }, orGiveUpWhen: { false })
    }

    /// Polls `ready` every 0.5 ms; false once stopped, or once `giveUp` holds and `ready` still not.
    private func waitFor(_ ready: () -> Bool, orGiveUpWhen giveUp: () -> Bool) -> Bool {
        while !ready() {
            if stopped.load(ordering: .relaxed) { return false }
            if giveUp() { return ready() }
            usleep(500)
        }
        return !stopped.load(ordering: .relaxed)
    }
}
