@testable import EnvDaemon
import EnvCache
import EnvFormat
import EnvPublish
import EnvStore
import SysKit
import XCTest

/// The cache's copy of a store's ref (what an offline mount falls back to) is written when the ref
/// moved, not at every mount: that write is durable (fsync, rename) and cost a warm native mount
/// 4-8 ms each time.
final class ResolverRefCacheTests: XCTestCase {
    func testTheCachedRefIsRewrittenOnlyWhenTheRefMoves() throws {
        let f = try ServiceFixture()
        defer { f.dir.remove() }
        let refs = "\(f.cache.directory)/v1/refs"
        let path = "\(refs)/\(try XCTUnwrap(try FS.listDirectory(refs).first))/svc"
        let first = try FS.lstat(path)
        XCTAssertEqual(try FS.readFile(path), try f.store.get(Ref.objectKey(env: "svc")))

        // Resolved again, the ref unchanged: the same file (a rewrite renames a new one into place).
        _ = try EnvironmentResolver(store: f.store, cache: f.cache).resolve(env: "svc")
        XCTAssertEqual(try FS.lstat(path).inode, first.inode, "an unchanged ref was written again")

        // A republish moves the ref: the cached copy follows it.
        try writeFile(f.dir.path + "/src/new.txt", Array("new\n".utf8))
        var po = PublishOptions(env: "svc")
        po.chunking = ChunkingParams(minSize: 4 << 10, avgSize: 16 << 10, maxSize: 64 << 10)
        _ = try Publisher(store: f.store, options: po, warn: { _ in }).publish(source: f.dir.path + "/src")
        let opened = try EnvironmentResolver(store: f.store, cache: f.cache).resolve(env: "svc")
        XCTAssertEqual(opened.ref.revision, 2)
        XCTAssertNotEqual(try FS.lstat(path).inode, first.inode)
        XCTAssertEqual(try FS.readFile(path), try f.store.get(Ref.objectKey(env: "svc")))
    }
}
