import EnvCache
import EnvFetch
import EnvFS
import EnvFormat
import Foundation
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
    static func useTree(_ tree: MaterializedTree) -> (use: Bool, note: String?) {
        switch tree.check() {
        case .ready: return (true, nil)
        case .absent: return (false, nil)
        case let .damaged(why):
            tree.remove()
            return (false, "materialized tree \(tree.path) is damaged (\(why)); removed, serving through FUSE")
        }
    }

    /// The overlay's lower layers above the FUSE mount (topmost first): the tree, and for a
    /// relocated mount the relocation layer of this mount path above it, built now from verified
    /// chunks when missing or damaged (a few files: scripts, pyvenv.cfg, .pth). Empty when the
    /// mount must be served through FUSE. Returns the lines to log.
    static func lowers(_ tree: MaterializedTree, relocated: RelocatedFiles?, mountpoint: String,
                       fetcher: ChunkFetcher) -> (lowers: [String], notes: [String]) {
        let (use, note) = useTree(tree)
        var notes = note.map { [$0] } ?? []
        guard use else { return ([], notes) }
        guard let relocated else { return ([tree.path], notes) }
        let layer = RelocationLayer(tree: tree, mountpoint: mountpoint.pathBytes)
        switch layer.check(relocated) {
        case .ready:
            return ([layer.path, tree.path], notes)
        case let .damaged(why):
            notes.append("relocation layer \(layer.path) is damaged (\(why)); rebuilding it")
            layer.remove()
        case .absent:
            break
        }
        do {
            try buildLayer(layer, relocated: relocated, fetcher: fetcher)
            return ([layer.path, tree.path], notes)
        } catch {
            layer.remove()
            notes.append("cannot build the relocation layer \(layer.path) (\(error)); serving through FUSE")
            return ([], notes)
        }
    }

    /// What `envmount status` says about a native mount.
    static func summary(_ tree: MaterializedTree, lowers: [String], relocated: RelocatedFiles?) -> NativeSummary {
        let t = tree.totals
        return NativeSummary(tree: tree.path, files: t.files, bytes: t.bytes,
                             relocationLayer: lowers.count > 1 ? lowers[0] : nil,
                             relocatedFiles: lowers.count > 1 ? (relocated?.fileCount ?? 0) : 0)
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
            let t = Thread { [self] in run() }
            t.name = "envmount-materialize"
            t.start()
        }

        func stop() { stopped.store(true, ordering: .relaxed) }

        private func allCached() -> Bool {
            (0..<UInt32(tree.manifest.chunks.count)).allSatisfy { fetcher.isCached($0) }
        }

        private func run() {
            while !stopped.load(ordering: .relaxed) {
                if allCached() { break }
                for _ in 0..<20 where !stopped.load(ordering: .relaxed) { usleep(100_000) }
            }
            if stopped.load(ordering: .relaxed) { return }
            let size = tree.totals.bytes
            if let limit = cache.limit, cache.usage.bytes + size > limit {
                Log.info("not materializing \(tree.id.hex.prefix(16)): \(formatBytes(size)) more would pass --cache-size \(formatBytes(limit))")
                return
            }
            let start = Date()
            do {
                let fetcher = self.fetcher
                let r = try tree.materialize { chunk, offset, count, buf in
                    try fetcher.read(chunk, offset: offset, count: count, into: &buf, at: 0)
                }
                Log.info("materialized \(tree.totals.files) files (\(formatBytes(size)); \(r.written) written, \(r.shared) shared with other revisions) in \(String(format2: Date().timeIntervalSince(start))) s at \(tree.path): the next mount serves them natively")
                if let relocated {
                    let layer = RelocationLayer(tree: tree, mountpoint: mountpoint.pathBytes)
                    try buildLayer(layer, relocated: relocated, fetcher: fetcher)
                    Log.info("relocation layer for \(mountpoint): \(relocated.fileCount) files and \(relocated.symlinkCount) symlinks at \(layer.path)")
                }
            } catch {
                Log.error("cannot materialize \(tree.path): \(error)")
            }
        }
    }
}
