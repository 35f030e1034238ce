import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// `envmount warm` on wheels from PyPI, not generated trees: a real venv with numpy (a CRLF
/// RECORD, numpy.libs, bytecode written after install) and python-dateutil 2.9, which requires six.
/// Published to a directory store served by nginx; "store down" is nginx stopped.
final class RealWheelTests: MountTestCase {

    /// One venv for the whole class (pip install takes a while); wheels are kept in
    /// .build/pip-cache so later runs do not download them again.
    nonisolated(unsafe) static var venv: String?
    nonisolated(unsafe) static var venvError: String?

    override func setUpWithError() throws {
        try super.setUpWithError()
        if Self.venv == nil && Self.venvError == nil { Self.buildVenv(h) }
        if let e = Self.venvError { throw Servers.unavailable("a venv with wheels from PyPI: \(e)") }
    }

    override class func tearDown() {
        if let v = venv { try? FS.removeTree(String(v[..<v.lastIndex(of: "/")!])) }
    }

    static let site = "lib/python3.\(pythonMinor())/site-packages"

    static func pythonMinor() -> String {
        let (_, out) = Servers.run("/usr/bin/env", ["python3", "-c", "import sys; print(sys.version_info[1])"])
        return out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func buildVenv(_ h: Harness) {
        let dir = "/tmp/envmount-it-wheels-\(getpid())"
        let v = dir + "/venv"
        try? FS.removeTree(dir)
        let cache = Servers.repoRoot + "/.build/pip-cache"
        let steps: [[String]] = [
            ["/usr/bin/env", "python3", "-m", "venv", v],
            // --no-compile: the bytecode below is then written by Python after install, and is
            // in no RECORD, as on a machine where the venv was used before it was published.
            ["/usr/bin/env", "PIP_CACHE_DIR=" + cache, "PIP_DISABLE_PIP_VERSION_CHECK=1", v + "/bin/pip", "install", "-q", "--no-compile",
             "numpy==2.4.6", "python-dateutil==2.9.0.post0"],   // 2.9 requires six
            ["/usr/bin/env", "-u", "PYTHONDONTWRITEBYTECODE", v + "/bin/python", "-c", "import numpy, dateutil.parser; numpy.arange(3).sum()"],
        ]
        for s in steps {
            let (rc, out) = Servers.run(s[0], Array(s.dropFirst()))
            if rc != 0 { venvError = "\(s.joined(separator: " ")) failed: \(out.suffix(2000))"; return }
        }
        venv = v
    }

    /// Reads every regular file under `dir`; returns (files, bytes); a failed read fails the test.
    func readTree(_ dir: String, file: StaticString = #filePath, line: UInt = #line) -> (Int, Int) {
        var files = 0, bytes = 0
        var stack = [dir]
        if (try? FS.lstat(dir))?.kind == .regular {
            do { return (1, try TreeFixture.readAll(dir.pathBytes).count) } catch { XCTFail("read \(dir) with the store down: \(error)", file: file, line: line) }
            return (0, 0)
        }
        while let d = stack.popLast() {
            for name in (try? FS.listDirectory(d)) ?? [] {
                let p = d + "/" + name
                guard let st = try? FS.lstat(p) else { XCTFail("lstat \(p)", file: file, line: line); continue }
                if st.kind == .directory { stack.append(p); continue }
                guard st.kind == .regular else { continue }
                do {
                    bytes += try TreeFixture.readAll(p.pathBytes).count
                    files += 1
                } catch {
                    XCTFail("read \(p) with the store down: \(error)", file: file, line: line)
                }
            }
        }
        return (files, bytes)
    }

    /// Publishes the venv, serves the store with nginx and mounts it over HTTP with a fresh
    /// cache and no read-ahead, so that only warm fetches ahead of reads.
    func mountOverHTTP() throws -> (mnt: String, nginx: NginxServer) {
        let store = h.dir + "/store", mnt = h.dir + "/mnt"
        let p = try h.publish(Self.venv!, store, ["--env", "wheels"])
        XCTAssertEqual(p.status, 0, p.stderr)
        let nginx = try NginxServer(serving: store)
        stops.append { nginx.stop() }
        try h.mount(nginx.url + "/", mnt, cache: h.dir + "/cache", ["--env", "wheels", "--read-ahead-chunks", "0", "--stream-read-ahead", "0"])
        return (mnt, nginx)
    }

    func testWarmNumpyThenEveryFileOfItReadsAndItImportsWithTheStoreDown() throws {
        let (mnt, nginx) = try mountOverHTTP()
        let site = mnt + "/" + Self.site
        let pycs = ((try? FS.listDirectory(site + "/numpy/__pycache__")) ?? []).count
        XCTAssertGreaterThan(pycs, 0, "python wrote no bytecode into numpy/__pycache__")
        // Python's own start-up (pyvenv.cfg, .pth files) is not numpy's: let it read those now.
        let pre = try h.run(mnt + "/bin/python", ["-c", "import sys"])
        XCTAssertEqual(pre.status, 0, pre.stderr)

        let w = try h.run("envmount", ["warm", mnt, "numpy"])
        XCTAssertEqual(w.status, 0, w.stderr)
        let s = try status(mnt)
        let chunks = s["chunksFetched"] as? Int ?? 0, raw = s["rawBytesFetched"] as? Int ?? 0
        print("warm numpy: \(w.stdout.trimmingCharacters(in: .whitespacesAndNewlines)); status: \(chunks) chunks, \(raw) raw bytes fetched")
        XCTAssertGreaterThan(raw, 60_000_000, "numpy + numpy.libs hold about 73 MB")

        nginx.stop()
        let (files, bytes) = readTree(site + "/numpy")
        let (libFiles, _) = readTree(site + "/numpy.libs")
        XCTAssertGreaterThan(files, 1000)
        XCTAssertGreaterThan(libFiles, 0)
        print("read \(files) files (\(bytes) bytes) of numpy/ and \(libFiles) of numpy.libs/ with nginx stopped")
        let imp = try h.run(mnt + "/bin/python", ["-c", "import numpy; print(numpy.linalg.det(numpy.eye(3)))"])
        XCTAssertEqual(imp.status, 0, imp.stderr)
        XCTAssertEqual(imp.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "1.0")
    }

    func testWarmWithDepsBringsTheRequirementsFromMetadata() throws {
        let (mnt, nginx) = try mountOverHTTP()
        let pre = try h.run(mnt + "/bin/python", ["-c", "import sys"])
        XCTAssertEqual(pre.status, 0, pre.stderr)

        let w = try h.run("envmount", ["warm", mnt, "python-dateutil", "--deps"])
        XCTAssertEqual(w.status, 0, w.stderr)
        XCTAssertTrue(w.stdout.contains("dependencies: six"), w.stdout)
        XCTAssertTrue(w.stdout.contains("six:"), "no warm job for six: \(w.stdout)")

        nginx.stop()
        let site = mnt + "/" + Self.site
        _ = readTree(site + "/dateutil")
        for f in try FS.listDirectory(site) where f.hasPrefix("six") {
            _ = readTree(site + "/" + f)
        }
        let imp = try h.run(mnt + "/bin/python", ["-c", "import dateutil.parser, six; print(dateutil.parser.parse('2024-05-06').day)"])
        XCTAssertEqual(imp.status, 0, imp.stderr)
        XCTAssertEqual(imp.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "6")
    }

    /// Polls status until every job has finished (or `seconds` pass).
    func waitForJobs(_ mp: String, seconds: Double = 60) throws -> [String: Any] {
        let end = Date().addingTimeInterval(seconds)
        var s = try status(mp)
        while Date() < end {
            let jobs = s["jobs"] as? [[String: Any]] ?? []
            if !jobs.isEmpty && jobs.allSatisfy({ $0["finished"] as? Bool == true }) { return s }
            usleep(200_000)
            s = try status(mp)
        }
        return s
    }

    func testPublishRecordsTheImportsAsProfileDefaultAndEveryMountPrefetchesIt() throws {
        let store = h.dir + "/store"
        let p = try h.run("envpublish", [Self.venv!, store, "--env", "wheels", "--quiet"])
        XCTAssertEqual(p.status, 0, p.stderr)
        let manifests = try FS.listDirectory(store + "/profiles/wheels")
        XCTAssertEqual(manifests.count, 1)
        XCTAssertEqual(try FS.listDirectory(store + "/profiles/wheels/" + manifests[0]), ["default"], "envpublish -q records too")
        let v = try h.run("envpublish", [Self.venv!, store, "--env", "wheels"])
        XCTAssertEqual(v.status, 0, v.stderr)
        XCTAssertTrue(v.stdout.contains("already recorded"), v.stdout)
        let again = try h.run("envpublish", [Self.venv!, store + "-2", "--env", "wheels"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("recording the imports of") && again.stdout.contains("numpy") && again.stdout.contains("dateutil"), again.stdout)
        XCTAssertFalse(again.stdout.contains(" pip"), "installer tooling is not a workload: \(again.stdout)")

        let nginx = try NginxServer(serving: store)
        stops.append { nginx.stop() }
        let mnt = h.dir + "/mnt"
        try h.mount(nginx.url + "/", mnt, cache: h.dir + "/cache", ["--env", "wheels", "--read-ahead-chunks", "0", "--stream-read-ahead", "0"])
        let s = try waitForJobs(mnt)
        let jobs = s["jobs"] as? [[String: Any]] ?? []
        XCTAssertEqual(jobs.map { $0["label"] as? String }, ["profile default"], "\(s)")
        XCTAssertGreaterThan(s["chunksFetched"] as? Int ?? 0, 5)
        XCTAssertEqual(s["recordedChunks"] as? Int, 0, "nothing has been read yet: the chunks came from the prefetch")
        print("prefetch of profile default: \(s["chunksFetched"] ?? 0) chunks, \(s["rawBytesFetched"] ?? 0) raw bytes before any read")

        // What the recording imported now needs no store at all.
        nginx.stop()
        let imp = try h.run(mnt + "/bin/python", ["-c", "import numpy, dateutil.parser; print(numpy.ones(4).sum())"])
        XCTAssertEqual(imp.status, 0, imp.stderr)
        XCTAssertEqual(imp.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "4.0")

        let mnt2 = h.dir + "/mnt2"
        try h.mount(store, mnt2, cache: h.dir + "/cache2", ["--env", "wheels", "--no-prefetch"])
        let s2 = try status(mnt2)
        XCTAssertEqual((s2["jobs"] as? [Any])?.count, 0, "\(s2)")
        XCTAssertEqual(s2["chunksFetched"] as? Int, 0)
    }

    func testRecordSnippetsAsNamedProfilesAndReportFailures() throws {
        let store = h.dir + "/store"
        let p = try h.run("envpublish", [Self.venv!, store, "--env", "wheels", "--record", "dates=import dateutil.parser"])
        XCTAssertEqual(p.status, 0, p.stderr)
        let profiles = h.dir + "/store/profiles/wheels"
        let manifests = try FS.listDirectory(profiles)
        XCTAssertEqual(manifests.count, 1)
        XCTAssertEqual(try FS.listDirectory(profiles + "/" + manifests[0]), ["dates"], "only the named profile, no default")

        let bad = try h.run("envpublish", [Self.venv!, store, "--env", "wheels", "--record", "import no_such_module_here"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("published revision 1, but") && bad.stderr.contains("no_such_module_here"), bad.stderr)

        // envpublish without its sibling envmount says what is missing.
        let lone = h.dir + "/lone"
        try FS.makeDirectories(lone)
        XCTAssertEqual(Servers.run("/bin/cp", [h.bin + "/envpublish", lone + "/envpublish"]).0, 0)
        let l = try h.run(lone + "/envpublish", [Self.venv!, store, "--env", "wheels", "--record", "import numpy"])
        XCTAssertNotEqual(l.status, 0)
        XCTAssertTrue(l.stderr.contains("needs envmount next to envpublish") && l.stderr.contains(lone + "/envmount"), l.stderr)
    }
}
