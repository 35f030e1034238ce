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

    /// Builds the tree in the background once every chunk of the revision is cached (after
    /// `warm --all`, or once reads have fetched them all), for the next mount.
    final class Materializer: Sendable {
        let tree: MaterializedTree
        let fetcher: ChunkFetcher
        let cache: ChunkCache
        private let stopped = Atomic<Bool>(false)

        init(tree: MaterializedTree, fetcher: ChunkFetcher, cache: ChunkCache) {
            self.tree = tree
            self.fetcher = fetcher
            self.cache = cache
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
            } catch {
                Log.error("cannot materialize \(tree.path): \(error)")
            }
        }
    }
}
