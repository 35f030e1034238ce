import EnvFormat
import EnvStore
import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// Mounts from real remote stores on 127.0.0.1: S3 (moto, signatures checked) and HTTP (nginx),
/// and through the fault proxy: retries, corrupt bytes, a store that goes down and comes back,
/// mirror failover.
final class RemoteMountTests: MountTestCase {

    func testPublishToS3AndMountFromS3WithCheckedSignatures() throws {
        let moto = try MotoServer()
        stops.append { moto.stop() }
        try S3Store(url: "s3://envs", options: StoreOptions(), environment: moto.env).createBucket()
        let src = h.dir + "/src/s3env", mnt = h.dir + "/mnt", store = "s3://envs/team/prod"
        try TreeFixture.build(src, manyFiles: false, venv: true)
        try FS.unlink((src + "/" + TreeFixture.sparseName).pathBytes)   // keep the upload small

        var wrong = moto.env
        wrong["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
        let refused = try h.run("envpublish", [src, store, "--quiet"], env: wrong)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("SignatureDoesNotMatch"), refused.stderr)

        let p = try h.run("envpublish", [src, store, "--quiet"], env: moto.env)
        XCTAssertEqual(p.status, 0, p.stderr)
        try h.mount(store, mnt, cache: h.dir + "/cache", env: moto.env)
        XCTAssertGreaterThan(try TreeFixture.assertSame(source: src, mount: mnt, skipContent: []), 20)
        let py = try h.run(mnt + "/venv/bin/python", ["-c", "import envmount_probe; print(envmount_probe.VALUE[:8])"])
        XCTAssertEqual(py.status, 0, py.stderr)

        // A re-publish of the same tree uploads nothing and keeps the revision.
        let again = try h.run("envpublish", [src, store], env: moto.env)
        XCTAssertTrue(again.stdout.contains("unchanged"), again.stdout)
    }

    /// Four files of distinct random bytes, so each read below needs chunks no other read fetched.
    func publishFourFiles() throws -> (src: String, store: String) {
        let src = h.dir + "/src/four", store = h.dir + "/store"
        try FS.makeDirectories(src)
        var rng = SeededRandom(seed: 21)
        for i in 0..<4 { try writeFile((src + "/f\(i).bin").pathBytes, rng.bytes(6 << 20)) }
        XCTAssertEqual(try h.publish(src, store).status, 0)
        return (src, store)
    }

    func testHTTPMountRetriesRefusesCorruptBytesFailsBoundedAndRecovers() throws {
        let (src, store) = try publishFourFiles()
        let nginx = try NginxServer(serving: store)
        stops.append { nginx.stop() }
        let proxy = try FaultProxy(upstream: nginx.url)
        stops.append { proxy.stop() }
        let mnt = h.dir + "/mnt"
        try h.mount(proxy.url + "/", mnt, cache: h.dir + "/cache", ["--env", "four", "--timeout", "3", "--read-ahead-chunks", "0", "--stream-read-ahead", "0"])
        func read(_ i: Int) throws -> [UInt8] { try TreeFixture.readAll((mnt + "/f\(i).bin").pathBytes) }
        func source(_ i: Int) throws -> [UInt8] { try TreeFixture.readAll((src + "/f\(i).bin").pathBytes) }

        // 500s and a reset are retried.
        try proxy.set(["fail500": "2", "reset": "1"])
        XCTAssertEqual(try read(0), try source(0))

        // Flipped bytes are refused (EIO), never served; once the store is sound the read works.
        try proxy.set(["flip": "1000"])
        XCTAssertThrowsError(try read(1)) { XCTAssertEqual(($0 as? SystemError)?.errno, EIO) }
        try proxy.set([:])
        XCTAssertEqual(try read(1), try source(1))

        // The store goes down: the read fails within the deadline, then works again, no remount.
        try proxy.set(["fail500_fraction": "1"])
        let start = Date()
        XCTAssertThrowsError(try read(2)) { XCTAssertEqual(($0 as? SystemError)?.errno, EIO) }
        XCTAssertLessThan(Date().timeIntervalSince(start), 15, "a read of an unreachable chunk must fail in bounded time")
        try proxy.set([:])
        XCTAssertEqual(try read(2), try source(2))
        XCTAssertGreaterThan(try proxy.requests(), 5)
    }

    func testAMissQueuesTheFollowingChunksOfTheStream() throws {
        let (src, store) = try publishFourFiles()
        let nginx = try NginxServer(serving: store)
        stops.append { nginx.stop() }
        let mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        let pid = try h.mount(nginx.url + "/", mnt, cache: cache, ["--env", "four", "--read-ahead-chunks", "0", "--stream-read-ahead", "64"])
        XCTAssertTrue(try maps(pid, library: "libcurl"), "an HTTP mount's daemon did not load libcurl")
        // Read only the first 4 KiB of f0: one miss. The files after it in path order arrive anyway.
        let fd = try FileDescriptor.open(mnt + "/f0.bin", O_RDONLY)
        XCTAssertEqual(try fd.read(count: 4096, offset: 0), Array(try TreeFixture.readAll((src + "/f0.bin").pathBytes).prefix(4096)))
        fd.close()
        let ref = try Ref.decode(try FS.readFile(store + "/refs/four"))
        let m = try Manifest.decode(try FS.readFile(store + "/" + Ref.manifestKey(ref.manifest)))
        let wanted = Set(m.fileSpans(m.resolve(Array("f1.bin".utf8))!).map { m.chunks[Int(m.spans[$0].chunk)].id.hex })
        let deadline = Date().addingTimeInterval(20)
        var cached = Set<String>()
        while Date() < deadline && !wanted.isSubset(of: cached) {
            usleep(100_000)
            cached = Set(wanted.filter { FS.exists(cache + "/v1/chunks/\($0.prefix(2))/\($0)") })
        }
        XCTAssertEqual(cached, wanted, "stream read-ahead did not fetch the next file's chunks")
    }

    func testHTTPMirrorTakesOverWhenTheFirstURLIsDown() throws {
        let (src, store) = try publishFourFiles()
        let nginx = try NginxServer(serving: store)
        stops.append { nginx.stop() }
        let dead = "http://127.0.0.1:\(try Servers.freePort())/"
        let mnt = h.dir + "/mnt"
        try h.mount(dead, mnt, cache: h.dir + "/cache", ["--env", "four", "--mirror", nginx.url + "/", "--timeout", "10"])
        XCTAssertEqual(try TreeFixture.readAll((mnt + "/f3.bin").pathBytes), try TreeFixture.readAll((src + "/f3.bin").pathBytes))
        XCTAssertGreaterThan(nginx.requestCount, 0)
    }
}
