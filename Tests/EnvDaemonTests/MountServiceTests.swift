@testable import EnvDaemon
import EnvFormat
import Foundation
import SysKit
import XCTest

/// The daemon's answers to control requests, without FUSE: the service over a real
/// EnvFilesystem, fetcher, pool and cache, the store in memory.
final class MountServiceTests: XCTestCase {
    func testStatusDescribesTheMount() throws {
        let f = try ServiceFixture()
        guard case let .status(s) = f.service.handle(.status) else { return XCTFail("not a status reply") }
        XCTAssertEqual(s.env, "svc")
        XCTAssertEqual(s.manifest, f.opened.ref.manifest.hex)
        XCTAssertEqual(s.entries, f.opened.manifest.entries.count)
        XCTAssertEqual(s.chunks, f.opened.manifest.chunks.count)
        XCTAssertEqual(s.totalBytes, 500_006)
        XCTAssertEqual(s.pid, getpid())
        XCTAssertEqual(s.chunksFetched, 0)
        XCTAssertTrue(s.jobs.isEmpty)
    }

    func testWarmFetchesTheChunksOfTheNamedPathsAndCountsMissingOnes() throws {
        let f = try ServiceFixture()
        let want = Set(f.fs.chunks(ofEntry: Int(try f.ino("pkg/sub/b.bin")) - 1))
        XCTAssertFalse(want.isEmpty)
        guard case let .jobs(jobs, missing) = f.service.handle(.warm(paths: ["pkg/sub", "no/such/file"], label: "sub")) else {
            return XCTFail("not a jobs reply")
        }
        XCTAssertEqual(missing, 1)
        XCTAssertEqual(jobs.count, 1)
        XCTAssertEqual(jobs[0].label, "sub")
        XCTAssertEqual(jobs[0].chunks, want.count)
        XCTAssertTrue(f.waitForJobs())
        guard case let .jobs(done, _) = f.service.handle(.jobs(ids: [jobs[0].id])) else { return XCTFail("not a jobs reply") }
        XCTAssertEqual(done.map(\.finished), [true])
        XCTAssertEqual(done[0].doneChunks, want.count)
        XCTAssertEqual(done[0].failedChunks, 0)
        guard case let .status(s) = f.service.handle(.status) else { return XCTFail("not a status reply") }
        XCTAssertEqual(Int(s.chunksFetched), want.count, "warm fetched chunks that pkg/sub does not use")
    }

    func testWarmAllThenJobsListsEveryJob() throws {
        let f = try ServiceFixture()
        guard case let .jobs(all, 0) = f.service.handle(.warmAll) else { return XCTFail("not a jobs reply") }
        XCTAssertEqual(all.first?.chunks, f.opened.manifest.chunks.count)
        XCTAssertTrue(f.waitForJobs())
        _ = f.service.handle(.warm(paths: ["top.txt"], label: "top"))
        guard case let .jobs(listed, _) = f.service.handle(.jobs(ids: [])) else { return XCTFail("not a jobs reply") }
        XCTAssertEqual(Set(listed.map(\.label)), ["all", "top"])
    }

    func testProfilesSaveWhatWasReadAndWarmFromIt() throws {
        let f = try ServiceFixture()
        guard case let .failed(msg) = f.service.handle(.saveProfile(name: "first")) else { return XCTFail("saved an empty profile") }
        XCTAssertTrue(msg.contains("nothing has been read"), msg)
        guard case let .failed(bad) = f.service.handle(.saveProfile(name: "../x")) else { return XCTFail("took a bad name") }
        XCTAssertTrue(bad.contains("invalid profile name"), bad)
        guard case let .failed(none) = f.service.handle(.warmProfile(name: "nope")) else { return XCTFail("warmed a missing profile") }
        XCTAssertTrue(none.contains("no profile 'nope'"), none)

        let ino = try f.ino("pkg/a.bin")
        _ = try f.fs.read(ino, offset: 0, size: 100_000)
        guard case let .profileSaved(key, n) = f.service.handle(.saveProfile(name: "first")) else { return XCTFail("not saved") }
        XCTAssertGreaterThan(n, 0)
        XCTAssertTrue(try f.store.exists(key))
        guard case let .jobs(jobs, _) = f.service.handle(.warmProfile(name: "first")) else { return XCTFail("not a jobs reply") }
        XCTAssertEqual(jobs.first?.chunks, n)
    }

    /// Waits until `cond` holds (pool threads work in the background).
    func eventually(_ seconds: Double = 20, _ cond: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if cond() { return true }
            usleep(10_000)
        }
        return cond()
    }

    func testStreamReadAheadStandsDownOnlyForMissesTheProfileCovers() throws {
        let f = try ServiceFixture()
        let chunks = f.fs.chunks(ofEntry: Int(try f.ino("pkg/a.bin")) - 1)
        XCTAssertGreaterThan(chunks.count, 8)
        // A profile of the first chunks of a.bin; nothing of it fetched yet.
        let profile = Array(chunks[0..<3])
        f.pool.addProfile(profile)
        XCTAssertTrue(profile.allSatisfy(f.pool.inProfile))
        XCTAssertFalse(f.pool.inProfile(chunks[5]))

        // A miss inside the profile: the profile brings what follows, nothing is guessed.
        f.pool.streamReadAhead(after: chunks[0], window: 2)
        XCTAssertEqual(f.pool.queuedReadAhead, 0)
        usleep(200_000)
        XCTAssertFalse(f.fetcher.isCached(chunks[0] + 1) || f.fetcher.isCached(chunks[0] + 2), "read ahead of a miss the profile covers")

        // A miss outside it (a part of the workload the profile did not record): the next chunks
        // of the stream are fetched, as without a profile.
        f.pool.streamReadAhead(after: chunks[5], window: 2)
        XCTAssertTrue(eventually { f.fetcher.isCached(chunks[5] + 1) && f.fetcher.isCached(chunks[5] + 2) },
                      "no stream read-ahead after a miss outside the profile")
        XCTAssertFalse(f.fetcher.isCached(chunks[0] + 1))
    }

    func testWarmProfileMarksItsChunksAsTheProfiles() throws {
        let f = try ServiceFixture()
        let ino = try f.ino("pkg/sub/b.bin")
        _ = try f.fs.read(ino, offset: 0, size: 50_000)
        guard case .profileSaved = f.service.handle(.saveProfile(name: "p")) else { return XCTFail("not saved") }
        let read = f.recorder.chunks
        XCTAssertFalse(read.contains(where: f.pool.inProfile))
        guard case .jobs = f.service.handle(.warmProfile(name: "p")) else { return XCTFail("not a jobs reply") }
        XCTAssertTrue(read.allSatisfy(f.pool.inProfile))
        XCTAssertTrue(f.waitForJobs())
        guard case let .status(s) = f.service.handle(.status) else { return XCTFail("not a status reply") }
        let job = try XCTUnwrap(s.jobs.first)
        XCTAssertTrue(job.finished)
        let at = try XCTUnwrap(job.finishedAt)
        XCTAssertLessThanOrEqual(abs(at - Date().timeIntervalSince1970), 30, "finishedAt is a time since the epoch")
    }

    func testStatusCountsReadsThatWaitedForChunksAndTheDaemonsCPU() throws {
        let f = try ServiceFixture()
        guard case let .status(s0) = f.service.handle(.status) else { return XCTFail("not a status reply") }
        XCTAssertEqual(s0.demandWaits, 0)
        XCTAssertEqual(s0.demandWaitSeconds, 0)
        XCTAssertGreaterThan((s0.cpuUserSeconds ?? 0) + (s0.cpuSystemSeconds ?? 0), 0)
        XCTAssertEqual(s0.fuseOps, [:], "no FUSE session: no requests")

        let ino = try f.ino("pkg/a.bin")
        _ = try f.fs.read(ino, offset: 0, size: 4096)
        guard case let .status(s1) = f.service.handle(.status) else { return XCTFail("not a status reply") }
        XCTAssertEqual(s1.demandWaits, 1, "the first read of an uncached chunk waits for its fetch")
        XCTAssertGreaterThan(s1.demandWaitSeconds ?? 0, 0)

        _ = try f.fs.read(ino, offset: 100, size: 100)
        guard case let .status(s2) = f.service.handle(.status) else { return XCTFail("not a status reply") }
        XCTAssertEqual(s2.demandWaits, 1, "a cached, verified chunk is served without waiting")
    }
}
