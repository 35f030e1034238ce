import EnvCache
import EnvFetch
import EnvFS
import EnvFormat
import FoundationEssentials
import Glibc
import Synchronization
import SysKit

/// Serving a revision natively: once every chunk of a revision is cached, its files are
/// materialized whole in the cache (EnvFS/MaterializedTree.swift); the next mount of that
/// revision puts the tree above the FUSE mount in an overlay, so the kernel serves every file,
/// name and directory from local disk and the daemon sees almost no requests.
enum NativeServing {
    /// Whether a mount can serve `tree`: it is complete and no file in it changed since it was
    /// written. A damaged tree is removed (and rebuilt later from verified chunks).
    /// Returns the line to log (the daemon's log is open only once the mount answers).
    static func useTree(_ tree: MaterializedTree) -> (use: Bool, note: String?, contents: TreeContents?) {
        let (state, contents) = tree.checkCounting()
        switch state {
        case .ready: return (true, nil, contents)
        case .absent: return (false, nil, nil)
        case let .damaged(why):
            tree.remove()
            return (false, "materialized tree \(tree.path) is damaged (\(why)); removed, serving through FUSE", nil)
        }
    }

    /// What a sealed tree holds: its files (entry indices), their bytes, and whether it is partial.
    typealias TreeContents = (files: Set<Int>, bytes: UInt64, partial: Bool)

    /// The overlay's lower layers above the FUSE mount (topmost first): the tree, and for a
    /// relocated mount the relocation layer of this mount path above it, built now from verified
    /// chunks when missing or damaged (a few files: scripts, pyvenv.cfg, .pth). Empty when the
    /// mount must be served through FUSE. Returns the lines to log.
    static func lowers(_ tree: MaterializedTree, relocated: RelocatedFiles?, mountpoint: String,
                       fetcher: ChunkFetcher) -> (lowers: [String], notes: [String], contents: TreeContents?) {
        let (use, note, contents) = useTree(tree)
        var notes = note.map { [$0] } ?? []
        guard use else { return ([], notes, nil) }
        guard let relocated else { return ([tree.path], notes, contents) }
        let layer = RelocationLayer(tree: tree, mountpoint: mountpoint.pathBytes)
        switch layer.check(relocated) {
        case .ready:
            return ([layer.path, tree.path], notes, contents)
        case let .damaged(why):
            notes.append("relocation layer \(layer.path) is damaged (\(why)); rebuilding it")
            layer.remove()
        case .absent:
            break
        }
        do {
            try buildLayer(layer, relocated: relocated, fetcher: fetcher)
            return ([layer.path, tree.path], notes, contents)
        } catch {
            layer.remove()
            notes.append("cannot build the relocation layer \(layer.path) (\(error)); serving through FUSE")
            return ([], notes, nil)
        }
    }

    /// What `envmount status` says about a native mount.
    static func summary(_ tree: MaterializedTree, contents c: TreeContents?, lowers: [String], relocated: RelocatedFiles?) -> NativeSummary {
        let t = tree.totals
        return NativeSummary(tree: tree.path, files: c?.files.count ?? t.files, bytes: c?.bytes ?? t.bytes,
                             partial: c?.partial ?? false, totalFiles: t.files,
                             relocationLayer: lowers.count > 1 ? lowers[0] : nil,
                             relocatedFiles: lowers.count > 1 ? (relocated?.fileCount ?? 0) : 0)
    }

    /// With a cache limit, counts the cache's materialized trees against it (in the background:
    /// it waits for the cache's first scan).
    static func accountTrees(_ cache: ChunkCache) {
        guard cache.limit != nil else { return }
        DetachedThread.start(name: "em-tree-bytes") { cache.setOtherBytes(MaterializedTree.diskBytes(cacheDirectory: cache.directory)) }
    }

    /// Builds the relocation layer from what a FUSE mount at its path presents, through a
    /// filesystem of its own (no read-ahead, nothing recorded for profiles).
    static func buildLayer(_ layer: RelocationLayer, relocated: RelocatedFiles, fetcher: ChunkFetcher) throws {
        let fs = EnvFilesystem(manifest: layer.tree.manifest, fetcher: fetcher, pool: nil, readAhead: nil, relocated: relocated)
        try layer.build(fs)
    }

    /// Builds the tree in the background once every chunk of the revision is cached (after
    /// `warm --all`, or once reads have fetched them all), for the next mount.
    final class Materializer: Sendable {
        let tree: MaterializedTree
        let fetcher: ChunkFetcher
        let cache: ChunkCache
        /// This mount's relocation (its layer is built with the tree, for the next mount here).
        let relocated: RelocatedFiles?
        let mountpoint: String
        private let stopped = Atomic<Bool>(false)

        init(tree: MaterializedTree, fetcher: ChunkFetcher, cache: ChunkCache, relocated: RelocatedFiles?, mountpoint: String) {
            self.tree = tree
            self.fetcher = fetcher
            self.cache = cache
            self.relocated = relocated
            self.mountpoint = mountpoint
        }

        func start() {
            DetachedThread.start(name: "em-materialize") { [self] in run() }
        }

        func stop() { stopped.store(true, ordering: .relaxed) }

        /// Whether each chunk of the revision is cached now.
        private func cachedChunks() -> [Bool] {
            (0..<UInt32(tree.manifest.chunks.count)).map { fetcher.isCached($0) }
        }

        /// The inode-owning regular files whose chunks are all cached, in path order.
        private func cachedFiles(_ cached: [Bool]) -> [Int] {
            let m = tree.manifest
            return m.entries.indices.filter { i in
                let e = m.entries[i]
                return e.kind == .regular && e.owner == UInt32(i)
                    && m.fileSpans(i).allSatisfy { m.spans[$0].chunk == Manifest.Span.zeros || cached[Int(m.spans[$0].chunk)] }
            }
        }

        /// Seconds between looks at the cache, and how many looks with nothing new make the
        /// cached part of a revision that cannot be cached whole "settled" (a partial tree).
        static let pollSeconds: UInt32 = 2
        static let settledPolls = 2

        private func sleepPoll() {
            for _ in 0..<(Self.pollSeconds * 10) where !stopped.load(ordering: .relaxed) { usleep(100_000) }
        }

        /// Waits until every chunk is cached (a complete tree), or, when `--cache-size` is smaller
        /// than the revision, until the cached part stops growing (a partial tree); then builds it.
        private func run() {
            let size = tree.totals.bytes
            var only: Set<Int>? = nil
            var last: [Int] = [], settled = 0
            while !stopped.load(ordering: .relaxed) {
                let cached = cachedChunks()
                if !cached.contains(false) { break }
                if let limit = cache.limit, size > Self.budget(limit, cacheDir: cache.directory, complete: true) {
                    // Files with bytes: empty ones are always "cached", and are written anyway.
                    let m = tree.manifest
                    let files = cachedFiles(cached)
                    let withBytes = files.filter { m.entries[$0].size > 0 }
                    settled = withBytes == last && !withBytes.isEmpty ? settled + 1 : 0
                    last = withBytes
                    if settled >= Self.settledPolls {
                        let chosen = choose(withBytes, budget: Self.budget(limit, cacheDir: cache.directory, complete: false))
                        only = chosen.isEmpty ? [] : chosen.union(files.filter { m.entries[$0].size == 0 })
                        break
                    }
                }
                sleepPoll()
            }
            if stopped.load(ordering: .relaxed) { return }
            if only == nil, let limit = cache.limit, size > Self.budget(limit, cacheDir: cache.directory, complete: true) {
                Log.info("not materializing \(tree.id.hex.prefix(16)): \(formatBytes(size)) would pass --cache-size \(formatBytes(limit)) with the trees already cached")
                return
            }
            if let o = only, o.isEmpty {
                Log.info("not materializing \(tree.id.hex.prefix(16)): no cached file fits half of --cache-size")
                return
            }
            let start = Date()
            do {
                let fetcher = self.fetcher
                // This mount path's relocation layer first: the tree's seal, written last, is what
                // says "materialized" (`envmount status`), and then the next mount here has both.
                if let relocated {
                    let layer = RelocationLayer(tree: tree, mountpoint: mountpoint.pathBytes)
                    try buildLayer(layer, relocated: relocated, fetcher: fetcher)
                    Log.info("relocation layer for \(mountpoint): \(relocated.fileCount) files and \(relocated.symlinkCount) symlinks at \(layer.path)")
                }
                let r = try tree.materialize(only: only) { chunk, offset, count, buf in
                    try fetcher.read(chunk, offset: offset, count: count, into: &buf, at: 0)
                }
                let have = tree.contents()
                let what = only == nil ? "\(tree.totals.files) files (\(formatBytes(size)))"
                    : "\(have?.files.count ?? 0) of \(tree.totals.files) files (\(formatBytes(have?.bytes ?? 0)) of \(formatBytes(size)); a partial tree, the rest stays with FUSE)"
                Log.info("materialized \(what); \(r.written) written, \(r.shared) shared with other revisions, in \(String(format2: Date().timeIntervalSince(start))) s at \(tree.path): the next mount serves them natively")
                if let files = have?.files { settleCache(treeFiles: files) }
            } catch {
                Log.error("cannot materialize \(tree.path): \(error)")
            }
        }

        /// How many bytes of files a tree may hold under `limit`, beside the trees already in the
        /// cache: all of it for a complete tree (the FUSE mount below it then serves nothing of
        /// this revision), half for a partial one (the chunks of the files it lacks need the rest).
        static func budget(_ limit: UInt64, cacheDir: String, complete: Bool) -> UInt64 {
            let others = MaterializedTree.diskBytes(cacheDirectory: cacheDir)
            let share = complete ? limit : limit / 2
            return share > others ? share - others : 0
        }

        /// Files to write, in path order, while they fit `budget`.
        private func choose(_ files: [Int], budget: UInt64) -> Set<Int> {
            var out = Set<Int>()
            var used: UInt64 = 0
            for i in files {
                let n = tree.manifest.entries[i].size
                if used + n > budget { continue }
                used += n
                out.insert(i)
            }
            return out
        }

        /// The tree now holds copies of its files' chunks: those no missing file needs go first
        /// when the cache evicts, and the tree's bytes count against the limit.
        private func settleCache(treeFiles: Set<Int>) {
            let m = tree.manifest
            var needed = [Bool](repeating: false, count: m.chunks.count)
            var inTree = [Bool](repeating: false, count: m.chunks.count)
            for (i, e) in m.entries.enumerated() where e.kind == .regular && e.owner == UInt32(i) {
                for s in m.fileSpans(i) where m.spans[s].chunk != Manifest.Span.zeros {
                    if treeFiles.contains(i) { inTree[Int(m.spans[s].chunk)] = true } else { needed[Int(m.spans[s].chunk)] = true }
                }
            }
            let copies = m.chunks.indices.filter { inTree[$0] && !needed[$0] }.map { m.chunks[$0].id }
            cache.demote(copies)
            let before = cache.usage
            cache.setOtherBytes(MaterializedTree.diskBytes(cacheDirectory: cache.directory))
            let after = cache.usage
            Log.info("cache: \(copies.count) chunks now held by the tree evict first; chunks \(formatBytes(before.bytes)) -> \(formatBytes(after.bytes)), trees \(formatBytes(after.otherBytes))"
                     + (cache.limit.map { ", limit \(formatBytes($0))" } ?? ""))
        }
    }
}
