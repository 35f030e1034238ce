import EnvFormat
import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// The chunk cache through real mounts: damaged entries are refetched, never served; a cache
/// directory another user owns is refused; a full cache disk does not multiply what is fetched.
final class CacheTrustTests: MountTestCase {
    var tmpfs: String?

    override func tearDown() {
        h?.unmountAll()
        if let t = tmpfs { _ = Servers.run("/bin/umount", [t]) }
        super.tearDown()
    }

    func manifest(_ store: String, env: String) throws -> Manifest {
        let ref = try Ref.decode(try FS.readFile(store + "/refs/" + env))
        return try Manifest.decode(try FS.readFile(store + "/" + Ref.manifestKey(ref.manifest)))
    }

    func entryPath(_ cache: String, _ id: ChunkID) -> String { "\(cache)/v1/chunks/\(id.hex.prefix(2))/\(id.hex)" }

    /// A flipped byte and a truncation in cache entries, then a remount: the file reads back
    /// exactly (never the flipped byte, never a short file), the entries are repaired, and the
    /// daemon's log names each one.
    func testFlippedByteAndTruncatedEntryAreRefetchedNotServed() throws {
        let src = h.dir + "/src", store = h.dir + "/store", mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        try FS.makeDirectories(src)
        var rng = SeededRandom(seed: 11)
        let data = rng.bytes(6 << 20)
        try writeFile((src + "/data.bin").pathBytes, data)
        XCTAssertEqual(try h.publish(src, store).status, 0)
        let log = h.dir + "/daemon.log"
        try h.mount(store, mnt, cache: cache, ["--log-file", log])
        XCTAssertEqual(try TreeFixture.readAll((mnt + "/data.bin").pathBytes), data)
        XCTAssertEqual(try h.unmount(mnt).status, 0)

        let m = try manifest(store, env: "src")
        let ids = m.fileSpans(m.resolve(Array("data.bin".utf8))!).map { m.chunks[Int(m.spans[$0].chunk)].id }
        XCTAssertGreaterThanOrEqual(ids.count, 3)
        let flipped = entryPath(cache, ids[0]), cut = entryPath(cache, ids[ids.count - 1])
        var b = try FS.readFile(flipped)
        b[1000] ^= 0x01
        try FS.writeFileAtomically(flipped, b, mode: 0o600)
        let c = try FS.readFile(cut)
        try FS.writeFileAtomically(cut, Array(c.prefix(c.count / 2)), mode: 0o600)

        Harness.dropPageCache()
        try h.mount(store, mnt, cache: cache, ["--log-file", log])
        let back = try TreeFixture.readAll((mnt + "/data.bin").pathBytes)
        XCTAssertEqual(back.count, data.count, "a truncated entry made the file end early")
        XCTAssertTrue(back == data, "a damaged cache entry was served")
        XCTAssertEqual(ChunkID.of(try FS.readFile(flipped)), ids[0], "flipped entry repaired")
        XCTAssertEqual(ChunkID.of(try FS.readFile(cut)), ids[ids.count - 1], "truncated entry repaired")
        XCTAssertEqual(try status(mnt)["chunksFetched"] as? Int, 2, "only the two damaged entries are fetched again")
        let text = String(decoding: try FS.readFile(log), as: UTF8.self)
        for id in [ids[0], ids[ids.count - 1]] {
            XCTAssertTrue(text.contains("cached chunk \(id)") && text.contains("removed, fetching it again"), "no log line for \(id):\n\(text)")
        }
    }

    /// A cache directory made by another user, world-writable: the mount is refused before
    /// anything is mounted, with one line naming the directory.
    func testMountRefusesACacheDirectoryOfAnotherUser() throws {
        let src = h.dir + "/src", store = h.dir + "/store", mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        try FS.makeDirectories(src)
        try writeFile((src + "/a").pathBytes, [1, 2, 3])
        XCTAssertEqual(try h.publish(src, store).status, 0)
        try FS.mkdir(cache.pathBytes, mode: 0o777)
        try FS.chmod(cache.pathBytes, 0o777)
        XCTAssertEqual(chown(cache, 65534, 65534), 0)
        try FS.makeDirectories(mnt)
        let r = try h.run("envmount", ["mount", store, mnt, "--cache-dir", cache])
        XCTAssertNotEqual(r.status, 0)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains(cache) && r.stderr.contains("owned by uid 65534"), r.stderr)
        XCTAssertFalse(Harness.isMounted(mnt))
        XCTAssertEqual(try FS.listDirectory(cache), [], "something was written in the refused directory")
    }

    /// The cache on a small tmpfs that something else has filled: reading a 112 MiB file from an
    /// HTTP store fetches each chunk about once (bytes fetched at most 1.1x the file's stored
    /// bytes), not again and again, and the bytes are right.
    func testFullCacheDiskFetchesAtMostATenthMore() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root") }
        let src = h.dir + "/src", store = h.dir + "/store", mnt = h.dir + "/mnt"
        let small = h.dir + "/tmpfs"
        try FS.makeDirectories(src)
        try FS.makeDirectories(small)
        let (rc, out) = Servers.run("/bin/mount", ["-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", small])
        guard rc == 0 else {
            if ProcessControl.environment("CI") != nil { XCTFail("mount -t tmpfs failed: \(out)") }
            throw XCTSkip("mount -t tmpfs failed: \(out)")
        }
        tmpfs = small
        var rng = SeededRandom(seed: 12)
        let data = rng.bytes(112 << 20)
        try writeFile((src + "/big.bin").pathBytes, data)
        XCTAssertEqual(try h.publish(src, store).status, 0)
        let m = try manifest(store, env: "src")
        let fileChunks = Set(m.fileSpans(m.resolve(Array("big.bin".utf8))!).map { m.spans[$0].chunk })
        let stored = fileChunks.reduce(UInt64(0)) { $0 + UInt64(m.chunks[Int($1)].storedSize) }

        let nginx = try NginxServer(serving: store)
        stops.append { nginx.stop() }
        // Fill the file system, leaving the cache no room at all.
        let cache = small + "/cache"
        try FS.makeDirectories(cache + "/v1/chunks", mode: 0o700)
        let filler = try FileDescriptor.open(small + "/filler", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        let block = [UInt8](repeating: 7, count: 64 << 10)
        do { while true { try filler.writeAll(block) } } catch {}
        filler.close()

        try h.mount(nginx.url + "/", mnt, cache: cache, ["--env", "src", "--log-file", h.dir + "/daemon.log"])
        let back = try TreeFixture.readAll((mnt + "/big.bin").pathBytes)
        XCTAssertEqual(back.count, data.count)
        XCTAssertTrue(back == data, "wrong bytes read through a mount whose cache is full")
        let s = try status(mnt)
        let fetched = UInt64(s["bytesFetched"] as? Int ?? -1)
        let requests = s["requests"] as? Int ?? -1
        print("full cache disk: read \(data.count) bytes, stored \(stored), fetched \(fetched) bytes in \(requests) requests for \(fileChunks.count) chunks")
        XCTAssertLessThanOrEqual(Double(fetched), 1.1 * Double(stored), "fetched \(fetched) bytes for \(stored) stored, in \(requests) requests")
        XCTAssertGreaterThanOrEqual(fetched, stored)
    }
}
