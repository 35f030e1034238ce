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
}
