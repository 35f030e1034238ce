// A small tree published into a MemoryStore and opened as a MountService, with no FUSE mount:
// the daemon's request handling runs against the real filesystem, fetcher and cache.
import EnvCache
@testable import EnvDaemon
import EnvFetch
import EnvFS
import EnvFormat
import EnvPublish
import EnvStore
import Foundation
import Glibc
import SysKit
import XCTest

struct TempDir {
    let path: String
    init(_ tag: String) throws {
        path = "/tmp/envdaemon-tests-\(tag)-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FS.makeDirectories(path)
    }
    func remove() { try? FS.removeTree(path) }
}

func writeFile(_ path: String, _ bytes: [UInt8], mode: UInt32 = 0o644) throws {
    let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
    defer { fd.close() }
    try fd.writeAll(bytes)
}

final class ServiceFixture {
    let dir: TempDir
    let store = MemoryStore()
    let cache: ChunkCache
    let opened: OpenedEnvironment
    let fs: EnvFilesystem
    let fetcher: ChunkFetcher
    let pool: FetchPool
    let recorder: AccessRecorder
    let service: MountService

    init() throws {
        dir = try TempDir("svc")
        let src = dir.path + "/src"
        try FS.makeDirectories(src + "/pkg/sub")
        var seed: UInt64 = 1
        func bytes(_ n: Int) -> [UInt8] {
            (0..<n).map { i in seed = seed &* 6364136223846793005 &+ 1442695040888963407; return UInt8(truncatingIfNeeded: (seed >> 33) ^ UInt64(i)) }
        }
        try writeFile(src + "/pkg/a.bin", bytes(300_000))
        try writeFile(src + "/pkg/sub/b.bin", bytes(200_000))
        try writeFile(src + "/top.txt", Array("hello\n".utf8))
        var po = PublishOptions(env: "svc")
        po.chunking = ChunkingParams(minSize: 4 << 10, avgSize: 16 << 10, maxSize: 64 << 10)
        po.workers = 2
        _ = try Publisher(store: store, options: po, warn: { _ in }).publish(source: src)
        cache = try ChunkCache(directory: dir.path + "/cache", durable: false)
        opened = try EnvironmentResolver(store: store, cache: cache).resolve(env: "svc")
        let manifest = opened.manifest
        fetcher = ChunkFetcher(store: store, cache: cache, manifest: manifest)
        pool = FetchPool(fetcher: fetcher, manifest: manifest, threads: 2)
        let recorder = AccessRecorder(chunkCount: manifest.chunks.count)
        self.recorder = recorder
        fs = EnvFilesystem(manifest: manifest, fetcher: fetcher, pool: pool, onChunkRead: { recorder.record($0) })
        service = MountService(mountpoint: dir.path + "/mnt", opened: opened, store: store, cache: cache, fs: fs,
                               fetcher: fetcher, pool: pool, recorder: recorder)
    }

    deinit {
        pool.stop()
        dir.remove()
    }

    func ino(_ path: String) throws -> UInt64 {
        var ino: UInt64 = 1
        for c in path.split(separator: "/") { ino = try fs.lookup(parent: ino, name: Array(c.utf8)).ino }
        return ino
    }

    /// Waits until every job the pool knows has finished.
    func waitForJobs(seconds: Double = 30) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if pool.jobs.allSatisfy(\.isFinished) { return true }
            usleep(10_000)
        }
        return false
    }
}
