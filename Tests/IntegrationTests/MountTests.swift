import EnvFormat
import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

final class MountTests: MountTestCase {

    func testEveryEntryOfThePublishedTreeMatchesTheSourceAndTheVenvRuns() throws {
        let src = h.dir + "/src/tree", store = h.dir + "/store", mnt = h.dir + "/mnt"
        try TreeFixture.build(src, manyFiles: true, venv: true)
        let p = try h.publish(src, store, ["--env", "tree"])
        XCTAssertEqual(p.status, 0, p.stderr)
        let pid = try h.mount(store, mnt, cache: h.dir + "/cache")

        let compared = try TreeFixture.assertSame(source: src, mount: mnt)
        XCTAssertGreaterThan(compared, 10_000)
        // A directory store never needs HTTP: the daemon has not loaded libcurl (it is loaded on
        // first use; RemoteMountTests sees an HTTP mount's daemon load it).
        XCTAssertTrue(try maps(pid, library: "libfuse3"), "the check cannot see the daemon's libraries")
        XCTAssertFalse(try maps(pid, library: "libcurl"), "a directory-store mount loaded libcurl")

        // The sparse file: its size, its data regions, and zeros in a hole, without reading 5 GiB.
        let sp = try FileDescriptor.open(mnt + "/" + TreeFixture.sparseName, O_RDONLY)
        let orig = try FileDescriptor.open(src + "/" + TreeFixture.sparseName, O_RDONLY)
        XCTAssertEqual(try FS.stat(mnt + "/" + TreeFixture.sparseName).size, TreeFixture.sparseSize)
        for (off, len) in TreeFixture.sparseDataAt {
            XCTAssertEqual(try sp.read(count: len + 4096, offset: off), try orig.read(count: len + 4096, offset: off))
        }
        XCTAssertEqual(try sp.read(count: 65536, offset: 3 << 30), [UInt8](repeating: 0, count: 65536))
        XCTAssertEqual(try sp.read(count: 100, offset: TreeFixture.sparseSize - 50).count, 50)
        sp.close()
        orig.close()

        // The venv's python runs from the mount and imports a package from its site-packages.
        let py = try h.run(mnt + "/venv/bin/python", ["-c", "import sys, envmount_probe; print(sys.prefix); print(envmount_probe.VALUE)"])
        XCTAssertEqual(py.status, 0, py.stderr)
        XCTAssertEqual(py.stdout.split(separator: "\n").first.map(String.init), mnt + "/venv")
        let expected = try h.run("/usr/bin/env", ["python3", "-c", "import hashlib; print(hashlib.sha256(b'envmount').hexdigest())"])
        XCTAssertEqual(py.stdout.split(separator: "\n").last.map(String.init), expected.stdout.trimmingCharacters(in: .whitespacesAndNewlines))

        // Writes are refused: the mount is read-only.
        XCTAssertThrowsError(try FileDescriptor.open(mnt + "/new-file", O_WRONLY | O_CREAT)) { e in
            XCTAssertEqual((e as? SystemError)?.errno, EROFS)
        }

        let u = try h.unmount(mnt)
        XCTAssertEqual(u.status, 0, u.stderr)
        XCTAssertFalse(Harness.isMounted(mnt), "still mounted after unmount")
        XCTAssertTrue(Harness.waitForExit(pid), "daemon \(pid) still running after unmount")
    }

    func testEightConcurrentReadersOfOneLargeFileSeeTheSameBytes() throws {
        let src = h.dir + "/src/big", store = h.dir + "/store", mnt = h.dir + "/mnt"
        try FS.makeDirectories(src)
        var rng = SeededRandom(seed: 7)
        let data = rng.bytes(48 << 20)
        try writeFile((src + "/big.bin").pathBytes, data)
        XCTAssertEqual(try h.publish(src, store).status, 0)
        try h.mount(store, mnt, cache: h.dir + "/cache")
        let expected = SHA256.hash(data)
        let results = ResultBox(count: 8)
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            do {
                let fd = try FileDescriptor.open(mnt + "/big.bin", O_RDONLY)
                defer { fd.close() }
                // Each reader uses a different read size so requests interleave differently.
                let step = [4096, 65536, 131072, 1 << 20, 3000, 1 << 19, 77_777, 2 << 20][i]
                var all = [UInt8]()
                var off: UInt64 = 0
                while true {
                    let b = try fd.read(count: step, offset: off)
                    if b.isEmpty { break }
                    all += b
                    off += UInt64(b.count)
                }
                results.set(i, SHA256.hash(all))
            } catch {
                results.set(i, [])
            }
        }
        for i in 0..<8 { XCTAssertEqual(results.get(i), expected, "reader \(i) saw different bytes") }
    }

    func testACorruptChunkFailsReadsWithEIOAndNeverServesWrongBytes() throws {
        let src = h.dir + "/src/c", store = h.dir + "/store", mnt = h.dir + "/mnt"
        try FS.makeDirectories(src)
        var rng = SeededRandom(seed: 9)
        let good = rng.bytes(6 << 20), victim = rng.bytes(6 << 20)
        try writeFile((src + "/a-good.bin").pathBytes, good)
        try writeFile((src + "/b-victim.bin").pathBytes, victim)
        XCTAssertEqual(try h.publish(src, store).status, 0)

        // Find the chunks of each file and damage one that only the victim uses.
        let ref = try Ref.decode(try FS.readFile(store + "/refs/c"))
        let m = try Manifest.decode(try FS.readFile(store + "/" + Ref.manifestKey(ref.manifest)))
        let goodChunks = Set(m.fileSpans(m.resolve(Array("a-good.bin".utf8))!).map { m.spans[$0].chunk })
        let victimSpan = m.fileSpans(m.resolve(Array("b-victim.bin".utf8))!).first { !goodChunks.contains(m.spans[$0].chunk) }!
        let rec = m.chunks[Int(m.spans[victimSpan].chunk)]
        // Same size, valid zstd, wrong content: only the hash check can catch it.
        var wrong = try Zstd.decompress(try FS.readFile(store + "/" + rec.id.objectKey), expectedSize: Int(rec.rawSize))
        wrong[wrong.count / 2] ^= 0x01
        try FS.writeFileAtomically(store + "/" + rec.id.objectKey, try Zstd.compress(wrong))

        try h.mount(store, mnt, cache: h.dir + "/cache")
        let fd = try FileDescriptor.open(mnt + "/b-victim.bin", O_RDONLY)
        defer { fd.close() }
        var sawEIO = false
        var off: UInt64 = 0
        while off < UInt64(victim.count) {
            do {
                let b = try fd.read(count: 1 << 20, offset: off)
                XCTAssertEqual(b, Array(victim[Int(off)..<Int(off) + b.count]), "wrong bytes served at \(off)")
                if b.isEmpty { break }
                off += UInt64(b.count)
            } catch let e as SystemError {
                XCTAssertEqual(e.errno, EIO)
                sawEIO = true
                off += 1 << 20
            }
        }
        XCTAssertTrue(sawEIO, "the corrupt chunk was not refused")
        XCTAssertEqual(try TreeFixture.readAll((mnt + "/a-good.bin").pathBytes), good, "the other file must keep working")
        XCTAssertFalse(FS.exists(h.dir + "/cache/v1/chunks/\(rec.id.hex.prefix(2))/\(rec.id.hex)"), "corrupt chunk was cached")
        let log = String(decoding: try FS.readFile(h.dir + "/cache/logs/c.log"), as: UTF8.self)
        XCTAssertTrue(log.contains(rec.id.hex) && log.contains("b-victim.bin"), "log names neither chunk nor file:\n\(log)")
    }

    func testAFailedPublishLeavesTheRefWhereItWas() throws {
        let src = h.dir + "/src/env", store = h.dir + "/store"
        try FS.makeDirectories(src + "/sub")
        try writeFile((src + "/sub/file").pathBytes, Array("v1".utf8))
        XCTAssertEqual(try h.publish(src, store).status, 0)
        let before = try FS.readFile(store + "/refs/env")

        try writeFile((src + "/sub/file").pathBytes, Array("v2 changed".utf8))
        try FS.mkfifo((src + "/sub/a-fifo").pathBytes)
        let r = try h.publish(src, store)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(src + "/sub/a-fifo"), "error does not name the FIFO: \(r.stderr)")
        XCTAssertEqual(try FS.readFile(store + "/refs/env"), before, "a failed publish moved the ref")

        let skip = try h.publish(src, store, ["--skip-special"])
        XCTAssertEqual(skip.status, 0, skip.stderr)
        XCTAssertTrue(skip.stderr.contains("a-fifo"), "no warning for the skipped FIFO")
        let after = try Ref.decode(try FS.readFile(store + "/refs/env"))
        XCTAssertEqual(after.revision, 2)
    }

    func testMountErrorsComeBeforeAnythingIsMounted() throws {
        let src = h.dir + "/src/one", store = h.dir + "/store", mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        try FS.makeDirectories(src)
        try writeFile((src + "/f").pathBytes, Array("x".utf8))
        XCTAssertEqual(try h.publish(src, store).status, 0)
        try FS.makeDirectories(mnt)

        let missing = try h.run("envmount", ["mount", h.dir + "/no-such-store", mnt, "--cache-dir", cache])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("no-such-store"), missing.stderr)
        let unknown = try h.run("envmount", ["mount", store, mnt, "--env", "nope", "--cache-dir", cache])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("no environment 'nope'") && unknown.stderr.contains("one"), unknown.stderr)
        let noDir = try h.run("envmount", ["mount", store, h.dir + "/absent", "--cache-dir", cache])
        XCTAssertNotEqual(noDir.status, 0)
        XCTAssertTrue(noDir.stderr.contains("does not exist"), noDir.stderr)
        XCTAssertFalse(Harness.isMounted(mnt))

        // The store holds one environment, so --env may be left out.
        try h.mount(store, mnt, cache: cache)
        let busy = try h.run("envmount", ["mount", store, mnt, "--cache-dir", cache])
        XCTAssertNotEqual(busy.status, 0)
        XCTAssertTrue(busy.stderr.contains("already a mount point"), busy.stderr)

        let src2 = h.dir + "/src/two"
        try FS.makeDirectories(src2)
        XCTAssertEqual(try h.publish(src2, store).status, 0)
        try FS.makeDirectories(h.dir + "/mnt2")
        let several = try h.run("envmount", ["mount", store, h.dir + "/mnt2", "--cache-dir", cache])
        XCTAssertNotEqual(several.status, 0)
        XCTAssertTrue(several.stderr.contains("--env"), several.stderr)

        let notMounted = try h.run("envmount", ["unmount", h.dir + "/src"])
        XCTAssertNotEqual(notMounted.status, 0)
        XCTAssertTrue(notMounted.stderr.contains("not mounted"), notMounted.stderr)
    }

    func testAStaleMountLeftByAKilledDaemonIsRecovered() throws {
        let src = h.dir + "/src/s", store = h.dir + "/store", mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        try FS.makeDirectories(src)
        try writeFile((src + "/f").pathBytes, Array("hello".utf8))
        XCTAssertEqual(try h.publish(src, store).status, 0)
        let pid = try h.mount(store, mnt, cache: cache)
        XCTAssertGreaterThan(pid, 0)
        kill(pid, SIGKILL)
        XCTAssertTrue(Harness.waitForExit(pid))
        // Through the overlay in front of FUSE (statfs there answers from its empty top layer).
        XCTAssertThrowsError(try FS.readFile(mnt + "/f")) { XCTAssertEqual(($0 as? SystemError)?.errno, ENOTCONN) }

        let again = try h.run("envmount", ["mount", store, mnt, "--cache-dir", cache])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("stale"), again.stderr)
        XCTAssertEqual(String(decoding: try FS.readFile(mnt + "/f"), as: UTF8.self), "hello")
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        XCTAssertFalse(Harness.isMounted(mnt))
    }

    func testForegroundModeServesUntilSIGTERMAndThenUnmounts() throws {
        let src = h.dir + "/src/fg", store = h.dir + "/store", mnt = h.dir + "/mnt"
        try FS.makeDirectories(src)
        try writeFile((src + "/f").pathBytes, Array("fg".utf8))
        XCTAssertEqual(try h.publish(src, store).status, 0)
        try FS.makeDirectories(mnt)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: h.bin + "/envmount")
        p.arguments = ["mount", store, mnt, "--cache-dir", h.dir + "/cache", "--foreground"]
        p.standardError = FileHandle.nullDevice
        try p.run()
        let end = Date().addingTimeInterval(20)
        while Date() < end && !Harness.isMounted(mnt) { usleep(20_000) }
        XCTAssertEqual(String(decoding: try FS.readFile(mnt + "/f"), as: UTF8.self), "fg")
        p.terminate()
        p.waitUntilExit()
        XCTAssertFalse(Harness.isMounted(mnt), "SIGTERM left the mount behind")
    }
}

/// Per-reader results written from concurrent threads.
final class ResultBox: @unchecked Sendable {
    private var values: [[UInt8]]
    private let lock = NSLock()
    init(count: Int) { values = Array(repeating: [], count: count) }
    func set(_ i: Int, _ v: [UInt8]) { lock.lock(); values[i] = v; lock.unlock() }
    func get(_ i: Int) -> [UInt8] { lock.lock(); defer { lock.unlock() }; return values[i] }
}
